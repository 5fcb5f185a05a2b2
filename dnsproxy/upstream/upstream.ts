/**
 * One upstream resolver: its address and transport, health and round-trip time.
 *
 * @module
 */
import { parseSocketAddress, TriadError } from "@triad/core";
import type { SocketAddress } from "@triad/core";
import { Flag } from "../wire/constants.ts";
import type { MessageInfo } from "../wire/message.ts";
import type { AcceptedReply, MismatchReason } from "./reply_check.ts";
import { randomId, TcpPool } from "./tcp_pool.ts";
import { denoUdpPool, udpExchange } from "./udp_exchange.ts";
import { DohExchanger, DoqExchanger } from "./encrypted_upstream.ts";
import type { StreamExchanger } from "./encrypted_upstream.ts";
import { UpstreamError } from "./upstream_error.ts";
import type { UdpExchange, UdpQuery } from "./udp_exchange.ts";

/** How an upstream is reached. */
export type UpstreamProtocol = "udp" | "tcp" | "tls" | "https" | "quic";

const DEFAULT_PORT: Record<UpstreamProtocol, number> = {
  udp: 53,
  tcp: 53,
  tls: 853,
  https: 443,
  quic: 853,
};

/** Settings of one {@linkcode Upstream}. */
export interface UpstreamOptions {
  /**
   * `1.2.3.4`, `1.2.3.4:53`, `[::1]:53` (UDP, retried over TCP when truncated), `tcp://...`
   * (TCP only), `tls://1.2.3.4:853` (DNS over TLS; port 853 by default),
   * `https://1.2.3.4/dns-query` (DNS over HTTPS over HTTP/2; port 443, path `/dns-query` by
   * default) or `quic://1.2.3.4` (DNS over QUIC; port 853, needs `--unstable-net`).
   */
  address: string;
  /** The TLS server name to verify (DNS over TLS, HTTPS, QUIC); the address by default. */
  tlsServerName?: string;
  /** Extra PEM CA certificates to trust (DNS over TLS). */
  caCerts?: string[];
  /** Consecutive failures after which the upstream counts as down. @default {2} */
  maxFails?: number;
  /** Most TCP/TLS connections kept. @default {4} */
  maxConnections?: number;
  /** TCP/TLS connections idle this long are closed (ms). @default {30000} */
  idleTimeout?: number;
  /** A round trip longer than this (ms) is slow. @default {200} */
  slowRtt?: number;
  /**
   * After this many slow round trips in a row the upstream is deprioritised (tried after the
   * others, and probed) until a round trip is fast again. @default {3}
   */
  slowAfter?: number;
  /** Called when the upstream is deprioritised (`true`) or fast again (`false`). */
  onSlow?: (slow: boolean, rtt: number) => void;
  /** Called when an idle TCP/TLS connection is closed. */
  onIdleClose?: () => void;
  /** Called for every refused reply. */
  onMismatch?: (reason: MismatchReason) => void;
  /** How UDP queries pick their source socket (a pool by default). */
  udpSockets?: UdpSocketOptions;
  /** How queries travel; Deno's sockets by default. */
  transport?: UpstreamTransport;
}

/**
 * Where an upstream's UDP queries leave from. `pool` (the default), like unbound's outgoing range:
 * `size` sockets per upstream, each on a kernel-chosen random port, every query on a randomly
 * chosen one with a random ID; a socket moves to a fresh random port after `rotateQueries` queries
 * or `rotateAfter` ms at most (each socket draws its own limits between half and all of them, so
 * the pool does not move all at once). `per_query`: a socket on a fresh random port for every
 * query (one more `connect` and one more disconnect per query, about 30 bits of entropy against
 * 24-31 for the pool: see the README).
 */
export interface UdpSocketOptions {
  /** `pool` or `per_query`. @default {"pool"} */
  mode?: "pool" | "per_query";
  /** Sockets per upstream in `pool` mode. @default {256} */
  size?: number;
  /** A pool socket moves to a new port after at most this many queries. @default {1000} */
  rotateQueries?: number;
  /** A pool socket moves to a new port after at most this many ms. @default {10000} */
  rotateAfter?: number;
}

/** A pool of UDP sockets to one upstream: {@linkcode UdpQuery} and a way to close it. */
export interface UdpSocketPool {
  /** Sends a query from a random socket of the pool. */
  readonly query: UdpQuery;
  /** Closes every socket; queries in flight fail. */
  close(): void;
}

