/**
 * A pool of UDP sockets to one upstream, like unbound's outgoing range: each query leaves from a
 * randomly chosen socket of the pool with a random ID, and each socket moves to a fresh random
 * port after a number of queries or some time. The sockets themselves come from an
 * {@linkcode PoolSocketOpener}: netloop's dialed sockets or Deno's.
 *
 * @module
 */
import { formatSocketAddress } from "@triad/core";
import type { SocketAddress } from "@triad/core";
import type { MessageInfo } from "../wire/message.ts";
import { checkReplyInfo } from "./reply_check.ts";
import type { AcceptedReply, MismatchReason } from "./reply_check.ts";
import { randomId } from "./tcp_pool.ts";
import type { UdpQuery, UdpQueryDone } from "./udp_exchange.ts";
import type { UdpSocketOptions, UdpSocketPool } from "./upstream.ts";
import { UpstreamError } from "./upstream_error.ts";

/** One socket of the pool as its opener gives it: send, close. */
export interface PoolSocketIo {
  /** Sends a datagram to the upstream. */
  send(bytes: Uint8Array): void;
  /** Closes the socket (no `onClose` follows). */
  close(): void;
}

/** What an opened socket reports to its pool. */
export interface PoolSocketEvents {
  /**
   * A datagram from the upstream's address and port (the opener checks the source). `view` may
   * be reused after the call: an accepted reply is handed to its query's callback as it is (see
   * {@linkcode UdpQueryDone}).
   */
  datagram(view: Uint8Array): void;
  /** The socket failed and is closed. */
  closed(error?: Error): void;
}

/** Opens one socket of a pool, on a fresh random port. */
export interface PoolSocketOpener {
  /** Opens a socket sending to `server`; its events go to `events`. */
  open(server: SocketAddress, events: PoolSocketEvents): PoolSocketIo;
  /** The clock (ms). */
  now(): number;
  /** Asks for {@linkcode UdpPool.sweep} within `ms` (while queries are in flight). */
  sweepWithin(ms: number): void;
}

/** A query waiting for its reply on a pool socket. */
class Waiting {
  done = false;
  constructor(
    readonly deadline: number,
    readonly id: number,
    public info: MessageInfo | undefined,
    public callback: UdpQueryDone,
    public context: unknown,
    public socket: PoolSocket | undefined,
  ) {}
}

/** Does nothing (what a finished query's callback is replaced with). */
function ignore(): void {}

/**
 * One socket of the pool with its queries in flight. A short array, searched by ID, rather than a
 * Map: a socket has a few queries in flight at most (the pool spreads them over its sockets), and
 * a Map churned by one insert and one delete per query reallocated its table every few queries
 * (150 heap bytes a query, measured).
 */
class PoolSocket implements PoolSocketEvents {
  readonly waiting: Waiting[] = [];
  io: PoolSocketIo | undefined;
  sent = 0;
  retired = false;
  closedByPeer = false;

  constructor(
    readonly pool: UdpPool,
    readonly slot: number,
    /** Queries after which it moves to a new port. */
    readonly rotateAt: number,
    /** When (ms, the pool's clock) it moves to a new port. */
    readonly expires: number,
  ) {}

  datagram(view: Uint8Array): void {
    this.pool.receive(this, view);
  }

  closed(error?: Error): void {
    this.closedByPeer = true;
    this.pool.lost(this, error);
  }

  /** The query in flight with this ID, or `undefined`. */
  find(id: number): Waiting | undefined {
    const waiting = this.waiting;
    for (let i = 0; i < waiting.length; i++) if (waiting[i]!.id === id) return waiting[i];
    return undefined;
  }

  /** Takes a query out of those in flight (order does not matter: the last one fills its place). */
  remove(query: Waiting): void {
    const waiting = this.waiting;
    const at = waiting.indexOf(query);
    if (at < 0) return;
    const last = waiting.pop()!;
    if (at < waiting.length) waiting[at] = last;
  }
}

/** How often expired queries are looked for (ms). */
const SWEEP_EVERY_MS = 10;
/** Sockets tried for a free ID before a new ID is drawn. */
const ID_TRIES = 4;

/**
 * A pool of UDP sockets to one upstream. Sockets are opened when a query first picks their slot,
 * so an idle upstream holds none; a socket past its share of `rotateQueries` queries or of
 * `rotateAfter` ms (drawn per socket between half and all of each, so that sockets opened together
 * do not all move at once) is replaced by a new one (a fresh random port) when next picked, and
 * closed once its last query is done. Replies are matched by socket and ID and must pass
 * {@linkcode checkReply}; others are reported to `onMismatch` and dropped, so a spoofed reply
 * cannot end a wait.
 */
