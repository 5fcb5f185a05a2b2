/**
 * The error raised when an upstream cannot answer.
 *
 * @module
 */
import { TriadError } from "@triad/core";

/**
 * An upstream query failed: `code` is `timeout`, `network`, `closed` or `busy`.
 *
 * @example
 * ```ts
 * import { UpstreamError } from "@triad/dnsproxy";
 * import assert from "node:assert/strict";
 *
 * const error = new UpstreamError("Upstream 127.0.0.1:53 over UDP timed out", { code: "timeout" });
 * assert.equal(error.code, "timeout");
 * ```
 */
export class UpstreamError extends TriadError {}
