/**
 * Command-line options of `deno task trace`, parsed with `node:util` parseArgs.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { TriadError } from "@triad/core";

/** What the tracer was asked to do. */
export interface TraceOptions {
  /** JSON Lines on stdout. */
  json: boolean;
  /** Only sockets owned by this process id. */
  pid?: number;
  /** Only sockets owned by processes with this command name (at most 15 characters). */
  comm?: string;
  /** Only connections with this port on either side. */
  port?: number;
  /** Only IPv4 (4) or IPv6 (6). */
  family?: 4 | 6;
  /** Also print every state transition. */
  states: boolean;
  /** Stop after this many seconds. */
  durationSeconds?: number;
  /** Stop after this many events (lost reports excluded). */
  maxEvents?: number;
  /** tcplife-like output: one line per closed connection. */
  summary: boolean;
  /** Top-like per-connection counts refreshed every this many seconds. */
  intervalSeconds?: number;
  /** Ring buffer size in bytes (a power of two from 4096). */
  ringBytes?: number;
  /** How accept() is observed: `auto` (fexit, else syscall tracepoints), `fexit`, `syscall`. */
  acceptHook?: "auto" | "fexit" | "syscall";
  /** Serve `/metrics` and `/health/live` on this `host:port`. */
  metrics?: string;
  /** First list the TCP sockets that exist at start (`socket` events, from a TCP iterator). */
  snapshot: boolean;
  /** Print the usage and exit. */
  help: boolean;
}

/** The usage text of `deno task trace --help`. */
export const USAGE = `Usage: deno task trace [options]

Shows every TCP connection on this machine as it opens and closes (IPv4 and IPv6), from the
kernel tracepoint sock:inet_sock_set_state. Needs root (or CAP_BPF, CAP_PERFMON and
CAP_SYS_RESOURCE), kernel BTF and libbpf.so.1.

Events: connect (active open established), accept (passive open accepted), close (with duration
and bytes), state (every transition, with --states), lost (events the kernel could not queue),
socket (a socket that existed at start, with --snapshot).

Options:
  --json               JSON Lines on stdout, one event per line
  --pid N              only sockets owned by process N
  --comm NAME          only sockets owned by processes named NAME (15 characters at most)
  --port N             only connections with port N on either side
  --family 4|6         only IPv4 or only IPv6
  --states             also show every TCP state transition
  --duration SECONDS   stop after SECONDS (fractions allowed)
  --max-events N       stop after N events
  --summary            one line per closed connection (like tcplife)
  --interval SECONDS   per-connection counts, refreshed every SECONDS (like top)
  --ring-size BYTES    kernel ring buffer size, a power of two from 4096 (default 8388608)
  --accept-hook HOOK   how accept() is seen: auto (default: fexit where it loads, else syscall),
                       fexit (fexit/inet_csk_accept), syscall (accept/accept4 tracepoints)
  --metrics HOST:PORT  serve Prometheus /metrics (events, lost events) and /health/live there
  --snapshot           first list the TCP sockets that exist at start (socket events, with
                       their state; --port and --family apply; needs kernel 5.9+ bpf_iter)
  --help               show this help

Without --json the output is an aligned table on a terminal and plain columns otherwise.
A status line (events seen, lost) goes to stderr at exit; SIGINT/SIGTERM stop cleanly.`;

/** A bad command line; `code` is `bad_option`. */
export class TraceUsageError extends TriadError {
  /**
   * Creates the error.
   *
   * @param message What was wrong, naming the option.
   */
  constructor(message: string) {
    super(message, { code: "bad_option" });
  }
}

function integer(name: string, text: string | undefined, min: number, max: number): number {
  const value = Number(text);
  if (text === undefined || !/^\d+$/.test(text) || value < min || value > max) {
    throw new TraceUsageError(
      `--${name}: expected an integer from ${min} to ${max}, got ${JSON.stringify(text ?? "")}`,
    );
  }
  return value;
}

function seconds(name: string, text: string | undefined): number {
  const value = Number(text);
  if (text === undefined || !/^\d+(\.\d+)?$/.test(text) || !(value > 0)) {
    throw new TraceUsageError(
      `--${name}: expected a positive number of seconds, got ${JSON.stringify(text ?? "")}`,
    );
  }
  return value;
}

/**
 * Parses the tracer's command line.
 *
 * @param args The arguments after the task name.
 * @returns The options.
 * @throws {TraceUsageError} On an unknown option, a missing or malformed value.
 *
 * @example
 * ```ts
 * import { parseTraceOptions } from "./parse_trace_options.ts";
 * import assert from "node:assert/strict";
 *
 * const options = parseTraceOptions(["--json", "--port", "443", "--family", "6"]);
 * assert.equal(options.json, true);
 * assert.equal(options.port, 443);
 * assert.equal(options.family, 6);
 * assert.throws(() => parseTraceOptions(["--port", "http"]), /--port: expected an integer/);
 * ```
 */
