/**
 * The frame codec interface.
 *
 * @module
 */
import type { Conn } from "./conn.ts";

/**
 * The read side of a {@linkcode Conn}: what a codec decodes from. A loop's `Conn` is one; so is any
 * buffer that offers these four (a codec can then frame a stream read some other way).
 */
export type Inbound = Pick<Conn, "inboundBuffered" | "peek" | "next" | "discard">;

/**
 * Splits a byte stream into frames on top of `peek`/`discard`, and frames payloads for sending.
 *
 * `decode` returns one complete frame and consumes it, or `undefined` (consuming nothing) when the
 * frame has not fully arrived: call it in a loop inside `onTraffic`. The frame is a view valid
 * until `onTraffic` returns.
 */
export interface Codec {
  /**
   * Takes the next complete frame from the connection.
   *
   * @param conn The connection in `onTraffic` (or another {@linkcode Inbound}).
   * @returns The frame's payload, or `undefined` when more bytes are needed.
   * @throws {CodecError} When the stream is not valid for this codec (say, a frame too long).
   */
  decode(conn: Inbound): Uint8Array | undefined;
  /**
   * Frames a payload.
   *
   * @param payload The payload.
   * @returns The bytes to write.
   */
  encode(payload: Uint8Array): Uint8Array;
}
