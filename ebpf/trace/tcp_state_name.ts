/**
 * TCP state names by the kernel's numbers.
 *
 * @module
 */

/** TCP states by their kernel number (include/net/tcp_states.h). */
const TCP_STATES: readonly string[] = [
  "UNKNOWN",
  "ESTABLISHED",
  "SYN_SENT",
  "SYN_RECV",
  "FIN_WAIT1",
  "FIN_WAIT2",
  "TIME_WAIT",
  "CLOSE",
  "CLOSE_WAIT",
  "LAST_ACK",
  "LISTEN",
  "CLOSING",
  "NEW_SYN_RECV",
  "BOUND_INACTIVE",
];

/**
 * Names a TCP state number as `ss` and the kernel's tracepoint do (`SYN_SENT`, `TIME_WAIT`).
 *
 * @param state The kernel's state number.
 * @returns Its name, or `STATE_<n>` for a number this table does not know.
 *
 * @example
 * ```ts
 * import { tcpStateName } from "./tcp_state_name.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(tcpStateName(2), "SYN_SENT");
 * assert.equal(tcpStateName(99), "STATE_99");
 * ```
 */
export function tcpStateName(state: number): string {
  return state > 0 ? TCP_STATES[state] ?? `STATE_${state}` : `STATE_${state}`;
}
