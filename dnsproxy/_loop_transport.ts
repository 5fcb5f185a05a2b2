/**
 * Upstream sockets carried by a netloop loop (`loop.dial`): a connected UDP socket on a random
 * local port per query, and TCP connections for the pool, both driven by the loop that serves the
 * clients, so replies are handled in the same turn machinery as queries.
 *
 * @module
 */
import { formatSocketAddress, ipFamily } from "@triad/core";
import type { SocketAddress } from "@triad/core";
import { Action } from "@triad/netloop";
import type { Conn, ConnHandler, Loop } from "@triad/netloop";
import type { MessageInfo } from "./wire/message.ts";
import type { AcceptedReply, MismatchReason } from "./upstream/reply_check.ts";
import type { UdpQueryDone } from "./upstream/udp_exchange.ts";
import { checkReplyInfo } from "./upstream/reply_check.ts";
import type { UpstreamTransport } from "./upstream/upstream.ts";
import { UpstreamError } from "./upstream/upstream_error.ts";
import { UdpPool } from "./upstream/udp_pool.ts";
import type { PoolSocketEvents, PoolSocketOpener } from "./upstream/udp_pool.ts";

/** Does nothing (what a finished query's callbacks are replaced with). */
function ignore(): void {}

/**
 * A UDP query waiting for its reply: the context of its dialed socket. A finished one lets go of
 * everything it referenced (the socket, the parsed query, the callback chain back to the client):
 * it stays in the transport's list until the next sweep, and a scavenge in the meantime would
 * otherwise copy every object of the exchange (thousands of queries at a high miss rate).
 */
class PendingQuery {
  done = false;
  conn: Conn | undefined;
  #info: MessageInfo | undefined;
  #onMismatch: (reason: MismatchReason) => void;
  #callback: UdpQueryDone;
  #context: unknown;

  constructor(
    readonly deadline: number,
    readonly server: SocketAddress,
    readonly id: number,
    info: MessageInfo,
    onMismatch: (reason: MismatchReason) => void,
    callback: UdpQueryDone,
    context: unknown,
  ) {
    this.#info = info;
    this.#onMismatch = onMismatch;
    this.#callback = callback;
    this.#context = context;
  }

  /** Marks it done, closes its socket and lets go, then calls its callback (once). */
  #finish(error: UpstreamError | undefined, reply: AcceptedReply | undefined): void {
    const callback = this.#callback;
    const context = this.#context;
    this.done = true;
    const conn = this.conn;
    this.conn = undefined;
    this.#info = undefined;
    this.#onMismatch = ignore;
    this.#callback = ignore;
    this.#context = undefined;
    if (conn !== undefined && !conn.closed) conn.close();
    callback(error, reply, context);
  }

  traffic(conn: Conn): Action {
    const view = conn.next();
    if (this.done) return Action.None;
    const info = checkReplyInfo(view, this.id, this.#info!);
    if (typeof info === "string") {
      this.#onMismatch(info);
      return Action.None;
    }
    // The view is the loop's receive buffer, handed on as it is: the callback is done with it
    // when it returns (UdpQueryDone).
    this.#finish(undefined, { bytes: view, info });
    return Action.None;
  }

  fail(code: "timeout" | "network", cause?: Error): void {
    if (this.done) return;
    const what = code === "timeout" ? "timed out" : "failed";
    this.#finish(
      new UpstreamError(`Upstream ${formatSocketAddress(this.server)} over UDP ${what}`, {
        code,
        cause,
      }),
      undefined,
    );
  }
}

/** One handler for every upstream UDP socket (the query is the connection's context). */
const UPSTREAM_HANDLER: ConnHandler = {
  onOpen: () => Action.None,
  onTraffic: (conn) => (conn.context as PendingQuery).traffic(conn),
  onClose: (conn, error) => {
    (conn.context as PendingQuery).fail("network", error);
    return Action.None;
  },
};

/** One handler for every pool socket (the pool's socket is the connection's context). */
const POOL_HANDLER: ConnHandler = {
  onOpen: () => Action.None,
  onTraffic: (conn) => {
    (conn.context as PoolSocketEvents).datagram(conn.next());
    return Action.None;
  },
  onClose: (conn, error) => {
    // Closed by the pool itself (io.close) or by a socket error: the pool tells them apart.
    if (!closing.has(conn)) (conn.context as PoolSocketEvents).closed(error);
    return Action.None;
  },
};

/** Pool sockets being closed by their pool (their `onClose` is not a failure). */
const closing = new WeakSet<Conn>();

/** How often {@linkcode LoopTransport.sweep} looks for expired queries (ms). */
const SWEEP_EVERY_MS = 10;

/**
 * The transport of a loop, with the timeout sweep the loop's `onTick` must call: while UDP
 * queries are in flight the transport asks the loop for a tick every {@linkcode SWEEP_EVERY_MS}
 * ({@linkcode Loop.tickWithin}), so the loop's own `tick` can be long.
 */
export interface LoopTransport extends UpstreamTransport {
  /** Fails the UDP queries past their deadline (precision {@linkcode SWEEP_EVERY_MS}). */
  sweep(now: number): void;
  /** UDP queries waiting for a reply. */
  readonly pending: number;
}

