/**
 * `@triad/core`: the types every triad module shares — socket addresses, a structured logger,
 * Prometheus metrics, durations and the base error.
 *
 * @example
 * ```ts
 * import { formatSocketAddress, parseDuration, parseSocketAddress } from "@triad/core";
 * import assert from "node:assert/strict";
 *
 * assert.equal(formatSocketAddress(parseSocketAddress("[0:0::1]:53")), "[::1]:53");
 * assert.equal(parseDuration("1m30s"), 90_000);
 * ```
 *
 * @module
 */
export * from "./core/error.ts";
export * from "./core/socket_address.ts";
export * from "./core/duration.ts";
export * from "./core/logger.ts";
export * from "./core/metrics.ts";
export * from "./core/bytes.ts";
