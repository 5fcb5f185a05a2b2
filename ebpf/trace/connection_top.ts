/**
 * {@linkcode ConnectionTop}: the top-like per-connection view (`--interval`).
 *
 * @module
 */

import type { TraceEvent } from "./trace_event.ts";

/** One row of the per-connection view. */
interface Row {
  pid: number;
  comm: string;
  local: string;
  remote: string;
  port: number;
  connects: number;
  accepts: number;
  closes: number;
  txBytes: number;
  rxBytes: number;
}

/**
 * Top-like view: per process and peer, connects/accepts/closes and bytes of the last interval,
 * busiest first. Feed events with `add()`; `render()` returns the screen and starts a new interval.
 *
 * @example
 * ```ts
 * import { ConnectionTop } from "./connection_top.ts";
 * import assert from "node:assert/strict";
 *
 * const top = new ConnectionTop();
 * const base = { time: "2026-01-01T10:00:00.000Z", pid: 7, comm: "curl", family: 4 as const,
 *   saddr: "127.0.0.1", sport: 40000, daddr: "127.0.0.1", dport: 80 };
 * top.add({ ...base, type: "connect" });
 * top.add({ ...base, type: "close", durationMs: 1, txBytes: 10, rxBytes: 20 });
 * const screen = top.render(new Date("2026-01-01T10:00:01Z"), 0);
 * assert.match(screen.at(-1)!, /curl\s+127\.0\.0\.1\s+127\.0\.0\.1\s+80\s+1\s+0\s+1\s+10\s+20/);
 * ```
 */
export class ConnectionTop {
  #rows = new Map<string, Row>();
  // A connection's direction, learned at connect/accept, decides which side is the service port.
  #direction = new Map<string, "out" | "in">();

  /**
   * Counts one event.
   *
   * @param event The event; `state` and `lost` events are not counted here.
   */
  add(event: TraceEvent): void {
    if (event.type !== "connect" && event.type !== "accept" && event.type !== "close") return;
    const tuple = `${event.saddr} ${event.sport} ${event.daddr} ${event.dport}`;
    let direction = this.#direction.get(tuple);
    if (event.type === "connect") direction = "out";
    if (event.type === "accept") direction = "in";
    if (event.type === "close") this.#direction.delete(tuple);
    else if (direction) this.#direction.set(tuple, direction);
    // Unknown direction (opened before we started): the lower port is likely the service's.
    const port = direction === "out"
      ? event.dport!
      : direction === "in"
      ? event.sport!
      : Math.min(event.sport!, event.dport!);
    const key = `${event.pid} ${event.comm} ${event.saddr} ${event.daddr} ${port}`;
    let row = this.#rows.get(key);
    if (!row) {
      row = {
        pid: event.pid ?? 0,
        comm: event.comm ?? "",
        local: event.saddr ?? "",
        remote: event.daddr ?? "",
        port,
        connects: 0,
        accepts: 0,
        closes: 0,
        txBytes: 0,
        rxBytes: 0,
      };
      this.#rows.set(key, row);
    }
    if (event.type === "connect") row.connects++;
    else if (event.type === "accept") row.accepts++;
    else {
      row.closes++;
      row.txBytes += event.txBytes ?? 0;
      row.rxBytes += event.rxBytes ?? 0;
    }
  }

  /**
   * Renders the interval's rows, busiest first, and starts a new interval.
   *
   * @param now The time shown in the title.
   * @param lost Events lost in total so far.
   * @param maxRows At most this many rows.
   * @returns The lines of the screen.
   */
  render(now: Date, lost: number, maxRows = 40): string[] {
    const rows = [...this.#rows.values()].sort((a, b) =>
      (b.connects + b.accepts + b.closes) - (a.connects + a.accepts + a.closes) ||
      (b.txBytes + b.rxBytes) - (a.txBytes + a.rxBytes)
    ).slice(0, maxRows);
    this.#rows.clear();
    const table = [
      ["PID", "COMM", "LADDR", "RADDR", "PORT", "CONN", "ACC", "CLOSE", "TX_BYTES", "RX_BYTES"],
      ...rows.map((r) => [
        String(r.pid),
        r.comm,
        r.local,
        r.remote,
        String(r.port),
        String(r.connects),
        String(r.accepts),
        String(r.closes),
        String(r.txBytes),
        String(r.rxBytes),
      ]),
    ];
    const widths = table[0]!.map((_, i) => Math.max(...table.map((row) => row[i]!.length)));
    const numeric = (i: number) => i === 0 || i >= 4;
    return [
      `${now.toISOString().slice(11, 19)}  ${rows.length} active peers, ${lost} events lost`,
      ...table.map((row) =>
        row.map((v, i) => numeric(i) ? v.padStart(widths[i]!) : v.padEnd(widths[i]!)).join("  ")
          .trimEnd()
      ),
    ];
  }
}
