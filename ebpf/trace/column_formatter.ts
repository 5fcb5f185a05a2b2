/**
 * {@linkcode ColumnFormatter}: the aligned table (terminal), plain columns (pipes) and the
 * tcplife-like summary.
 *
 * @module
 */

import type { EventFormatter } from "./event_formatter.ts";
import type { TraceEvent } from "./trace_event.ts";

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
    case "socket":
      return event.newstate ?? "";
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
 * import { ColumnFormatter } from "./column_formatter.ts";
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
