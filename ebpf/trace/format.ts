/**
 * How events are printed: JSON Lines, an aligned table (terminal), plain columns (pipes), the
 * tcplife-like summary and the top-like per-connection view.
 *
 * @module
 */

import type { TraceEvent } from "./event.ts";

/** Turns events into output lines; `finish()` flushes what a view holds back. */
export interface EventFormatter {
  /** Lines to print before any event (a header), possibly none. */
  header(): string[];
  /** Lines for one event, possibly none (a view that does not show this type). */
  format(event: TraceEvent): string[];
}

/**
 * JSON Lines: one `JSON.stringify`'d event per line, fields in contract order.
 *
 * @example
 * ```ts
 * import { JsonFormatter } from "./format.ts";
 * import assert from "node:assert/strict";
 *
 * const lines = new JsonFormatter().format({ type: "lost", time: "2026-01-01T00:00:00.000Z", count: 3 });
 * assert.deepEqual(lines, ['{"type":"lost","time":"2026-01-01T00:00:00.000Z","count":3}']);
 * ```
 */
export class JsonFormatter implements EventFormatter {
  #only: ReadonlySet<string> | undefined;

  /**
   * Creates the formatter.
   *
   * @param only When given, only events of these types (and `lost`) are printed.
   */
  constructor(only?: readonly string[]) {
    this.#only = only ? new Set([...only, "lost"]) : undefined;
  }

  /** @returns No header. */
  header(): string[] {
    return [];
  }

  /**
   * @param event The event.
   * @returns Its JSON line.
   */
  format(event: TraceEvent): string[] {
    if (this.#only && !this.#only.has(event.type)) return [];
    return [JSON.stringify(event)];
  }
}

interface Column {
  title: string;
  width: number;
  right?: boolean;
  value(event: TraceEvent): string;
}

function clock(time: string): string {
  return time.slice(11, 23);
}

function detail(event: TraceEvent): string {
  switch (event.type) {
    case "close":
      return `${event.durationMs?.toFixed(3)}ms tx=${event.txBytes} rx=${event.rxBytes}`;
    case "state":
      return `${event.oldstate}->${event.newstate}`;
    case "lost":
      return `${event.count} events lost`;
    default:
      return "";
  }
}

const EVENT_COLUMNS: Column[] = [
  { title: "TIME", width: 12, value: (e) => clock(e.time) },
  { title: "TYPE", width: 7, value: (e) => e.type },
  { title: "PID", width: 7, right: true, value: (e) => String(e.pid ?? "-") },
  { title: "COMM", width: 15, value: (e) => e.comm || "-" },
  { title: "IP", width: 2, value: (e) => String(e.family ?? "-") },
  { title: "LADDR", width: 15, value: (e) => e.saddr ?? "-" },
  { title: "LPORT", width: 5, right: true, value: (e) => String(e.sport ?? "-") },
  { title: "RADDR", width: 15, value: (e) => e.daddr ?? "-" },
  { title: "RPORT", width: 5, right: true, value: (e) => String(e.dport ?? "-") },
  { title: "DETAIL", width: 0, value: detail },
];

const SUMMARY_COLUMNS: Column[] = [
  { title: "TIME", width: 12, value: (e) => clock(e.time) },
  { title: "PID", width: 7, right: true, value: (e) => String(e.pid) },
  { title: "COMM", width: 15, value: (e) => e.comm || "-" },
  { title: "IP", width: 2, value: (e) => String(e.family) },
  { title: "LADDR", width: 15, value: (e) => e.saddr ?? "-" },
  { title: "LPORT", width: 5, right: true, value: (e) => String(e.sport) },
  { title: "RADDR", width: 15, value: (e) => e.daddr ?? "-" },
  { title: "RPORT", width: 5, right: true, value: (e) => String(e.dport) },
  { title: "TX_BYTES", width: 9, right: true, value: (e) => String(e.txBytes) },
  { title: "RX_BYTES", width: 9, right: true, value: (e) => String(e.rxBytes) },
  { title: "MS", width: 10, right: true, value: (e) => (e.durationMs ?? 0).toFixed(3) },
];

/**
 * Columns of text. `aligned` pads to column widths that grow with the widest value seen so far
 * (a live table never reflows lines already printed); otherwise fields are separated by one
 * space, empty ones shown as `-`, for `awk` and `cut`.
 *
 * @example
 * ```ts
 * import { ColumnFormatter } from "./format.ts";
 * import assert from "node:assert/strict";
 *
 * const plain = new ColumnFormatter({ aligned: false });
 * const [line] = plain.format({
 *   type: "connect", time: "2026-01-01T10:00:00.123Z", pid: 7, comm: "curl", family: 4,
 *   saddr: "127.0.0.1", sport: 40000, daddr: "127.0.0.1", dport: 80,
 * });
 * assert.equal(line, "10:00:00.123 connect 7 curl 4 127.0.0.1 40000 127.0.0.1 80 -");
 * ```
 */
export class ColumnFormatter implements EventFormatter {
  #columns: Column[];
  #aligned: boolean;
  #only: ReadonlySet<string> | undefined;

  /**
   * Creates the formatter.
   *
   * @param options `aligned` pads columns (terminal); `summary` prints closes only, tcplife-like.
   */
  constructor(options: { aligned: boolean; summary?: boolean }) {
    this.#aligned = options.aligned;
    this.#columns = (options.summary ? SUMMARY_COLUMNS : EVENT_COLUMNS).map((c) => ({ ...c }));
    this.#only = options.summary ? new Set(["close", "lost"]) : undefined;
  }

  /** @returns The header line. */
  header(): string[] {
    return [this.#line(this.#columns.map((c) => c.title))];
  }

  /**
   * @param event The event.
   * @returns Its line (a `lost` event in the summary view is a `# ...` note).
   */
  format(event: TraceEvent): string[] {
    if (this.#only && !this.#only.has(event.type)) return [];
    if (this.#only && event.type === "lost") {
      return [`# ${clock(event.time)} ${event.count} events lost`];
    }
    return [this.#line(this.#columns.map((c) => c.value(event)))];
  }

  #line(values: string[]): string {
    if (!this.#aligned) {
      // Spaces inside a field (a comm may have them) would shift columns; the last field is free.
      const last = values.length - 1;
      return values.map((v, i) => v === "" ? "-" : i === last ? v : v.replaceAll(" ", "_"))
        .join(" ");
    }
    return values.map((value, i) => {
      const column = this.#columns[i]!;
      if (column.width === 0) return value;
      if (value.length > column.width) column.width = value.length;
      return column.right ? value.padStart(column.width) : value.padEnd(column.width);
    }).join("  ").trimEnd();
  }
}

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
 * import { ConnectionTop } from "./format.ts";
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
