/**
 * The tracer's events: the JSON contract (`TraceEvent`), the decoder of the kernel's
 * `struct tcptrace_event` records, TCP state names and the kernel-to-wall clock.
 *
 * @module
 */

import { ipFromBytes } from "@triad/core";
import { TCPTRACE_EVENT_SIZE, TcptraceEventView } from "../bpf/tcptrace.gen.ts";

/** What happened: an active open, a passive open, a close, a state change, or lost events. */
export type TraceEventType = "connect" | "accept" | "close" | "state" | "lost";

/**
 * One traced event as printed with `--json` (field names and order are the contract).
 * `lost` events carry only `type`, `time` and `count`.
 */
export interface TraceEvent {
  /** `connect`, `accept`, `close`, `state` or `lost`. */
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
  /** `state`: the state entered, such as `ESTABLISHED`. */
  newstate?: string;
  /** `lost`: how many events the kernel could not queue since the last report. */
  count?: number;
}

/** TCP states by their kernel number (include/net/tcp_states.h). */
export const TCP_STATES: readonly string[] = [
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
 * import { tcpStateName } from "./event.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(tcpStateName(2), "SYN_SENT");
 * assert.equal(tcpStateName(99), "STATE_99");
 * ```
 */
export function tcpStateName(state: number): string {
  return state > 0 ? TCP_STATES[state] ?? `STATE_${state}` : `STATE_${state}`;
}

/** Size in bytes of one `struct tcptrace_event` record (see `ebpf/bpf/tcptrace.bpf.c`). */
export const EVENT_RECORD_SIZE: number = TCPTRACE_EVENT_SIZE;

const KIND_NAMES: Record<number, TraceEventType> = {
  1: "connect",
  2: "accept",
  3: "close",
  4: "state",
};

/**
 * Converts kernel boot-clock nanoseconds (`bpf_ktime_get_boot_ns`) to wall-clock milliseconds.
 * The offset starts from `/proc/uptime` (10 ms resolution) and is tightened with every record
 * observed: a record is never stamped later than the moment it was read.
 */
export class KernelClock {
  #offsetMs: number;

  /**
   * Creates a clock.
   *
   * @param offsetMs Wall-clock milliseconds at boot; read from `/proc/uptime` when omitted.
   */
  constructor(offsetMs?: number) {
    this.#offsetMs = offsetMs ?? KernelClock.bootOffsetMs();
  }

  /**
   * Wall-clock milliseconds at boot as `/proc/uptime` tells it (or 0 where it is unreadable).
   *
   * @returns Milliseconds since the epoch at boot.
   */
  static bootOffsetMs(): number {
    try {
      const uptime = Number(Deno.readTextFileSync("/proc/uptime").split(" ")[0]);
      return Date.now() - uptime * 1000;
    } catch {
      return 0;
    }
  }

  /**
   * Returns the wall-clock time of a kernel timestamp, tightening the offset with the time it
   * was read.
   *
   * @param kernelNs Boot-clock nanoseconds.
   * @param observedMs When the record was read (wall-clock ms).
   * @returns Wall-clock milliseconds.
   */
  toWallMs(kernelNs: bigint, observedMs: number = Date.now()): number {
    const kernelMs = Number(kernelNs) / 1e6;
    if (observedMs - kernelMs < this.#offsetMs) this.#offsetMs = observedMs - kernelMs;
    return this.#offsetMs + kernelMs;
  }
}

/**
 * Decodes one `struct tcptrace_event` record into a {@linkcode TraceEvent}.
 *
 * @param record The record (at least {@linkcode EVENT_RECORD_SIZE} bytes, such as a ring buffer
 *   record); only read in place, not kept.
 * @param clock Converts the kernel timestamp.
 * @returns The event.
 *
 * @example
 * ```ts
 * import { decodeEvent, EVENT_RECORD_SIZE, KernelClock } from "./event.ts";
 * import assert from "node:assert/strict";
 *
 * const record = new Uint8Array(EVENT_RECORD_SIZE);
 * const view = new DataView(record.buffer);
 * view.setBigUint64(0, 1_000_000n, true); // 1 ms after boot
 * record.set([127, 0, 0, 1], 32);
 * record.set([127, 0, 0, 1], 48);
 * view.setUint32(64, 42, true);
 * view.setUint16(68, 40000, true);
 * view.setUint16(70, 80, true);
 * record.set([1, 4, 2, 1], 72); // connect, IPv4, SYN_SENT -> ESTABLISHED
 * record.set(new TextEncoder().encode("curl"), 76);
 *
 * const event = decodeEvent(view, new KernelClock(0));
 * assert.equal(event.type, "connect");
 * assert.equal(event.time, "1970-01-01T00:00:00.001Z");
 * assert.equal(`${event.saddr}:${event.sport} -> ${event.daddr}:${event.dport}`,
 *   "127.0.0.1:40000 -> 127.0.0.1:80");
 * ```
 */
export function decodeEvent(record: DataView, clock: KernelClock): TraceEvent {
  const view = new TcptraceEventView(record); // zero-copy: reads the record in place
  const kind = view.type;
  const type = KIND_NAMES[kind];
  if (type === undefined) throw new RangeError(`Unknown event type ${kind} at record offset 72`);
  const family = view.family === 6 ? 6 : 4;
  const event: TraceEvent = {
    type,
    time: isoTime(clock.toWallMs(view.time_ns)),
    pid: view.pid,
    comm: view.comm,
    family,
    saddr: address(view.saddr, family),
    sport: view.sport,
    daddr: address(view.daddr, family),
    dport: view.dport,
  };
  if (type === "close") {
    event.durationMs = Math.round(Number(view.duration_ns) / 1e3) / 1e3;
    event.txBytes = Number(view.tx_bytes);
    event.rxBytes = Number(view.rx_bytes);
  } else if (type === "state") {
    event.oldstate = tcpStateName(view.oldstate);
    event.newstate = tcpStateName(view.newstate);
  }
  return event;
}

// Decoding runs per event at up to ~100k/s: these skip the allocations of the general paths.

function address(bytes: Uint8Array, family: 4 | 6): string {
  return family === 4
    ? `${bytes[0]}.${bytes[1]}.${bytes[2]}.${bytes[3]}`
    : ipFromBytes(bytes.subarray(0, 16));
}

let lastMs = NaN;
let lastIso = "";

function isoTime(ms: number): string {
  const whole = Math.floor(ms);
  if (whole !== lastMs) {
    lastMs = whole;
    lastIso = new Date(whole).toISOString();
  }
  return lastIso;
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
