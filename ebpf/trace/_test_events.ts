/**
 * Events the formatter tests share.
 *
 * @module
 */

import type { TraceEvent } from "./trace_event.ts";

/** A `connect` from curl (pid 7) to 127.0.0.1:80. */
export const CONNECT: TraceEvent = {
  type: "connect",
  time: "2026-01-01T10:00:00.123Z",
  pid: 7,
  comm: "curl",
  family: 4,
  saddr: "127.0.0.1",
  sport: 40000,
  daddr: "127.0.0.1",
  dport: 80,
};

/** Its `close`: 12.5 ms, 100 bytes out, 2000 in. */
export const CLOSE: TraceEvent = {
  ...CONNECT,
  type: "close",
  durationMs: 12.5,
  txBytes: 100,
  rxBytes: 2000,
};
