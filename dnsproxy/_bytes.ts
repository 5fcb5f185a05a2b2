/**
 * Reading a stream whole, with a bound, and joining chunks; the one DNS-over-a-stream framing
 * (netloop's length-field codec) and a buffer it decodes from outside a loop.
 *
 * @module
 */
import { LengthFieldCodec } from "@triad/netloop";
import type { Inbound } from "@triad/netloop";

/**
 * DNS over TCP, TLS and QUIC streams (RFC 1035 §4.2.2, RFC 7858, RFC 9250 §4.2): a two-byte
 * length before each message. The one framing of the proxy: its netloop loops, its Deno-socket
 * listeners and its upstream connections all decode and encode with it.
 */
export const DNS_FRAMING: LengthFieldCodec = new LengthFieldCodec({ lengthFieldLength: 2 });

/**
 * Bytes read from a stream and not yet decoded, for {@linkcode DNS_FRAMING} outside a netloop
 * loop: `fill` reads into the free space (moving the unread bytes to the front first), the codec
 * takes frames with `peek`/`next`/`discard`. Its size bounds what it holds: one whole frame plus
 * one read (65,537 + 16,384 bytes for DNS).
 */
export class FrameBuffer implements Inbound {
  #buffer: Uint8Array;
  #start = 0;
  #end = 0;

  /** @param size The most bytes it holds, or bytes already read (held as they are, not copied). */
  constructor(size: number | Uint8Array = 65_537 + 16_384) {
    this.#buffer = typeof size === "number" ? new Uint8Array(size) : size;
    if (typeof size !== "number") this.#end = size.length;
  }

  /**
   * Reads once into the free space.
   *
   * @param from A Deno connection or anything that reads like one.
   * @returns `false` at the end of the stream.
   */
  async fill(from: { read(buffer: Uint8Array): Promise<number | null> }): Promise<boolean> {
    if (this.#start > 0) {
      this.#buffer.copyWithin(0, this.#start, this.#end);
      this.#end -= this.#start;
      this.#start = 0;
    }
    const n = await from.read(this.#buffer.subarray(this.#end));
    if (n === null) return false;
    this.#end += n;
    return true;
  }

  get inboundBuffered(): number {
    return this.#end - this.#start;
  }

  peek(n = this.inboundBuffered): Uint8Array {
    return this.#buffer.subarray(this.#start, this.#start + Math.min(n, this.inboundBuffered));
  }

  next(n?: number): Uint8Array {
    const view = this.peek(n);
    this.#start += view.length;
    return view;
  }

  discard(n = this.inboundBuffered): number {
    const k = Math.min(n, this.inboundBuffered);
    this.#start += k;
    return k;
  }
}

/**
 * Joins chunks into one buffer.
 *
 * @param chunks The chunks.
 * @param total Their total length.
 * @returns A new buffer.
 */
export function concat(chunks: readonly Uint8Array[], total: number): Uint8Array {
  const out = new Uint8Array(total);
  let at = 0;
  for (const chunk of chunks) {
    out.set(chunk, at);
    at += chunk.length;
  }
  return out;
}

/**
 * Reads a whole stream, at most `limit` bytes.
 *
 * @param stream The stream.
 * @param limit Most bytes kept; beyond, `undefined`.
 * @returns The bytes up to the peer's FIN.
 */
export async function readAll(
  stream: ReadableStream<Uint8Array>,
  limit: number,
): Promise<Uint8Array | undefined> {
  const chunks: Uint8Array[] = [];
  let total = 0;
  for await (const chunk of stream) {
    total += chunk.length;
    if (total > limit) return undefined;
    chunks.push(chunk);
  }
  return concat(chunks, total);
}

/**
 * The one message a whole stream holds (DoQ, RFC 9250 §4.2: one length-prefixed message, then
 * FIN), or `undefined` when the bytes are not exactly one frame.
 *
 * @param bytes Everything the stream carried.
 * @returns The message, a view into `bytes`.
 */
export function onlyMessage(bytes: Uint8Array): Uint8Array | undefined {
  const inbound = new FrameBuffer(bytes);
  const message = DNS_FRAMING.decode(inbound);
  return inbound.inboundBuffered === 0 ? message : undefined;
}
