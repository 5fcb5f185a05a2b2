/**
 * Delimiter-terminated frames (lines, NUL-terminated records).
 *
 * @module
 */
import type { Codec, Inbound } from "./codec.ts";
import { CodecError } from "./codec_error.ts";

/** Options of {@linkcode DelimiterCodec}. */
export interface DelimiterCodecOptions {
  /** The delimiter, one or more bytes (a string is UTF-8 encoded). @default {"\n"} */
  delimiter?: Uint8Array | string;
  /** The longest frame allowed, delimiter excluded. @default {65536} */
  maxFrameLength?: number;
}

/**
 * Frames ended by a delimiter; the decoded frame excludes it.
 *
 * @example Lines
 * ```ts
 * import { DelimiterCodec } from "@triad/netloop";
 * import assert from "node:assert/strict";
 *
 * const lines = new DelimiterCodec({ delimiter: "\r\n" });
 * assert.deepEqual(lines.encode(new Uint8Array([65])), new Uint8Array([65, 13, 10]));
 * ```
 */
export class DelimiterCodec implements Codec {
  readonly #delimiter: Uint8Array;
  readonly #max: number;

  /**
   * Creates the codec.
   *
   * @param options The delimiter and the longest frame.
   */
  constructor(options: DelimiterCodecOptions = {}) {
    const d = options.delimiter ?? "\n";
    this.#delimiter = typeof d === "string" ? new TextEncoder().encode(d) : d;
    if (this.#delimiter.length === 0) throw new CodecError("The delimiter must not be empty");
    this.#max = options.maxFrameLength ?? 65536;
  }

  decode(conn: Inbound): Uint8Array | undefined {
    const data = conn.peek();
    const d = this.#delimiter;
    const first = d[0]!;
    let at = data.indexOf(first);
    while (at !== -1 && at + d.length <= data.length) {
      let match = true;
      for (let i = 1; i < d.length; i++) {
        if (data[at + i] !== d[i]) {
          match = false;
          break;
        }
      }
      if (match) {
        if (at > this.#max) throw new CodecError(`Frame of ${at} bytes exceeds ${this.#max}`);
        const frame = conn.next(at);
        conn.discard(d.length);
        return frame;
      }
      at = data.indexOf(first, at + 1);
    }
    if (data.length > this.#max + d.length) {
      throw new CodecError(`No delimiter within ${this.#max} bytes`);
    }
    return undefined;
  }

  encode(payload: Uint8Array): Uint8Array {
    const out = new Uint8Array(payload.length + this.#delimiter.length);
    out.set(payload);
    out.set(this.#delimiter, payload.length);
    return out;
  }
}
