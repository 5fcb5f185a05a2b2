/**
 * {@linkcode JsonFormatter}: JSON Lines output (`--json`).
 *
 * @module
 */

import type { EventFormatter } from "./event_formatter.ts";
import type { TraceEvent } from "./trace_event.ts";

/**
 * JSON Lines: one `JSON.stringify`'d event per line, fields in contract order.
 *
 * @example
 * ```ts
 * import { JsonFormatter } from "./json_formatter.ts";
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
