/**
 * The proxy's Prometheus metrics, registered on a `@triad/core` {@linkcode Metrics} registry.
 *
 * @module
 */
import { Metrics } from "@triad/core";
import type { Counter, Gauge, Histogram } from "@triad/core";
import { rcodeName, typeName } from "./wire/constants.ts";

/**
 * The transport a client query came on: cleartext `udp` and `tcp`, DNS over TLS (`tls`, RFC 7858),
 * over HTTPS (`https`, RFC 8484) or over QUIC (`quic`, RFC 9250).
 */
export type ClientTransport = "udp" | "tcp" | "tls" | "https" | "quic";

const TRANSPORT_SLOT: Record<ClientTransport, number> = {
  udp: 0,
  tcp: 1,
  tls: 2,
  https: 3,
  quic: 4,
};

const UPSTREAM_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2];

/**
 * The metrics the proxy keeps. Hot-path counters are bound once per label set.
 *
 * @example
 * ```ts
 * import { DnsMetrics } from "@triad/dnsproxy";
 * import assert from "node:assert/strict";
 *
 * const metrics = new DnsMetrics();
 * metrics.query(1, "udp");
 * metrics.response(0);
 * assert.match(metrics.registry.expose(), /^dns_queries_total\{type="A",transport="udp"\} 1$/m);
 * ```
 */
export class DnsMetrics {
  /** The registry the metrics live in. */
  readonly registry: Metrics;
  /** Cache hits. */
  readonly cacheHits: () => void;
  /** Cache misses. */
  readonly cacheMisses: () => void;
  /** Stale answers served (RFC 8767). */
  readonly cacheStale: () => void;
  /** Prefetches started. */
  readonly prefetches: () => void;
  /** Queries that joined an identical query already in flight. */
  readonly deduplicated: () => void;
  /** Queries refused by the ACL. */
  readonly aclRefused: () => void;
  /** Queries dropped or refused by the rate limit. */
  readonly rateLimited: () => void;
  /** Malformed queries answered FORMERR. */
  readonly malformedAnswered: () => void;
  /** Malformed queries dropped. */
  readonly malformedDropped: () => void;
  /** Gauges set from live state before each exposition. */
  readonly cacheEntries: Gauge;
  /** Bytes held by the cache. */
  readonly cacheBytes: Gauge;
  /** Upstream up (1) or down (0). */
  readonly upstreamHealthy: Gauge;
  /** Upstream deprioritised for slow round trips (1) or not (0). */
  readonly upstreamSlow: Gauge;
  /** Open TCP/TLS connections per upstream. */
  readonly upstreamConnections: Gauge;
  readonly #descriptorFailures: Counter;
  readonly #descriptorsSeen = { accept: 0, dial: 0 };
  readonly #upstreamSlowTotal: Counter;
  readonly #idleClosed: Counter;
  readonly #queries: Counter;
  readonly #responses: Counter;
  readonly #upstreamLatency: Histogram;
  readonly #upstreamFailures: Counter;
  readonly #mismatches: Counter;
  readonly #handshakes: Counter;
  readonly #queryHandles = new Map<number, () => void>();
  readonly #responseHandles = new Map<number, () => void>();
  readonly #latencyHandles = new Map<string, (seconds: number) => void>();

