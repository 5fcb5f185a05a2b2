/**
 * The error raised for a malformed DNS message.
 *
 * @module
 */
import { TriadError } from "@triad/core";

/**
 * A DNS message that breaks RFC 1035 or RFC 9267; `offset` is where in the packet it broke.
 *
 * @example
 * ```ts
 * import { parseMessage, WireError } from "@triad/dnsproxy";
 * import assert from "node:assert/strict";
 *
 * assert.throws(() => parseMessage(new Uint8Array(5)), (error: unknown) => {
 *   assert.ok(error instanceof WireError);
 *   assert.equal(error.offset, 0);
 *   assert.match(error.message, /at offset 0: truncated header/);
 *   return true;
 * });
 * ```
 */
export class WireError extends TriadError {
  /** The byte offset in the packet where the problem was found. */
  readonly offset: number;

  /**
   * Creates the error.
   *
   * @param offset The byte offset where the message broke.
   * @param reason What is wrong, in lower case (`"pointer loop"`).
   */
  constructor(offset: number, reason: string) {
    super(`Malformed DNS message at offset ${offset}: ${reason}`, { code: "bad_dns_message" });
    this.offset = offset;
  }
}
