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
export { TriadError, type TriadErrorOptions } from "./core/error.ts";
export { Errno, errnoName, SyscallError, type SyscallErrorOptions } from "./core/syscall_error.ts";
export {
  formatSocketAddress,
  type IpFamily,
  ipFamily,
  ipFromBytes,
  ipToBytes,
  parseSocketAddress,
  type ParseSocketAddressOptions,
  type SocketAddress,
} from "./core/socket_address.ts";
export { formatDuration, parseDuration } from "./core/duration.ts";
export {
  createLogger,
  type LogFields,
  type Logger,
  type LoggerOptions,
  type LogLevel,
  parseLogLevel,
} from "./core/logger.ts";
export {
  Counter,
  DEFAULT_BUCKETS,
  formatPrometheus,
  Gauge,
  Histogram,
  type HistogramOptions,
  type Labels,
  Metric,
  type MetricKind,
  type MetricOptions,
  Metrics,
  type MetricSnapshot,
  type SeriesSnapshot,
} from "./core/metrics.ts";
export { BytePool } from "./core/bytes.ts";
