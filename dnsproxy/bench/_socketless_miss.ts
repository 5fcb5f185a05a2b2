/**
 * A `DnsProxy` whose upstream is a UDP socket pool without sockets, for benchmarks of a cache
 * miss's JS: what the proxy sends upstream is kept, and `replyAll()` hands each query's answer
 * (unbound's shape: the question, one A record with TTL 300, an OPT record) to its pool socket in
 * the same turn.
 *
 * @module
 */
import { BytePool } from "@triad/core";
import { DnsProxy } from "../proxy.ts";
import { buildQuery } from "../wire/builders.ts";
import { unboundAnswer } from "./_unbound_answer.ts";
import { UdpPool } from "../upstream/udp_pool.ts";
import type { PoolSocketEvents, PoolSocketOpener } from "../upstream/udp_pool.ts";

/** The proxy and the hands that play its upstream. */
export interface SocketlessMiss {
  /** The proxy (prefetch off, one upstream `127.0.0.1:53` reached through the pool). */
  readonly proxy: DnsProxy;
  /** Answers every query sent upstream since the last call. */
  replyAll(): void;
  /** Moves the clock `ms` on and sweeps the pools (expired queries, finished ones let go). */
  tick(ms?: number): void;
  /**
   * Asks the proxy (over UDP, from 127.0.0.1) for the run's next name, `r0000000.bench`,
   * `r0000001.bench` and so on: a miss.
   */
  ask(): void;
  /** Answers the proxy has given so far. */
  readonly answers: number;
}

/**
 * Builds the proxy and its socketless upstream.
 *
 * @returns See {@linkcode SocketlessMiss}.
 */
export function socketlessMiss(): SocketlessMiss {
  const pools: UdpPool[] = [];
  const replies = new BytePool(65536);
  const sent: [PoolSocketEvents, Uint8Array][] = [];
  let clock = 0;
  const opener: PoolSocketOpener = {
    open: (_server, events) => ({
      send: (bytes) => void sent.push([events, replies.copy(bytes)]),
      close() {},
    }),
    now: () => clock,
    sweepWithin() {},
  };
  const proxy = new DnsProxy({
    upstream: { upstreams: ["127.0.0.1:53"], healthCheck: 0 },
    cache: { prefetchHits: 0, now: () => clock },
    transport: {
      udpPool(server, options, onMismatch) {
        const pool = new UdpPool(server, options, onMismatch, opener);
        pools.push(pool);
        return pool;
      },
      now: () => clock,
    },
  });
  // One reused buffer: the benchmarks measure the proxy, not the reply's making.
  const reply = new Uint8Array(512);
  const replyTo = (query: Uint8Array): Uint8Array => unboundAnswer(query, reply);
  const client = { address: "127.0.0.1", port: 5000, transport: "udp" } as const;
  const query = buildQuery({ id: 1, name: "r0000000.bench", type: 1 });
  let asked = 0;
  let answers = 0;
  const answered = () => void answers++;
  return {
    proxy,
    ask() {
      const text = String(asked++ % 10_000_000).padStart(7, "0");
      for (let j = 0; j < 7; j++) query[14 + j] = text.charCodeAt(j);
      proxy.answer(query, client, answered, undefined);
    },
    get answers() {
      return answers;
    },
    replyAll() {
      for (const [events, bytes] of sent) events.datagram(replyTo(bytes));
      sent.length = 0;
    },
    tick(ms = 1) {
      clock += ms;
      for (const pool of pools) pool.sweep(clock);
    },
  };
}
