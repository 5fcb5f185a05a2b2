/**
 * The error netloop throws.
 *
 * @module
 */
import { SyscallError, type SyscallErrorOptions } from "@triad/core";

/**
 * An error from netloop: a bad option, a socket call that failed (with the errno name in the
 * message), a backend that cannot run here, or a loop Worker that died.
 *
 * Codes: `bad_option`, `syscall`, `descriptors_exhausted` (a socket call failed with `EMFILE` or
 * `ENFILE`: the process or the system is out of descriptors), `backend_unavailable`,
 * `loop_failed`, `closed`. `errno` is the positive errno of the failed call (code `syscall` or
 * `descriptors_exhausted`), 0 for the others.
 *
 * @example
 * ```ts
 * import { NetloopError } from "@triad/netloop";
 * import assert from "node:assert/strict";
 *
 * const error = new NetloopError("Option loops must be a positive integer, got 0", {
 *   code: "bad_option",
 * });
 * assert.equal(error.code, "bad_option");
 * ```
 */
export class NetloopError extends SyscallError {
  /**
   * Creates an error.
   *
   * @param message What failed and where, in sentence case.
   * @param options The code, the errno of a failed system call, and the cause.
   */
  constructor(message: string, options: SyscallErrorOptions) {
    super(message, options);
  }
}
