/**
 * Length-prefixed frames (DNS over TCP, most binary protocols).
 *
 * @module
 */
import type { Codec, Inbound } from "./codec.ts";
import { CodecError } from "./codec_error.ts";

/** Options of {@linkcode LengthFieldCodec}. */
export interface LengthFieldCodecOptions {
  /** Bytes in the length field: 1, 2, 3 or 4. @default {2} */
  lengthFieldLength?: 1 | 2 | 3 | 4;
  /** Where the length field starts. @default {0} */
  lengthFieldOffset?: number;
  /** Added to the length field's value to get the bytes that follow it. @default {0} */
  lengthAdjustment?: number;
  /** Bytes dropped from the start of each decoded frame (by default the header). */
  initialBytesToStrip?: number;
  /** Little-endian length field. @default {false} */
  littleEndian?: boolean;
  /** The longest frame allowed, header included. @default {65535 + header} */
  maxFrameLength?: number;
}

/**
 * Frames with a length field, like Netty's `LengthFieldBasedFrameDecoder`. The defaults are DNS
 * over TCP (RFC 1035 4.2.2): a 2-byte big-endian length before each message, which may arrive
 * split anywhere across reads.
 *
 * @example DNS over TCP, the prefix split across reads
 * ```ts
 * import { LengthFieldCodec } from "@triad/netloop";
 * import assert from "node:assert/strict";
 *
 * const codec = new LengthFieldCodec();
 * assert.deepEqual(codec.encode(new Uint8Array([7, 8, 9])), new Uint8Array([0, 3, 7, 8, 9]));
 * ```
 */
export class LengthFieldCodec implements Codec {
  readonly #size: number;
  readonly #offset: number;
  readonly #adjust: number;
  readonly #strip: number;
  readonly #little: boolean;
  readonly #max: number;

  /**
   * Creates the codec.
   *
   * @param options The field layout and limits.
   */
  constructor(options: LengthFieldCodecOptions = {}) {
    this.#size = options.lengthFieldLength ?? 2;
    if (![1, 2, 3, 4].includes(this.#size)) {
      throw new CodecError(`lengthFieldLength must be 1, 2, 3 or 4, got ${this.#size}`);
    }
    this.#offset = options.lengthFieldOffset ?? 0;
    this.#adjust = options.lengthAdjustment ?? 0;
    this.#strip = options.initialBytesToStrip ?? this.#offset + this.#size;
    this.#little = options.littleEndian ?? false;
    this.#max = options.maxFrameLength ?? 2 ** (8 * Math.min(this.#size, 3)) - 1 + this.#offset +
        this.#size;
  }

  decode(conn: Inbound): Uint8Array | undefined {
    const header = this.#offset + this.#size;
    if (conn.inboundBuffered < header) return undefined;
    const head = conn.peek(header);
    let length = 0;
    for (let i = 0; i < this.#size; i++) {
      const byte = head[this.#offset + (this.#little ? this.#size - 1 - i : i)]!;
      length = length * 256 + byte;
    }
    const total = header + length + this.#adjust;
    if (total < header || total > this.#max) {
      throw new CodecError(
        `Frame of ${total} bytes (length field ${length}) is outside 0 to ${this.#max}`,
      );
    }
    if (conn.inboundBuffered < total) return undefined;
    conn.discard(Math.min(this.#strip, total));
    return conn.next(total - Math.min(this.#strip, total));
  }

  encode(payload: Uint8Array): Uint8Array {
    const length = payload.length - this.#adjust;
    if (length < 0 || length >= 2 ** (8 * this.#size)) {
      throw new CodecError(
        `Payload of ${payload.length} bytes does not fit a ${this.#size}-byte length`,
      );
    }
    const header = this.#offset + this.#size;
    const out = new Uint8Array(header + payload.length);
    let value = length;
    for (let i = this.#size - 1; i >= 0; i--) {
      out[this.#offset + (this.#little ? this.#size - 1 - i : i)] = value & 0xff;
      value = Math.floor(value / 256);
    }
    out.set(payload, header);
    return out;
  }
}
