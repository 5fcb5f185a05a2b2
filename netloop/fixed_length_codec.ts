/**
 * Fixed-size frames.
 *
 * @module
 */
import type { Codec, Inbound } from "./codec.ts";
import { CodecError } from "./codec_error.ts";

/**
 * Frames of exactly `size` bytes.
 *
 * @example
 * ```ts
 * import { FixedLengthCodec } from "@triad/netloop";
 * import assert from "node:assert/strict";
 *
 * assert.equal(new FixedLengthCodec(64).size, 64);
 * ```
 */
export class FixedLengthCodec implements Codec {
  /**
   * Creates the codec.
   *
   * @param size Bytes per frame.
   */
  constructor(readonly size: number) {
    if (!Number.isInteger(size) || size <= 0) {
      throw new CodecError(`Frame size must be a positive integer, got ${size}`);
    }
  }

  decode(conn: Inbound): Uint8Array | undefined {
    return conn.inboundBuffered < this.size ? undefined : conn.next(this.size);
  }

  encode(payload: Uint8Array): Uint8Array {
    if (payload.length !== this.size) {
      throw new CodecError(`Payload of ${payload.length} bytes is not ${this.size} bytes`);
    }
    return payload;
  }
}