/** How an upstream's queries travel: replaceable so an event loop can carry them itself. */
export interface UpstreamTransport {
  /** One UDP query and its reply. @default {udpExchange} */
  udpExchange?: UdpExchange;
  /** The same, callback style (preferred over `udpExchange` when both are given). */
  udpQuery?: UdpQuery;
  /**
   * Opens a pool of UDP sockets to one upstream (`udpSockets.mode` `pool`). Without it, a
   * transport that has `udpQuery` or `udpExchange` carries every query on those (per query), and
   * an upstream with no transport pools Deno's sockets ({@linkcode denoUdpPool}).
   */
  udpPool?: (
    server: SocketAddress,
    options: Required<Omit<UdpSocketOptions, "mode">>,
    onMismatch: (reason: MismatchReason) => void,
  ) => UdpSocketPool;
  /** Opens a plain TCP connection (TLS is always `Deno.connect` + `Deno.startTls`). */
  tcpConnect?: (hostname: string, port: number) => Promise<Deno.Conn>;
  /**
   * The clock (milliseconds) that round-trip times are measured with; an event loop's turn clock
   * saves reading the time twice per query. @default {performance.now}
   */
  now?: () => number;
}

/** Receives an upstream's outcome for a query (see {@linkcode Upstream.start}). */
export type UpstreamDone<C> = (
  error: UpstreamError | undefined,
  reply: UpstreamReply | undefined,
  context: C,
) => void;

/** A query under way at one upstream: the context of its transport's callback. */
class UpstreamTry {
  constructor(
    readonly query: Uint8Array,
    readonly info: MessageInfo,
    readonly timeoutMs: number,
    readonly started: number,
    readonly done: UpstreamDone<unknown>,
    readonly context: unknown,
  ) {}
}

/** What {@linkcode Upstream.exchange} returns. */
export interface UpstreamReply extends AcceptedReply {
  /** The round-trip time in milliseconds. */
  readonly rtt: number;
  /** The transport that finally answered. */
  readonly transport: UpstreamProtocol;
}

/**
 * Parses an upstream address into protocol and socket address.
 *
 * @param text See {@linkcode UpstreamOptions.address}.
 * @returns The protocol and address.
 * @throws {TriadError} With code `bad_upstream`.
 *
 * @example
 * ```ts
 * import { parseUpstreamAddress } from "@triad/dnsproxy";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(parseUpstreamAddress("tls://[::1]"), {
 *   protocol: "tls",
 *   address: { family: 6, address: "::1", port: 853 },
 * });
 * ```
 */
export function parseUpstreamAddress(
  text: string,
): { protocol: UpstreamProtocol; address: SocketAddress; path?: string } {
  const match = /^(?:(udp|tcp|tls|https|quic):\/\/)?([^/]+)(\/.*)?$/.exec(text.trim());
  const protocol = (match?.[1] ?? "udp") as UpstreamProtocol;
  try {
    if (match?.[3] !== undefined && protocol !== "https") {
      throw new TriadError("a path is for https:// only", { code: "bad_address" });
    }
    const address = parseSocketAddress(match?.[2] ?? "", { defaultPort: DEFAULT_PORT[protocol] });
    if (address.port === 0) throw new TriadError("port 0", { code: "bad_address" });
    if (protocol === "https") return { protocol, address, path: match?.[3] ?? "/dns-query" };
    return { protocol, address };
  } catch (cause) {
    throw new TriadError(
      `Invalid upstream "${text}": expected IP[:port], [IPv6]:port, tcp://..., tls://..., ` +
        "https://IP[:port][/path] or quic://...",
      { code: "bad_upstream", cause },
    );
  }
}

/**
 * One upstream resolver. Plain upstreams are asked over UDP from a random port with a random ID,
 * and over TCP when the reply is truncated; `tcp://` and `tls://` upstreams use a pipelined pool.
 * Health is tracked in band: `maxFails` consecutive failures mark it down, one success up.
 */
export class Upstream {
  /** The address as configured. */
  readonly name: string;
  /** The transport. */
  readonly protocol: UpstreamProtocol;
  /** The socket address. */
  readonly address: SocketAddress;
  /** Smoothed round-trip time in ms (0 before the first reply). */
  rtt = 0;
  /** Consecutive failures. */
  fails = 0;
  /** Queries in flight. */
  inFlight = 0;
  /** Slow round trips in a row (see {@linkcode UpstreamOptions.slowAfter}). */
  slowStreak = 0;
  readonly #maxFails: number;
  readonly #slowRtt: number;
  readonly #slowAfter: number;
  readonly #onSlow: (slow: boolean, rtt: number) => void;
  readonly #pool: StreamExchanger;
  readonly #onMismatch: (reason: MismatchReason) => void;
  readonly #udpQuery: UdpQuery;
  readonly #udpPool: UdpSocketPool | undefined;
  readonly #now: () => number;

