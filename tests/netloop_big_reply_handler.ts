/**
 * A handler for tests/netloop_uring_send_test.ts: every byte received asks for a reply far larger
 * than a socket buffer (4 MiB + the byte's value, byte i of it being `(i * 7 + value) & 255`),
 * written at once, so that the send taking it goes out short.
 *
 * @module
 */
import type { Conn, EventHandler } from "@triad/netloop";

const handler: EventHandler = {
  onTraffic(conn: Conn) {
    for (const value of conn.next()) conn.write(bigReply(value));
  },
};
export default handler;

/** The reply to byte `value` (exported for the test to check against). */
export function bigReply(value: number): Uint8Array {
  const bytes = new Uint8Array(4 * 1024 * 1024 + value);
  for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 7 + value) & 255;
  return bytes;
}
