/**
 * An echo handler: every byte received (TCP) or every datagram (UDP) is sent straight back.
 *
 * @module
 */
import { Action, type Conn } from "../mod.ts";

/**
 * Echoes what arrived.
 *
 * @param conn The connection with data.
 * @returns `Action.None`.
 */
export function onTraffic(conn: Conn): Action {
  conn.write(conn.next());
  return Action.None;
}
