/**
 * The frame codec interface.
 *
 * @module
 */
import type { Conn } from "./conn.ts";

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
   * @param conn The connection in `onTraffic`.
   * @returns The frame's payload, or `undefined` when more bytes are needed.
   * @throws {CodecError} When the stream is not valid for this codec (say, a frame too long).
   */
  decode(conn: Conn): Uint8Array | undefined;
  /**
   * Frames a payload.
   *
   * @param payload The payload.
   * @returns The bytes to write.
   */
  encode(payload: Uint8Array): Uint8Array;
}
