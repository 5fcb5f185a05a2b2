/**
 * {@linkcode listTcpSockets}: the TCP sockets that exist now, from a TCP iterator program
 * (`ebpf/bpf/tcp_snapshot.bpf.c`, bpf_iter, kernel 5.9+), as `socket` events, so
 * `deno task trace --snapshot` shows the connections opened before it started.
 *
 * @module
 */
import { ipFromBytes } from "@triad/core";
import { readIterator } from "@triad/ebpf";
import { TCP_SOCKET_SIZE, TcpSnapshotObject, TcpSocketView } from "../bpf/tcp_snapshot.gen.ts";
import { tcpStateName } from "./tcp_state_name.ts";
import type { TraceEvent } from "./trace_event.ts";

/** Which sockets to list (the iterator sees no owning process: `pid`/`comm` do not apply). */
export interface SnapshotFilter {
  /** Only sockets with this port on either side. */
  port?: number;
  /** Only IPv4 (4) or IPv6 (6). */
  family?: 4 | 6;
}

/**
 * Lists the TCP sockets that exist when it runs (listening, established, closing, time-wait),
 * as `socket` events whose `newstate` is the socket's state.
 *
 * @param filter Port and family filters.
 * @param now The time stamped on the events.
 * @returns The events.
 */
export async function listTcpSockets(
  filter: SnapshotFilter = {},
  now: Date = new Date(),
): Promise<TraceEvent[]> {
  using snapshot = TcpSnapshotObject.open();
  await snapshot.load();
  using link = snapshot.programs.list_tcp.attachIter();
  const time = now.toISOString();
  const events: TraceEvent[] = [];
  for await (const record of readIterator(link).records(TCP_SOCKET_SIZE)) {
    const socket = new TcpSocketView(record);
    const family = socket.family === 2 ? 4 : 6;
    if (filter.family !== undefined && family !== filter.family) continue;
    const sport = socket.local_port;
    const dport = socket.remote_port;
    if (filter.port !== undefined && sport !== filter.port && dport !== filter.port) continue;
    events.push({
      type: "socket",
      time,
      family,
      saddr: address(socket.local_addr, family),
      sport,
      daddr: address(socket.remote_addr, family),
      dport,
      newstate: tcpStateName(socket.state),
    });
  }
  return events;
}

function address(bytes: Uint8Array, family: 4 | 6): string {
  return family === 4 ? bytes.subarray(0, 4).join(".") : ipFromBytes(bytes.subarray(0, 16));
}