  /**
   * Creates an upstream (no connection is made until the first query).
   *
   * @param options Address and limits.
   */
  constructor(options: UpstreamOptions) {
    const { protocol, address, path } = parseUpstreamAddress(options.address);
    this.name = options.address;
    this.protocol = protocol;
    this.address = Object.freeze(address); // frozen: netloop keeps its encoded sockaddr
    this.#maxFails = options.maxFails ?? 2;
    this.#slowRtt = options.slowRtt ?? 200;
    this.#slowAfter = Math.max(1, options.slowAfter ?? 3);
    this.#onSlow = options.onSlow ?? (() => {});
    this.#onMismatch = options.onMismatch ?? (() => {});
    this.#now = options.transport?.now ?? (() => performance.now());
    const exchange = options.transport?.udpExchange ?? udpExchange;
    const sockets = options.udpSockets ?? {};
    if (protocol === "udp" && (sockets.mode ?? "pool") === "pool") {
      const poolOptions = {
        size: sockets.size ?? 256,
        rotateQueries: sockets.rotateQueries ?? 1000,
        rotateAfter: sockets.rotateAfter ?? 10_000,
      };
      const open = options.transport?.udpPool ??
        (options.transport?.udpQuery === undefined && options.transport?.udpExchange === undefined
          ? denoUdpPool
          : undefined);
      this.#udpPool = open?.(this.address, poolOptions, this.#onMismatch);
    }
    this.#udpQuery = this.#udpPool?.query ?? options.transport?.udpQuery ??
      ((server, query, id, info, timeoutMs, onMismatch, done, context) =>
        exchange(server, query, id, info, timeoutMs, onMismatch).then(
          (reply) => done(undefined, reply, context),
          (error) => done(asUpstreamError(error, this.name), undefined, context),
        ));
    const tcpConnect = options.transport?.tcpConnect;
    const { address: hostname, port } = address;
    const connect = protocol === "tls"
      ? async () => {
        const tcp = await Deno.connect({ hostname, port });
        const tlsOptions: Deno.StartTlsOptions = {
          hostname: options.tlsServerName ?? hostname,
        };
        if (options.caCerts !== undefined) tlsOptions.caCerts = options.caCerts;
        const tls = await Deno.startTls(tcp, tlsOptions);
        await tls.handshake();
        return tls;
      }
      : tcpConnect !== undefined
      ? () => tcpConnect(hostname, port)
      : () => Deno.connect({ hostname, port });
    const poolOptions: ConstructorParameters<typeof TcpPool>[0] = {
      connect,
      label: options.address,
      onMismatch: this.#onMismatch,
    };
    if (options.maxConnections !== undefined) poolOptions.maxConnections = options.maxConnections;
    if (options.idleTimeout !== undefined) poolOptions.idleTimeout = options.idleTimeout;
    if (options.onIdleClose !== undefined) poolOptions.onIdleClose = options.onIdleClose;
    const encrypted = {
      hostname,
      port,
      serverName: options.tlsServerName,
      caCerts: options.caCerts,
      label: options.address,
      onMismatch: this.#onMismatch,
    };
    this.#pool = protocol === "https"
      ? new DohExchanger(encrypted, path!)
      : protocol === "quic"
      ? new DoqExchanger(encrypted)
      : new TcpPool(poolOptions);
  }

  /** Whether the last failure is the one that marked it down (the `maxFails`th in a row). */
  get justWentDown(): boolean {
    return this.fails === this.#maxFails;
  }

  /** Whether it is deprioritised: its last `slowAfter` round trips each took over `slowRtt`. */
  get slow(): boolean {
    return this.slowStreak >= this.#slowAfter;
  }

  /** Whether it counts as up (fewer than `maxFails` consecutive failures). */
  get healthy(): boolean {
    return this.fails < this.#maxFails;
  }

  /**
   * Asks this upstream. The query is copied and given a fresh random ID.
   *
   * @param query The client's query (not modified).
   * @param info The parsed query.
   * @param timeoutMs Time for the whole exchange, TCP retry included.
   * @returns The accepted reply with its round-trip time.
   * @throws {UpstreamError} When it fails; health is updated either way.
   */
  exchange(query: Uint8Array, info: MessageInfo, timeoutMs: number): Promise<UpstreamReply> {
    return new Promise((resolve, reject) => {
      this.start(query.slice(), info, timeoutMs, (error, reply) => {
        if (reply !== undefined) resolve(ownReply(reply));
        else reject(error);
      }, undefined);
    });
  }