/**
 * Builds the transport for upstreams living on `loop`. Each UDP query dials its own connected
 * socket on a fresh kernel-chosen random port, closed after the reply (netloop keeps the socket
 * for a later dial, but disconnected from the port, which is never reused); the kernel
 * itself drops datagrams from any other address or port (they cannot be counted here); ID and
 * question are checked as everywhere. Replies are delivered by callback from the loop's receive
 * path, so the client's answer is written in the same turn; timeouts are one sweep from `onTick`
 * rather than a timer per query.
 *
 * @param loop The loop.
 * @returns The transport.
 */
export function loopTransport(loop: Loop): LoopTransport {
  let pending: PendingQuery[] = [];
  let nextSweep = 0;
  const pools = new Set<UdpPool>();
  const opener: PoolSocketOpener = {
    open(server, events) {
      const conn = loop.dial({
        network: "udp",
        address: server,
        handler: POOL_HANDLER,
        context: events,
      });
      return {
        send: (bytes) => conn.write(bytes),
        close() {
          if (conn.closed) return;
          closing.add(conn);
          conn.close();
        },
      };
    },
    now: () => loop.now,
    sweepWithin: (ms) => loop.tickWithin(ms),
  };
  return {
    udpPool(server, options, onMismatch) {
      const pool = new UdpPool(server, options, onMismatch, opener);
      pools.add(pool);
      return {
        query: pool.query,
        close() {
          pools.delete(pool);
          pool.close();
        },
      };
    },
    get pending() {
      let n = 0;
      for (const pool of pools) n += pool.pending;
      for (const query of pending) if (!query.done) n++;
      return n;
    },
    sweep(now) {
      for (const pool of pools) pool.sweep(now);
      if (pending.length === 0) return;
      if (now >= nextSweep) {
        nextSweep = now + SWEEP_EVERY_MS;
        const kept: PendingQuery[] = [];
        const expired: PendingQuery[] = [];
        for (const query of pending) {
          if (query.done) continue;
          if (now >= query.deadline) expired.push(query);
          else kept.push(query);
        }
        pending = kept;
        for (const query of expired) query.fail("timeout");
      }
      // The loop's own tick is slow (an idle loop sleeps): ask for the next sweep while needed.
      if (pending.length > 0) loop.tickWithin(Math.max(0, nextSweep - loop.now));
    },
    udpQuery(server, query, id, info, timeoutMs, onMismatch, done, context) {
      const state = new PendingQuery(
        loop.now + timeoutMs,
        server,
        id,
        info,
        onMismatch,
        done,
        context,
      );
      state.conn = loop.dial({
        network: "udp",
        address: server,
        handler: UPSTREAM_HANDLER,
        context: state,
      });
      state.conn.write(query);
      if (!state.done) {
        pending.push(state);
        loop.tickWithin(SWEEP_EVERY_MS);
      }
    },
    now: () => loop.now,
    tcpConnect(hostname, port) {
      const address: SocketAddress = { family: ipFamily(hostname) ?? 4, address: hostname, port };
      return Promise.resolve(new LoopTcpConn(loop, address) as unknown as Deno.Conn);
    },
  };
}

/** The part of `Deno.Conn` the TCP pool uses, over a dialed netloop connection. */
class LoopTcpConn {
  #conn: Conn;
  #chunks: Uint8Array[] = [];
  #waiter:
    | { buffer: Uint8Array; resolve: (n: number | null) => void; reject: (e: Error) => void }
    | undefined;
  #ended = false;
  #error: Error | undefined;

  constructor(loop: Loop, address: SocketAddress) {
    this.#conn = loop.dial({
      network: "tcp",
      address,
      handler: {
        onOpen: () => Action.None,
        onTraffic: (c) => {
          this.#chunks.push(c.next().slice());
          this.#pump();
          return Action.None;
        },
        onClose: (_c, error) => {
          this.#ended = true;
          this.#error = error;
          this.#pump();
          return Action.None;
        },
      },
    });
  }

  #pump(): void {
    const waiter = this.#waiter;
    if (waiter === undefined) return;
    const chunk = this.#chunks[0];
    if (chunk !== undefined) {
      const n = Math.min(chunk.length, waiter.buffer.length);
      waiter.buffer.set(chunk.subarray(0, n));
      if (n === chunk.length) this.#chunks.shift();
      else this.#chunks[0] = chunk.subarray(n);
      this.#waiter = undefined;
      waiter.resolve(n);
    } else if (this.#ended) {
      this.#waiter = undefined;
      if (this.#error !== undefined) waiter.reject(this.#error);
      else waiter.resolve(null);
    }
  }

  read(buffer: Uint8Array): Promise<number | null> {
    return new Promise((resolve, reject) => {
      this.#waiter = { buffer, resolve, reject };
      this.#pump();
    });
  }

  write(bytes: Uint8Array): Promise<number> {
    if (this.#ended) return Promise.reject(this.#error ?? new Error("Connection closed"));
    this.#conn.write(bytes);
    return Promise.resolve(bytes.length);
  }

  close(): void {
    if (!this.#conn.closed) this.#conn.close();
  }
}