export class UdpPool implements UdpSocketPool {
  /** Sends a query from a random socket of the pool (see {@linkcode UdpQuery}). */
  readonly query: UdpQuery;
  readonly #server: SocketAddress;
  readonly #options: Required<Omit<UdpSocketOptions, "mode">>;
  readonly #onMismatch: (reason: MismatchReason) => void;
  readonly #opener: PoolSocketOpener;
  readonly #slots: (PoolSocket | undefined)[];
  #list: Waiting[] = [];
  #nextSweep = 0;
  #closed = false;
  /** Sockets opened so far (rotations included). */
  opened = 0;

  /**
   * Creates the pool (no socket is opened until a query needs one).
   *
   * @param server The upstream.
   * @param options Size and rotation.
   * @param onMismatch Called for every refused datagram.
   * @param opener Where sockets come from.
   */
  constructor(
    server: SocketAddress,
    options: Required<Omit<UdpSocketOptions, "mode">>,
    onMismatch: (reason: MismatchReason) => void,
    opener: PoolSocketOpener,
  ) {
    this.#server = server;
    this.#options = options;
    this.#onMismatch = onMismatch;
    this.#opener = opener;
    this.#slots = new Array(Math.max(1, options.size)).fill(undefined);
    this.query = (_server, query, id, info, timeoutMs, _onMismatch, done, context) =>
      this.#send(query, id, info, timeoutMs, done, context);
  }

