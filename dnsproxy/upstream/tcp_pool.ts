/**
 * DNS over TCP or TLS to one upstream: a small pool of reused connections, each carrying many
 * queries at once (RFC 7766 §6.2.1.1 pipelining), replies matched by ID and question.
 *
 * @module
 */
import { DNS_FRAMING, FrameBuffer } from "../_bytes.ts";
import type { MessageInfo } from "../wire/message.ts";
import { checkReply } from "./reply_check.ts";
import type { AcceptedReply, MismatchReason } from "./reply_check.ts";
import { UpstreamError } from "./upstream_error.ts";

/** Settings of a {@linkcode TcpPool}. */
export interface TcpPoolOptions {
  /** Opens a connection (plain TCP or TLS). */
  connect: () => Promise<Deno.Conn>;
  /** A name for errors, such as `tls://127.0.0.1:853`. */
  label: string;
  /** Most connections kept open. @default {4} */
  maxConnections?: number;
  /** Most queries in flight on one connection before another is opened. @default {64} */
  maxPipelined?: number;
  /** A connection with nothing in flight for this long is closed (ms). @default {30000} */
  idleTimeout?: number;
  /** Called when a connection is closed for being idle. */
  onIdleClose?: () => void;
  /** Called for every refused reply. */
  onMismatch?: (reason: MismatchReason) => void;
}

interface Pending {
  info: MessageInfo;
  resolve: (reply: AcceptedReply) => void;
  reject: (error: UpstreamError) => void;
  timer: ReturnType<typeof setTimeout>;
}

interface PoolHooks {
  label: string;
  mismatch(reason: MismatchReason): void;
  forget(connection: PooledConnection): void;
}

class PooledConnection {
  readonly pending: Map<number, Pending> = new Map();
  lastUsed: number = performance.now();
  rtt = 0;
  closed = false;
  #conn: Deno.Conn;
  #writing: Promise<void> = Promise.resolve();
  #pool: PoolHooks;

  constructor(conn: Deno.Conn, pool: PoolHooks) {
    this.#conn = conn;
    this.#pool = pool;
    this.#readLoop();
  }

  send(frame: Uint8Array): void {
    this.#writing = this.#writing.then(async () => {
      let at = 0;
      while (at < frame.length) at += await this.#conn.write(frame.subarray(at));
    }).catch((cause) => this.close(cause));
  }

  async #readLoop(): Promise<void> {
    const inbound = new FrameBuffer();
    try {
      while (await inbound.fill(this.#conn)) {
        for (;;) {
          const m = DNS_FRAMING.decode(inbound);
          if (m === undefined) break;
          this.#deliver(m.slice());
        }
      }
      this.close(undefined);
    } catch (cause) {
      this.close(cause);
    }
  }

  #deliver(reply: Uint8Array): void {
    if (reply.length < 2) {
      this.#pool.mismatch("malformed");
      return;
    }
    const id = (reply[0]! << 8) | reply[1]!;
    const pending = this.pending.get(id);
    if (pending === undefined) {
      this.#pool.mismatch("id");
      return;
    }
    const result = checkReply(reply, id, pending.info);
    if (typeof result === "string") {
      this.#pool.mismatch(result);
      return;
    }
    this.pending.delete(id);
    clearTimeout(pending.timer);
    this.lastUsed = performance.now();
    pending.resolve(result);
  }

  close(cause: unknown): void {
    if (this.closed) return;
    this.closed = true;
    try {
      this.#conn.close();
    } catch { /* already closed */ }
    for (const pending of this.pending.values()) {
      clearTimeout(pending.timer);
      pending.reject(
        new UpstreamError(`Connection to upstream ${this.#pool.label} closed`, {
          code: "closed",
          cause,
        }),
      );
    }
    this.pending.clear();
    this.#pool.forget(this);
  }
}

/**
 * A pool of pipelined TCP (or TLS) connections to one upstream. Connections are opened on demand
 * up to `maxConnections`, closed after `idleTimeout` without traffic, and a connection on which a
 * query timed out is closed once (its round trips are too slow to keep).
 *
 * @example
 * ```ts ignore
 * const pool = new TcpPool({ label: "127.0.0.1:53", connect: () => Deno.connect({ port: 53 }) });
 * const reply = await pool.exchange(query, id, parseMessage(query), 2000);
 * pool.close();
 * ```
 */
export class TcpPool {
  /** The name used in errors. */
  readonly label: string;
  #options: TcpPoolOptions;
  #connections: PooledConnection[] = [];
  #idleTimer: ReturnType<typeof setInterval>;
  #closed = false;

