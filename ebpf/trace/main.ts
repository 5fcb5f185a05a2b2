/**
 * `deno task trace`: shows every TCP connection on this machine as it opens and closes.
 * See `--help` and `ebpf/README.md`.
 *
 * @module
 */

import { TriadError } from "@triad/core";
import type { TraceEvent } from "./trace_event.ts";
import { ColumnFormatter } from "./column_formatter.ts";
import { ConnectionTop } from "./connection_top.ts";
import type { EventFormatter } from "./event_formatter.ts";
import { JsonFormatter } from "./json_formatter.ts";
import {
  parseTraceOptions,
  type TraceOptions,
  TraceUsageError,
  USAGE,
} from "./parse_trace_options.ts";
import { checkTracePrerequisites } from "./check_trace_prerequisites.ts";
import { TcpTracer } from "./tcp_tracer.ts";
import { serveTraceMetrics, TraceMetrics, type TraceMetricsServer } from "./trace_metrics.ts";
import { listTcpSockets } from "./tcp_snapshot.ts";

const encoder = new TextEncoder();

function writeAll(file: { writeSync(p: Uint8Array): number }, text: string): void {
  let bytes = encoder.encode(text);
  while (bytes.length > 0) {
    const n = file.writeSync(bytes);
    bytes = bytes.subarray(n);
  }
}

function formatterFor(options: TraceOptions, tty: boolean): EventFormatter {
  if (options.json) return new JsonFormatter(options.summary ? ["close"] : undefined);
  return new ColumnFormatter({ aligned: tty, summary: options.summary });
}

/**
 * Runs the tracer with these arguments until a signal, `--duration` or `--max-events`.
 *
 * @param args Command-line arguments.
 * @returns The process exit code.
 */