  /** Open sockets (retired ones still waiting for replies included). */
  get sockets(): number {
    let n = 0;
    const seen = new Set<PoolSocket>();
    for (const socket of this.#slots) if (socket !== undefined) seen.add(socket);
    for (const waiting of this.#list) {
      if (!waiting.done && waiting.socket !== undefined) seen.add(waiting.socket);
    }
    for (const socket of seen) if (socket.io !== undefined) n++;
    return n;
  }

  /** Queries waiting for a reply. */
  get pending(): number {
    let n = 0;
    for (const waiting of this.#list) if (!waiting.done) n++;
    return n;
  }

  #send(
    query: Uint8Array,
    id: number,
    info: MessageInfo,
    timeoutMs: number,
    done: UdpQueryDone,
    context: unknown,
  ): void {
    if (this.#closed) {
      done(this.#error("network", "pool closed"), undefined, context);
      return;
    }
    const now = this.#opener.now();
    let socket = this.#pick(now);
    for (let i = 1; i < ID_TRIES && socket.find(id) !== undefined; i++) socket = this.#pick(now);
    if (socket.find(id) !== undefined) {
      do id = randomId(); while (socket.find(id) !== undefined);
      query[0] = id >> 8;
      query[1] = id & 0xff;
    }
    const waiting = new Waiting(now + timeoutMs, id, info, done, context, socket);
    socket.waiting.push(waiting);
    socket.sent++;
    this.#list.push(waiting);
    socket.io!.send(query);
    if (!waiting.done) this.#opener.sweepWithin(SWEEP_EVERY_MS);
  }

  /** A random slot's socket, opened (or replaced, when due for rotation) if need be. */
  #pick(now: number): PoolSocket {
    // Crypto-random, like the IDs: the socket a query leaves from is part of what a spoofer guesses.
    const slot = (randomId() * this.#slots.length) >>> 16;
    let socket = this.#slots[slot];
    if (
      socket !== undefined &&
      (socket.sent >= socket.rotateAt || now >= socket.expires || socket.closedByPeer)
    ) {
      this.#retire(socket);
      socket = undefined;
    }
    if (socket === undefined) {
      // Each socket moves after its own share, between half the limits and all of them: sockets
      // opened together (the whole pool, at the first queries) with the same share of the load
      // otherwise all moved at once, 256 sockets closed and opened within 50 ms every 3 s at 86,000
      // misses/s, and the queries of those 50 ms waited up to 15 ms (p99 4.1-5.0 ms against
      // 0.8-1.1 without rotation).
      const { rotateQueries, rotateAfter } = this.#options;
      socket = new PoolSocket(
        this,
        slot,
        Math.ceil(rotateQueries * (0.5 + Math.random() / 2)),
        now + rotateAfter * (0.5 + Math.random() / 2),
      );
      this.#slots[slot] = socket;
      socket.io = this.#opener.open(this.#server, socket);
      this.opened++;
    }
    return socket;
  }

  /** Takes a socket out of its slot; it closes when its last query is done. */
  #retire(socket: PoolSocket): void {
    socket.retired = true;
    if (this.#slots[socket.slot] === socket) this.#slots[socket.slot] = undefined;
    if (socket.waiting.length === 0) this.#closeSocket(socket);
  }

  #closeSocket(socket: PoolSocket): void {
    const io = socket.io;
    socket.io = undefined;
    if (io !== undefined && !socket.closedByPeer) io.close();
  }

  /** A datagram from the upstream on `socket` (called by the socket). */
  receive(socket: PoolSocket, view: Uint8Array): void {
    const id = view.length >= 2 ? (view[0]! << 8) | view[1]! : -1;
    const waiting = id < 0 ? undefined : socket.find(id);
    if (waiting === undefined) {
      this.#onMismatch(view.length < 12 ? "malformed" : "id");
      return;
    }
    const info = checkReplyInfo(view, id, waiting.info!);
    if (typeof info === "string") {
      this.#onMismatch(info);
      return;
    }
    // Not copied: the callback is done with it when it returns (UdpQueryDone), and a copy per
    // reply was a view and a share of a slab, every miss.
    this.#finish(waiting, undefined, { bytes: view, info });
  }

  /** The socket failed: its queries fail with it. */
  lost(socket: PoolSocket, error?: Error): void {
    if (this.#slots[socket.slot] === socket) this.#slots[socket.slot] = undefined;
    socket.retired = true;
    socket.io = undefined;
    for (const waiting of [...socket.waiting]) {
      this.#finish(waiting, this.#error("network", undefined, error), undefined);
    }
  }

  /** Marks a query done and lets go of what it referenced, then calls its callback. */
  #finish(
    waiting: Waiting,
    error: UpstreamError | undefined,
    reply: AcceptedReply | undefined,
  ): void {
    const callback = waiting.callback;
    const context = waiting.context;
    waiting.done = true;
    waiting.callback = ignore;
    waiting.context = undefined;
    waiting.info = undefined;
    const socket = waiting.socket!;
    waiting.socket = undefined;
    socket.remove(waiting);
    if (socket.retired && socket.waiting.length === 0) this.#closeSocket(socket);
    callback(error, reply, context);
  }

  #error(code: "timeout" | "network", what?: string, cause?: Error): UpstreamError {
    const text = code === "timeout" ? "timed out" : (what ?? "failed");
    return new UpstreamError(`Upstream ${formatSocketAddress(this.#server)} over UDP ${text}`, {
      code,
      cause,
    });
  }

  /**
   * Fails the queries past their deadline (at most every {@linkcode SWEEP_EVERY_MS}); asks the
   * opener for the next sweep while queries remain.
   *
   * @param now The clock.
   */
  sweep(now: number): void {
    if (this.#list.length === 0) return;
    if (now >= this.#nextSweep) {
      this.#nextSweep = now + SWEEP_EVERY_MS;
      // Compacted in place: a new list each sweep (every 10 ms while queries are in flight)
      // grew to the queries then in flight, push by push (about 50 heap bytes a query).
      const list = this.#list;
      let kept = 0;
      let expired: Waiting[] | undefined;
      for (let i = 0; i < list.length; i++) {
        const waiting = list[i]!;
        if (waiting.done) continue;
        if (now >= waiting.deadline) (expired ??= []).push(waiting);
        else list[kept++] = waiting;
      }
      while (list.length > kept) list.pop();
      // (failed after the list is whole again: a failure's retry adds to it)
      if (expired !== undefined) {
        for (const waiting of expired) this.#finish(waiting, this.#error("timeout"), undefined);
      }
    }
    if (this.#list.length > 0) this.#opener.sweepWithin(Math.max(0, this.#nextSweep - now));
  }

  /** Closes every socket; queries in flight fail. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    const list = this.#list;
    this.#list = [];
    for (const waiting of list) {
      if (!waiting.done) this.#finish(waiting, this.#error("network", "pool closed"), undefined);
    }
    for (let i = 0; i < this.#slots.length; i++) {
      const socket = this.#slots[i];
      this.#slots[i] = undefined;
      if (socket !== undefined) this.#closeSocket(socket);
    }
  }
}