  /**
   * Creates an empty pool.
   *
   * @param options How to connect and the pool limits.
   */
  constructor(options: TcpPoolOptions) {
    this.#options = options;
    this.label = options.label;
    this.#hooks.label = options.label;
    const idle = options.idleTimeout ?? 30_000;
    this.#idleTimer = setInterval(() => this.#closeIdle(idle), Math.max(50, idle / 2));
    Deno.unrefTimer(this.#idleTimer);
  }

  /** Open connections. */
  get connections(): number {
    return this.#connections.length;
  }

  #hooks: PoolHooks = {
    label: "",
    mismatch: (reason) => this.#options.onMismatch?.(reason),
    forget: (connection) => {
      const at = this.#connections.indexOf(connection);
      if (at !== -1) this.#connections.splice(at, 1);
    },
  };

  #closeIdle(idle: number): void {
    const now = performance.now();
    let fastest = Infinity;
    for (const connection of this.#connections) {
      if (connection.rtt > 0) fastest = Math.min(fastest, connection.rtt);
    }
    for (const connection of [...this.#connections]) {
      if (connection.pending.size > 0) continue;
      // Idle, or much slower than its siblings (RTT-based eviction): reconnect later.
      const slow = connection.rtt > 50 && connection.rtt > fastest * 4;
      if (now - connection.lastUsed >= idle) {
        connection.close(undefined);
        this.#options.onIdleClose?.();
      } else if (slow) connection.close(undefined);
    }
  }

  #connecting: Promise<PooledConnection> | undefined;

  async #pick(): Promise<PooledConnection> {
    const maxPipelined = this.#options.maxPipelined ?? 64;
    let best: PooledConnection | undefined;
    for (const connection of this.#connections) {
      if (best === undefined || connection.pending.size < best.pending.size) best = connection;
    }
    if (best !== undefined && best.pending.size < maxPipelined) return best;
    // One connect at a time: queries arriving meanwhile wait for it instead of opening more.
    if (this.#connecting !== undefined) return await this.#connecting;
    if (best !== undefined && this.#connections.length >= (this.#options.maxConnections ?? 4)) {
      return best;
    }
    this.#connecting = this.#open();
    try {
      return await this.#connecting;
    } finally {
      this.#connecting = undefined;
    }
  }

  async #open(): Promise<PooledConnection> {
    try {
      const conn = await this.#options.connect();
      if (this.#closed) {
        conn.close();
        throw new UpstreamError(`Pool for upstream ${this.label} is closed`, { code: "closed" });
      }
      const connection = new PooledConnection(conn, this.#hooks);
      this.#connections.push(connection);
      return connection;
    } catch (cause) {
      if (cause instanceof UpstreamError) throw cause;
      throw new UpstreamError(`Cannot connect to upstream ${this.label}`, {
        code: "network",
        cause,
      });
    }
  }

  /**
   * Sends a query on a pooled connection and waits for its reply.
   *
   * @param query The query bytes (its ID is replaced by a free one on the connection).
   * @param info The parsed query.
   * @param timeoutMs How long to wait.
   * @returns The accepted reply.
   * @throws {UpstreamError} On timeout, connection failure or a closed pool.
   */
  async exchange(query: Uint8Array, info: MessageInfo, timeoutMs: number): Promise<AcceptedReply> {
    if (this.#closed) {
      throw new UpstreamError(`Pool for upstream ${this.label} is closed`, { code: "closed" });
    }
    const started = performance.now();
    const connection = await this.#pick();
    let id = randomId();
    while (connection.pending.has(id)) id = randomId();
    const frame = DNS_FRAMING.encode(query);
    frame[2] = id >> 8;
    frame[3] = id & 0xff;
    const left = Math.max(1, timeoutMs - (performance.now() - started));
    const reply = await new Promise<AcceptedReply>((resolve, reject) => {
      const timer = setTimeout(() => {
        connection.pending.delete(id);
        reject(
          new UpstreamError(`Upstream ${this.label} over TCP timed out`, { code: "timeout" }),
        );
        // A connection that lost a reply is too slow or broken to keep once it drains.
        if (connection.pending.size === 0) connection.close(undefined);
      }, left);
      connection.pending.set(id, { info, resolve, reject, timer });
      connection.lastUsed = performance.now();
      connection.send(frame);
    });
    const rtt = performance.now() - started;
    connection.rtt = connection.rtt === 0 ? rtt : connection.rtt * 0.8 + rtt * 0.2;
    return reply;
  }

  /** Closes every connection; queries in flight fail with code `closed`. */
  close(): void {
    this.#closed = true;
    clearInterval(this.#idleTimer);
    for (const connection of [...this.#connections]) connection.close(undefined);
  }
}

const randomPool = new Uint16Array(256);
let randomLeft = 0;

/**
 * Returns a cryptographically random 16-bit DNS ID (drawn in batches).
 *
 * @returns A number from 0 to 65535.
 *
 * @example
 * ```ts
 * import { randomId } from "./tcp_pool.ts";
 * import assert from "node:assert/strict";
 *
 * const id = randomId();
 * assert.ok(Number.isInteger(id) && id >= 0 && id <= 0xffff);
 * ```
 */
export function randomId(): number {
  if (randomLeft === 0) {
    crypto.getRandomValues(randomPool);
    randomLeft = randomPool.length;
  }
  return randomPool[--randomLeft]!;
}