export async function main(args: readonly string[]): Promise<number> {
  let options: TraceOptions;
  try {
    options = parseTraceOptions(args);
  } catch (error) {
    if (error instanceof TraceUsageError) {
      console.error(`trace: ${error.message}`);
      return 2;
    }
    throw error;
  }
  if (options.help) {
    console.log(USAGE);
    return 0;
  }

  let tracer: TcpTracer;
  try {
    await checkTracePrerequisites();
    tracer = await TcpTracer.open({
      ...(options.pid !== undefined && { pid: options.pid }),
      ...(options.comm !== undefined && { comm: options.comm }),
      ...(options.port !== undefined && { port: options.port }),
      ...(options.family !== undefined && { family: options.family }),
      states: options.states,
      ...(options.ringBytes !== undefined && { ringBytes: options.ringBytes }),
      ...(options.acceptHook !== undefined && { acceptHook: options.acceptHook }),
    });
  } catch (error) {
    if (error instanceof TriadError) {
      console.error(`trace: ${error.message}`);
      return 1;
    }
    throw error;
  }

  const stop = new AbortController();
  const onSignal = () => stop.abort();
  const metrics = new TraceMetrics({
    lost: () => tracer.lost(),
    undecodable: () => tracer.undecodable,
  });
  let metricsServer: TraceMetricsServer | undefined;
  if (options.metrics !== undefined) {
    try {
      metricsServer = serveTraceMetrics(options.metrics, metrics, () => {
        // answering proves the event loop is not stuck (on a blocked stdout, say); reading the
        // lost counter proves the kernel side is still there
        if (stop.signal.aborted) return "stopping";
        try {
          tracer.lost();
          return undefined;
        } catch (error) {
          return `cannot read the kernel's counters: ${error}`;
        }
      });
    } catch (error) {
      await tracer[Symbol.asyncDispose]();
      console.error(`trace: --metrics ${options.metrics}: ${error}`);
      return 1;
    }
    console.error(`trace: metrics at http://${metricsServer.address}/metrics`);
  }
  const signals: Deno.Signal[] = ["SIGINT", "SIGTERM"];
  for (const signal of signals) Deno.addSignalListener(signal, onSignal);
  const timer = options.durationSeconds !== undefined
    ? setTimeout(onSignal, options.durationSeconds * 1000)
    : undefined;

  const hook = tracer.acceptHook === "fexit"
    ? "fexit/inet_csk_accept"
    : `accept syscall tracepoints${
      tracer.fallbackReason ? `; fexit did not load: ${tracer.fallbackReason}` : ""
    }`;
  console.error(`trace: tracing TCP connections (accepts: ${hook}); Ctrl-C to stop`);
  const tty = Deno.stdout.isTerminal();
  const started = performance.now();
  const counts: Record<string, number> = { connect: 0, accept: 0, close: 0, state: 0 };
  let seen = 0;
  let shown = 0;
  let lost = 0;
  const formatter = formatterFor(options, tty);
  const top = options.intervalSeconds !== undefined ? new ConnectionTop() : undefined;
  let refresh: ReturnType<typeof setInterval> | undefined;
  if (top) {
    refresh = setInterval(() => {
      const screen = top.render(new Date(), lost).join("\n");
      writeAll(Deno.stdout, tty ? `\x1b[H\x1b[2J${screen}\n` : `${screen}\n\n`);
    }, options.intervalSeconds! * 1000);
  } else {
    const header = formatter.header();
    if (header.length > 0) writeAll(Deno.stdout, `${header.join("\n")}\n`);
  }

  try {
    if (options.snapshot) {
      // Listed after the tracer attached: a socket opened meanwhile shows in both, none in neither.
      let out = "";
      let sockets;
      try {
        sockets = await listTcpSockets({
          ...(options.port !== undefined && { port: options.port }),
          ...(options.family !== undefined && { family: options.family }),
        });
      } catch (error) {
        if (!(error instanceof TriadError)) throw error;
        console.error(`trace: --snapshot: ${error.message}`);
        return 1;
      }
      for (const event of sockets) out += `${formatter.format(event).join("\n")}\n`;
      if (out) writeAll(Deno.stdout, out);
      console.error(`trace: ${sockets.length} TCP sockets existed at start`);
    }
    outer: for await (const batch of tracer.batches(stop.signal)) {
      let out = "";
      for (const event of batch) {
        if (event.type === "lost") {
          lost += event.count ?? 0;
          // On a terminal the table shows it; otherwise stderr says it as it happens.
          if (!tty) console.error(`trace: ${event.count} events lost (ring buffer full)`);
        } else {
          seen++;
          counts[event.type] = (counts[event.type] ?? 0) + 1;
          metrics.event(event.type);
        }
        if (top) {
          top.add(event);
          if (event.type !== "lost" && options.maxEvents !== undefined) shown++;
        } else {
          const lines = formatter.format(event);
          if (lines.length > 0) {
            out += `${lines.join("\n")}\n`;
            if (event.type !== "lost") shown++;
          }
        }
        if (options.maxEvents !== undefined && shown >= options.maxEvents) {
          if (out) writeAll(Deno.stdout, out);
          break outer;
        }
      }
      if (out) writeAll(Deno.stdout, out);
    }
  } catch (error) {
    if (!(error instanceof Deno.errors.BrokenPipe)) throw error;
  } finally {
    for (const signal of signals) Deno.removeSignalListener(signal, onSignal);
    if (timer !== undefined) clearTimeout(timer);
    if (refresh !== undefined) clearInterval(refresh);
    // read the counter once more: what was lost after the last report is still reported
    const total = tracer.lost();
    if (total > lost) {
      const late: TraceEvent = {
        type: "lost",
        time: new Date().toISOString(),
        count: total - lost,
      };
      if (!top) {
        const lines = formatter.format(late);
        if (lines.length > 0) writeAll(Deno.stdout, `${lines.join("\n")}\n`);
      }
      lost = total;
    }
    await metricsServer?.[Symbol.asyncDispose]();
    await tracer[Symbol.asyncDispose]();
  }
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  console.error(
    `trace: ${seen} events (${counts.connect} connect, ${counts.accept} accept, ${counts.close} ` +
      `close${options.states ? `, ${counts.state} state` : ""}), ${lost} lost, ${seconds} s, ` +
      `accept hook ${tracer.acceptHook}` +
      (tracer.undecodable > 0 ? `, ${tracer.undecodable} undecodable records` : ""),
  );
  return 0;
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