  /**
   * Registers the metrics.
   *
   * @param registry Where to register them. @default {a new registry}
   */
  constructor(registry: Metrics = new Metrics()) {
    this.registry = registry;
    const counter = (name: string, help: string) => registry.counter({ name, help }).bind();
    this.#queries = registry.counter({
      name: "dns_queries_total",
      help: "Queries received, by type and transport.",
      labels: ["type", "transport"],
    });
    this.#responses = registry.counter({
      name: "dns_responses_total",
      help: "Responses sent, by response code.",
      labels: ["rcode"],
    });
    this.cacheHits = counter("dns_cache_hits_total", "Answers served fresh from the cache.");
    this.cacheMisses = counter("dns_cache_misses_total", "Queries not answered from the cache.");
    this.cacheStale = counter("dns_cache_stale_total", "Stale answers served (RFC 8767).");
    this.prefetches = counter("dns_cache_prefetches_total", "Popular entries refreshed early.");
    this.deduplicated = counter(
      "dns_inflight_deduplicated_total",
      "Queries that joined an identical upstream query in flight.",
    );
    this.aclRefused = counter("dns_acl_refused_total", "Queries refused by the client ACL.");
    this.rateLimited = counter("dns_rate_limited_total", "Queries over the per-client rate.");
    this.malformedAnswered = counter("dns_malformed_formerr_total", "Malformed queries, FORMERR.");
    this.malformedDropped = counter("dns_malformed_dropped_total", "Malformed packets dropped.");
    this.cacheEntries = registry.gauge({ name: "dns_cache_entries", help: "Cache entries." });
    this.cacheBytes = registry.gauge({ name: "dns_cache_bytes", help: "Bytes held by the cache." });
    this.upstreamHealthy = registry.gauge({
      name: "dns_upstream_healthy",
      help: "Whether the upstream is up (1) or down (0).",
      labels: ["upstream"],
    });
    this.upstreamSlow = registry.gauge({
      name: "dns_upstream_slow",
      help: "Whether the upstream is deprioritised for slow round trips (1) or not (0).",
      labels: ["upstream"],
    });
    this.upstreamConnections = registry.gauge({
      name: "dns_upstream_connections",
      help: "Open TCP/TLS connections to the upstream.",
      labels: ["upstream"],
    });
    this.#upstreamSlowTotal = registry.counter({
      name: "dns_upstream_slow_total",
      help: "Times the upstream was deprioritised for slow round trips.",
      labels: ["upstream"],
    });
    this.#idleClosed = registry.counter({
      name: "dns_upstream_idle_closed_total",
      help: "TCP/TLS connections to the upstream closed for being idle.",
      labels: ["upstream"],
    });
    this.#upstreamLatency = registry.histogram({
      name: "dns_upstream_latency_seconds",
      help: "Upstream round-trip time of answered queries.",
      labels: ["upstream"],
      buckets: UPSTREAM_BUCKETS,
    });
    this.#upstreamFailures = registry.counter({
      name: "dns_upstream_failures_total",
      help: "Upstream tries that failed (timeout, network error).",
      labels: ["upstream"],
    });
    this.#descriptorFailures = registry.counter({
      name: "dns_descriptor_exhaustion_total",
      help: "Accepts (TCP clients) and dials (upstream sockets) refused for lack of descriptors.",
      labels: ["what"],
    });
    this.#handshakes = registry.counter({
      name: "dns_tls_handshakes_total",
      help: "TLS and QUIC handshakes of client connections, by transport and result.",
      labels: ["transport", "result"],
    });
    this.#mismatches = registry.counter({
      name: "dns_upstream_mismatches_total",
      help: "Replies refused: wrong source, ID or question, or malformed.",
      labels: ["upstream", "reason"],
    });
  }

  /** Counts an upstream deprioritised for slow round trips. */
  upstreamWentSlow(upstream: string): void {
    this.#upstreamSlowTotal.inc({ upstream });
  }

  /** Counts an idle TCP/TLS connection closed. */
  idleClosed(upstream: string): void {
    this.#idleClosed.inc({ upstream });
  }

  /** Counts a query. */
  query(type: number, transport: ClientTransport): void {
    const slot = type * 8 + TRANSPORT_SLOT[transport];
    let handle = this.#queryHandles.get(slot);
    if (handle === undefined) {
      handle = this.#queries.bind({ type: typeName(type), transport });
      this.#queryHandles.set(slot, handle);
    }
    handle();
  }

  /**
   * Counts a TLS (or QUIC) handshake of a client connection: `ok`, `failed`, or `resumed` (a
   * session resumed from a ticket, where the TLS stack reports it).
   */
  handshake(transport: ClientTransport, result: "ok" | "failed" | "resumed"): void {
    this.#handshakes.inc({ transport, result });
  }

  /** Counts a response. */
  response(rcode: number): void {
    let handle = this.#responseHandles.get(rcode);
    if (handle === undefined) {
      handle = this.#responses.bind({ rcode: rcodeName(rcode) });
      this.#responseHandles.set(rcode, handle);
    }
    handle();
  }

  /** Records an upstream try. */
  upstreamReply(upstream: string, rtt: number, ok: boolean): void {
    if (!ok) {
      this.#upstreamFailures.inc({ upstream });
      return;
    }
    let observe = this.#latencyHandles.get(upstream);
    if (observe === undefined) {
      observe = this.#upstreamLatency.bind({ upstream });
      this.#latencyHandles.set(upstream, observe);
    }
    observe(rtt / 1000);
  }

  /**
   * Brings the descriptor-exhaustion counter up to a loop's own counts (`Loop.exhaustion`).
   *
   * @param exhaustion Accepts and dials the loop saw fail for lack of descriptors, so far.
   */
  descriptors(exhaustion: { accepts: number; dials: number }): void {
    const seen = this.#descriptorsSeen;
    if (exhaustion.accepts > seen.accept) {
      this.#descriptorFailures.inc({ what: "accept" }, exhaustion.accepts - seen.accept);
      seen.accept = exhaustion.accepts;
    }
    if (exhaustion.dials > seen.dial) {
      this.#descriptorFailures.inc({ what: "dial" }, exhaustion.dials - seen.dial);
      seen.dial = exhaustion.dials;
    }
  }

  /** Counts a refused upstream reply. */
  mismatch(upstream: string, reason: string): void {
    this.#mismatches.inc({ upstream, reason });
  }

  /** Returns how many replies were refused, all upstreams and reasons together. */
  mismatchCount(): number {
    return this.#mismatches.snapshot().series.reduce((sum, s) => sum + s.value, 0);
  }
}
