/**
 * The tracer's Prometheus metrics and its `/health/live`, served by `deno task trace --metrics`.
 *
 * @module
 */

import { formatSocketAddress, Metrics, parseSocketAddress } from "@triad/core";
import type { Counter } from "@triad/core";

/** Where the counters come from that the kernel side keeps. */
interface TraceCounterSources {
  /** Events the kernel could not queue so far (`TcpTracer.lost()`). */
  lost(): number;
  /** Records that could not be decoded so far. */
  undecodable(): number;
}

/**
 * The tracer's metrics: events by type, events lost in the kernel, undecodable records.
 *
 * @example
 * ```ts
 * import { TraceMetrics } from "./trace_metrics.ts";
 * import assert from "node:assert/strict";
 *
 * const metrics = new TraceMetrics({ lost: () => 3, undecodable: () => 0 });
 * metrics.event("connect");
 * const text = metrics.registry.expose();
 * assert.match(text, /^trace_events_total\{type="connect"\} 1$/m);
 * assert.match(text, /^trace_lost_events_total 3$/m);
 * ```
 */
export class TraceMetrics {
  /** The registry the metrics live in. */
  readonly registry: Metrics = new Metrics();
  readonly #events: Counter;
  readonly #handles = new Map<string, () => void>();

  /**
   * Registers the metrics.
   *
   * @param sources The kernel-side counters, read at each scrape.
   */
  constructor(sources: TraceCounterSources) {
    this.#events = this.registry.counter({
      name: "trace_events_total",
      help: "TCP events delivered, by type (connect, accept, close, state).",
      labels: ["type"],
    });
    for (const type of ["connect", "accept", "close"]) this.#events.inc({ type }, 0);
    const lost = this.registry.counter({
      name: "trace_lost_events_total",
      help: "Events the kernel could not queue (ring buffer full, tracking table full, " +
        "program runs skipped by recursion protection).",
    });
    const undecodable = this.registry.counter({
      name: "trace_undecodable_records_total",
      help: "Ring buffer records this version could not decode.",
    });
    this.registry.onCollect(() => {
      lost.inc(undefined, Math.max(0, sources.lost() - lost.get()));
      undecodable.inc(undefined, Math.max(0, sources.undecodable() - undecodable.get()));
    });
  }

  /** Counts one delivered event. */
  event(type: string): void {
    let handle = this.#handles.get(type);
    if (handle === undefined) {
      handle = this.#events.bind({ type });
      this.#handles.set(type, handle);
    }
    handle();
  }
}

/** A running `/metrics` and `/health/live` server. */
export interface TraceMetricsServer extends AsyncDisposable {
  /** `host:port` it listens on (the port the kernel chose for port 0). */
  readonly address: string;
}

/**
 * Serves `/metrics` and `/health/live`. Live (200) while `live()` returns `undefined`; 503 with
 * the reason it returns otherwise.
 *
 * @param at `host:port` to listen on.
 * @param metrics The metrics to expose.
 * @param live Returns why the tracer is not live, or `undefined` when it is.
 * @returns The server; dispose it to stop.
 */
export function serveTraceMetrics(
  at: string,
  metrics: TraceMetrics,
  live: () => string | undefined,
): TraceMetricsServer {
  const address = parseSocketAddress(at);
  const server = Deno.serve({ hostname: address.address, port: address.port, onListen() {} }, (
    request,
  ) => {
    const path = new URL(request.url).pathname;
    if (path === "/metrics") {
      return new Response(metrics.registry.expose(), {
        headers: { "content-type": "text/plain; version=0.0.4" },
      });
    }
    const text = (status: number, body: string) =>
      new Response(`${body}\n`, { status, headers: { "content-type": "text/plain" } });
    if (path === "/health/live") {
      const reason = live();
      return reason === undefined ? text(200, "live") : text(503, reason);
    }
    return text(404, "Not found: try /metrics or /health/live");
  });
  const port = (server.addr as Deno.NetAddr).port;
  return {
    address: formatSocketAddress({ ...address, port }),
    [Symbol.asyncDispose]: () => server.shutdown(),
  };
}
