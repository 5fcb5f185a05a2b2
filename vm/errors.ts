/**
 * The error the VM harness and the box builder raise.
 *
 * @module
 */
import { TriadError } from "@triad/core";

/**
 * What went wrong in the VM harness: a sentence-case message naming the step and the machine, a
 * stable `code`, and where there is one the guest's serial console log, so a hanging boot or a
 * crashed guest can be diagnosed from the error alone.
 *
 * Codes: `bad_argument`, `command_failed`, `timeout`, `boot_failed`, `guest_crashed`,
 * `missing_tool`, `busy`, `interrupted`, `cleanup_failed`.
 *
 * @example
 * ```ts
 * import { VmError } from "@triad/vm";
 * import assert from "node:assert/strict";
 *
 * const error = new VmError("Boot of triad-1 timed out after 300 s", {
 *   code: "timeout",
 *   serialLog: "SeaBIOS ...",
 * });
 * assert.equal(error.code, "timeout");
 * assert.match(error.serialLog ?? "", /SeaBIOS/);
 * ```
 */
export class VmError extends TriadError {
  /** The tail of the guest's serial console, when the error happened while a guest ran. */
  readonly serialLog: string | undefined;

  /**
   * Creates an error.
   *
   * @param message What failed and where, in sentence case.
   * @param options The code, the cause and the serial log.
   */
  constructor(
    message: string,
    options: { code: string; cause?: unknown; serialLog?: string | undefined },
  ) {
    super(message, options);
    this.serialLog = options.serialLog;
  }
}