export function parseTraceOptions(args: readonly string[]): TraceOptions {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...args],
      strict: true,
      allowPositionals: false,
      options: {
        json: { type: "boolean", default: false },
        pid: { type: "string" },
        comm: { type: "string" },
        port: { type: "string" },
        family: { type: "string" },
        states: { type: "boolean", default: false },
        duration: { type: "string" },
        "max-events": { type: "string" },
        summary: { type: "boolean", default: false },
        interval: { type: "string" },
        "ring-size": { type: "string" },
        "accept-hook": { type: "string" },
        metrics: { type: "string" },
        snapshot: { type: "boolean", default: false },
        help: { type: "boolean", short: "h", default: false },
      },
    });
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    throw new TraceUsageError(`${message.replace(/\.$/, "")}: see --help`);
  }
  const values = parsed.values;
  const options: TraceOptions = {
    json: values.json,
    states: values.states,
    snapshot: values.snapshot,
    summary: values.summary,
    help: values.help,
  };
  if (values.pid !== undefined) options.pid = integer("pid", values.pid, 1, 4194304);
  if (values.comm !== undefined) {
    const length = new TextEncoder().encode(values.comm).length;
    if (length === 0 || length > 15) {
      throw new TraceUsageError(
        `--comm: expected 1 to 15 bytes (the kernel's command name length), got ${length}`,
      );
    }
    options.comm = values.comm;
  }
  if (values.port !== undefined) options.port = integer("port", values.port, 1, 65535);
  if (values.family !== undefined) {
    if (values.family !== "4" && values.family !== "6") {
      throw new TraceUsageError(`--family: expected 4 or 6, got ${JSON.stringify(values.family)}`);
    }
    options.family = values.family === "4" ? 4 : 6;
  }
  if (values.duration !== undefined) {
    options.durationSeconds = seconds("duration", values.duration);
  }
  if (values["max-events"] !== undefined) {
    options.maxEvents = integer("max-events", values["max-events"], 1, Number.MAX_SAFE_INTEGER);
  }
  if (values.interval !== undefined) options.intervalSeconds = seconds("interval", values.interval);
  if (values["ring-size"] !== undefined) {
    const size = integer("ring-size", values["ring-size"], 4096, 2 ** 30);
    if ((size & (size - 1)) !== 0) {
      throw new TraceUsageError(`--ring-size: expected a power of two, got ${size}`);
    }
    options.ringBytes = size;
  }
  const hook = values["accept-hook"];
  if (hook !== undefined) {
    if (hook !== "auto" && hook !== "fexit" && hook !== "syscall") {
      throw new TraceUsageError(
        `--accept-hook: expected auto, fexit or syscall, got ${JSON.stringify(hook)}`,
      );
    }
    options.acceptHook = hook;
  }
  if (values.metrics !== undefined) {
    const port = /^(?:\[[0-9a-fA-F:.]+\]|[^:\s]+):(\d+)$/.exec(values.metrics)?.[1];
    if (port === undefined || Number(port) > 65535) {
      throw new TraceUsageError(
        `--metrics: expected HOST:PORT (such as 0.0.0.0:9464), got ${
          JSON.stringify(values.metrics)
        }`,
      );
    }
    options.metrics = values.metrics;
  }
  if (options.snapshot) {
    const other = options.pid !== undefined
      ? "--pid"
      : options.comm !== undefined
      ? "--comm"
      : options.summary
      ? "--summary"
      : options.intervalSeconds !== undefined
      ? "--interval"
      : undefined;
    if (other !== undefined) {
      throw new TraceUsageError(
        `--snapshot cannot be combined with ${other}: the sockets listed at start carry no ` +
          "owning process and are not connections that close",
      );
    }
  }
  if (options.summary && options.intervalSeconds !== undefined) {
    throw new TraceUsageError(`--summary and --interval cannot be combined: pick one view`);
  }
  if (options.states && (options.summary || options.intervalSeconds !== undefined)) {
    throw new TraceUsageError(
      `--states shows single events: it cannot be combined with ${
        options.summary ? "--summary" : "--interval"
      }`,
    );
  }
  if (options.json && options.intervalSeconds !== undefined) {
    throw new TraceUsageError(
      `--json and --interval cannot be combined: --interval redraws a screen`,
    );
  }
  return options;
}
