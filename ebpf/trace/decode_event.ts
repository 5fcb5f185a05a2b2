/**
 * {@linkcode decodeEvent}: a `struct tcptrace_event` ring buffer record to a
 * {@linkcode TraceEvent}, read in place through the bpf2ts-generated view.
 *
 * @module
 */

import { ipFromBytes } from "@triad/core";
import { TCPTRACE_EVENT_SIZE, TcptraceEventView } from "../bpf/tcptrace.gen.ts";
import type { KernelClock } from "./kernel_clock.ts";
import { tcpStateName } from "./tcp_state_name.ts";
import type { TraceEvent, TraceEventType } from "./trace_event.ts";

/** Size in bytes of one `struct tcptrace_event` record (see `ebpf/bpf/tcptrace.bpf.c`). */
export const EVENT_RECORD_SIZE: number = TCPTRACE_EVENT_SIZE;

const KIND_NAMES: Record<number, TraceEventType> = {
  1: "connect",
  2: "accept",
  3: "close",
  4: "state",
};

/**
 * Decodes one `struct tcptrace_event` record into a {@linkcode TraceEvent}.
 *
 * @param record The record (at least {@linkcode EVENT_RECORD_SIZE} bytes, such as a ring buffer
 *   record); only read in place, not kept.
 * @param clock Converts the kernel timestamp.
 * @param offset Where the record starts in `record` (a reader's whole mapping, say).
 * @returns The event.
 *
 * @example
 * ```ts
 * import { decodeEvent, EVENT_RECORD_SIZE } from "./decode_event.ts";
 * import { KernelClock } from "./kernel_clock.ts";
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
export function decodeEvent(record: DataView, clock: KernelClock, offset = 0): TraceEvent {
  const view = new TcptraceEventView(record, offset); // zero-copy: reads the record in place
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
