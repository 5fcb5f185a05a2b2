/**
 * The error codecs throw on an invalid stream.
 *
 * @module
 */
import { NetloopError } from "./errors.ts";

/**
 * A stream a codec cannot decode (a frame longer than allowed, a length that does not fit), with
 * code `bad_frame`. Close the connection when you see it.
 *
 * @example
 * ```ts
 * import { CodecError } from "@triad/netloop";
 * import assert from "node:assert/strict";
 *
 * assert.equal(new CodecError("Frame of 70000 bytes exceeds 65535").code, "bad_frame");
 * ```
 */
export class CodecError extends NetloopError {
  /**
   * Creates an error.
   *
   * @param message What is wrong with the stream.
   */
  constructor(message: string) {
    super(message, { code: "bad_frame" });
  }
}
