/**
 * {@linkcode EventFormatter}: what every output view of the tracer implements.
 *
 * @module
 */

import type { TraceEvent } from "./trace_event.ts";

/** Turns events into output lines; `finish()` flushes what a view holds back. */
export interface EventFormatter {
  /** Lines to print before any event (a header), possibly none. */
  header(): string[];
  /** Lines for one event, possibly none (a view that does not show this type). */
  format(event: TraceEvent): string[];
}
