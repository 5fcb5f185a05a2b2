/**
 * A handler for tests/netloop_activity_stamp_test.ts (run with `--allow-natives-syntax`): answers
 * every read with "S" when the connection's activity stamp is a small integer (V8 keeps it in the
 * connection's field) and "H" when it is a heap number (a new allocation on every read).
 *
 * @module
 */
import { Action, type Conn } from "@triad/netloop";

// `%IsSmi` is V8 natives syntax: built at run time so that the module parses without the flag.
const isSmi = new Function("value", "return %IsSmi(value)") as (value: unknown) => boolean;

/** Replies "S" or "H" for each read. */
export function onTraffic(conn: Conn): Action {
  conn.discard();
  const stamp = (conn as unknown as { lastActive: unknown }).lastActive;
  conn.write(new TextEncoder().encode(isSmi(stamp) ? "S" : "H"));
  return Action.None;
}