  /**
   * {@linkcode exchange}, callback style: `done` runs exactly once, with the reply or the error,
   * and for a UDP upstream on a callback transport from inside its receive path (no promise turn).
   * Nothing is copied: over UDP the query's ID is overwritten with a fresh random one, and the
   * reply's bytes may be the transport's receive buffer, valid while `done` runs.
   *
   * @param query The query to send, the caller's own until `done` runs (its ID is overwritten).
   * @param info The parsed query.
   * @param timeoutMs Time for the whole exchange, TCP retry included.
   * @param done Receives the error, or the reply (then the error is `undefined`), and `context`.
   * @param context Handed to `done` (saves the caller a closure per query).
   */
  start<C>(
    query: Uint8Array,
    info: MessageInfo,
    timeoutMs: number,
    done: UpstreamDone<C>,
    context: C,
  ): void {
    // One object per query, the transport's callback context (a closure and its context each
    // were more heap bytes, kept as long as the query is in flight).
    const t = new UpstreamTry(
      query,
      info,
      timeoutMs,
      this.#now(),
      done as UpstreamDone<unknown>,
      context,
    );
    this.inFlight++;
    if (this.protocol !== "udp") {
      this.#viaPool(t, timeoutMs, this.protocol);
      return;
    }
    // The ID written in place, not into a copy: the bytes are the caller's for this query only
    // (a copy cost each miss a view and a share of a slab, kept while the query is in flight), and
    // a later try (TCP retry, another upstream) writes its own ID over this one.
    const id = randomId();
    query[0] = id >> 8;
    query[1] = id & 0xff;
    this.#udpQuery(
      this.address,
      query,
      id,
      info,
      timeoutMs,
      this.#onMismatch,
      this.#udpDone,
      t,
    );
  }

  /**
   * A UDP try's outcome: a truncated reply is asked again over TCP (one function per upstream, so
   * that a try need not point at its upstream).
   */
  readonly #udpDone = (
    error: UpstreamError | undefined,
    reply: AcceptedReply | undefined,
    context: unknown,
  ): void => {
    const t = context as UpstreamTry;
    if (reply !== undefined && (reply.info.flags & Flag.TC) !== 0) {
      const left = Math.max(1, t.timeoutMs - (this.#now() - t.started));
      this.#viaPool(t, left, "tcp");
    } else {
      this.#finish(t, error, reply, "udp");
    }
  };

  /** Ends a query: health, round-trip time and slowness updated, then `done` called. */
  #finish(
    t: UpstreamTry,
    error: UpstreamError | undefined,
    reply: AcceptedReply | undefined,
    transport: UpstreamProtocol,
  ): void {
    this.inFlight--;
    if (reply === undefined) {
      this.fails++;
      // A failure counts as a slow round trip so `fastest` moves away from it.
      this.rtt = Math.max(this.rtt * 2, t.timeoutMs);
      t.done(error ?? asUpstreamError(undefined, this.name), undefined, t.context);
      return;
    }
    const rtt = this.#now() - t.started;
    this.rtt = this.rtt === 0 ? rtt : this.rtt * 0.7 + rtt * 0.3;
    this.fails = 0;
    if (rtt > this.#slowRtt) {
      if (++this.slowStreak === this.#slowAfter) this.#onSlow(true, rtt);
    } else if (this.slowStreak !== 0) {
      const was = this.slow;
      this.slowStreak = 0;
      if (was) this.#onSlow(false, rtt);
    }
    t.done(undefined, { bytes: reply.bytes, info: reply.info, rtt, transport }, t.context);
  }

  /** Asks over the TCP/TLS pool (a method: most queries never need it, so no closure each). */
  #viaPool(t: UpstreamTry, left: number, transport: UpstreamProtocol): void {
    this.#pool.exchange(t.query, t.info, left).then(
      (reply) => this.#finish(t, undefined, reply, transport),
      (error) => this.#finish(t, asUpstreamError(error, this.name), undefined, transport),
    );
  }

  /** Open TCP/TLS connections. */
  get connections(): number {
    return this.#pool.connections;
  }

  /** Closes pooled connections and sockets; queries in flight over them fail. */
  close(): void {
    this.#pool.close();
    this.#udpPool?.close();
  }
}

/**
 * A reply whose bytes are its own (for a promise: those handed to a callback may be a receive
 * buffer).
 *
 * @param reply The reply as `done` got it.
 * @returns The same with a copy of its bytes.
 */
export function ownReply(reply: UpstreamReply): UpstreamReply {
  return {
    bytes: reply.bytes.slice(),
    info: reply.info,
    rtt: reply.rtt,
    transport: reply.transport,
  };
}

function asUpstreamError(error: unknown, name: string): UpstreamError {
  return error instanceof UpstreamError
    ? error
    : new UpstreamError(`Upstream ${name} failed`, { code: "network", cause: error });
}
