/**
 * The error type every triad module throws or subclasses.
 *
 * @module
 */

/** Options for {@linkcode TriadError}. */
export interface TriadErrorOptions {
  /** A stable, machine-readable code such as `"bad_address"` or `"verifier"`. */
  code: string;
  /** The error that caused this one, if any. */
  cause?: unknown;
}

/**
 * Base class of every error raised by triad: a sentence-case message that names what was wrong
 * and where, a stable `code` to branch on, and the `cause` that led to it.
 *
 * @example Branch on the code
 * ```ts
 * import { TriadError } from "@triad/core";
 * import assert from "node:assert/strict";
 *
 * const error = new TriadError("Port 99999 is out of range", { code: "bad_port" });
 * assert.equal(error.code, "bad_port");
 * assert.ok(error instanceof Error);
 * ```
 */
export class TriadError extends Error {
  /** A stable, machine-readable code. */
  readonly code: string;

  /**
   * Creates an error.
   *
   * @param message What was wrong and where, in sentence case.
   * @param options The code and the optional cause.
   */
  constructor(message: string, options: TriadErrorOptions) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = options.code;
  }
}
