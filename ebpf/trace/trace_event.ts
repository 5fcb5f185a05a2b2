/**
 * The tracer's events as printed with `--json`: the field names are the contract.
 *
 * @module
 */

/**
 * What happened: an active open, a passive open, a close, a state change, lost events, or (with
 * `--snapshot`) a socket that existed when the tracer started.
 */
export type TraceEventType = "connect" | "accept" | "close" | "state" | "lost" | "socket";

/**
 * One traced event as printed with `--json` (field names and order are the contract).
 * `lost` events carry only `type`, `time` and `count`.
 */
export interface TraceEvent {
  /** `connect`, `accept`, `close`, `state`, `lost` or `socket`. */
  type: TraceEventType;
  /** When it happened, ISO 8601 (UTC, millisecond precision). */
  time: string;
  /** Process id (thread group) of the socket's owner: the connecting or accepting process. */
  pid?: number;
  /** The owner's command name (at most 15 characters, as the kernel keeps it). */
  comm?: string;
  /** 4 or 6. */
  family?: 4 | 6;
  /** Local address. */
  saddr?: string;
  /** Local port. */
  sport?: number;
  /** Remote address. */
  daddr?: string;
  /** Remote port. */
  dport?: number;
  /** `close`: milliseconds from the open (SYN sent or received) to the close. */
  durationMs?: number;
  /** `close`: bytes sent and acknowledged by the peer (tcp_sock.bytes_acked). */
  txBytes?: number;
  /** `close`: bytes received (tcp_sock.bytes_received). */
  rxBytes?: number;
  /** `state`: the state left, such as `SYN_SENT`. */
  oldstate?: string;
  /** `state`: the state entered, such as `ESTABLISHED`; `socket`: the socket's state. */
  newstate?: string;
  /** `lost`: how many events the kernel could not queue since the last report. */
  count?: number;
}

/**
 * Builds the `lost` event reported when the kernel dropped events.
 *
 * @param count How many were lost since the last report.
 * @param now When it was noticed.
 * @returns The event.
 */
export function lostEvent(count: number, now: Date = new Date()): TraceEvent {
  return { type: "lost", time: now.toISOString(), count };
}
