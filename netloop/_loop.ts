/**
 * What every backend's loop shares: handler dispatch, actions, timers (tick and idle timeout),
 * the dirty list of connections with something to send, and dialing.
 *
 * @module
 */
import {
  BytePool,
  createLogger,
  type Logger,
  type LogLevel,
  parseSocketAddress,
  type SocketAddress,
} from "@triad/core";
import { setImmediate } from "node:timers";
import { Action } from "./action.ts";
import type { Conn } from "./conn.ts";
import type {
  BackendName,
  ConnHandler,
  DialOptions,
  EventHandler,
  Exhaustion,
  HandlerResult,
  Loop,
} from "./event_handler.ts";
import { NetloopError } from "./errors.ts";
import { syscallError } from "./_ffi.ts";
import { ConnImpl, type PacketConn, State } from "./_conn.ts";
import { decodeSockaddr } from "./_sockaddr.ts";
import { dialTls, expireHandshakes, type LoopTlsConfig } from "./_tls.ts";
import type { HandlerTimers } from "./_timers.ts";
import type { DialTlsOptions } from "./tls.ts";

/**
 * Microtask turns a loop gives handlers' promise callbacks before it blocks in the kernel: they
 * only run when the loop awaits, and what they write would otherwise wait for the next event or
 * the longest block. Each is an `await SETTLED` inline in the backend's `run`, stopping early once
 * something was written: an `await null` makes a promise of its own, and an async `settle()`
 * method its generator too (650 against 200 heap bytes a turn; issue 27).
 */
export const SETTLE_AWAITS = 4;
/** An already resolved promise: awaiting it is the microtask turn that allocates least. */
export const SETTLED: Promise<void> = Promise.resolve();
/** Longest a loop blocks in the kernel before giving the Worker's event loop a turn. */
const MAX_BLOCK_MS = 50;
/**
 * Longest block of a loop that has had no event for IDLE_AFTER_MS, and of one that has had none
 * for LONG_IDLE_AFTER_MS: each wake-up of an idle loop costs 150-250 µs (a turn of the Worker's
 * event loop with cold caches; 0.1-4 ms on a machine whose caches are emptied while it sleeps), and
 * 20 a second were 0.3-0.4% of a core for a loop with nothing to do, 4 a second about 0.09% with
 * 15,000 connections held. Handler timers (`setTimeout`, `setInterval`) bound every block (see
 * `HandlerTimers`), as `tick`/`tickWithin` do, and a loop whose handler timer just ran counts as
 * busy; what else a handler awaits in an idle loop (a `fetch`, a file read) may complete up to this
 * late.
 */
const IDLE_BLOCK_MS = 250;
const IDLE_AFTER_MS = 1000;
const LONG_IDLE_BLOCK_MS = 1000;
const LONG_IDLE_AFTER_MS = 3000;
/**
 * How often a busy loop yields to the Worker's event loop (timers, I/O callbacks; messages from the
 * main thread are checked every turn). Each yield is a setImmediate turn of Deno's event loop with
 * its bookkeeping: at 2 ms, the yields were 4-8% of a `uring` loop's CPU in a profile at 150,000
 * msgs/s (issue 27).
 */
const YIELD_EVERY_MS = 10;

/** Shortest and longest pause of accepting after running out of descriptors (it doubles). */
const ACCEPT_PAUSE_MIN_MS = 10;
const ACCEPT_PAUSE_MAX_MS = 1000;
/** How often running out of descriptors is logged at most (with counts since the last line). */
const EXHAUSTION_LOG_EVERY_MS = 10_000;

/** The errno names that mean "no descriptor (or socket memory) for a new connection". */
const EXHAUSTION_ERRNOS: ReadonlySet<string> = new Set(["EMFILE", "ENFILE", "ENOBUFS", "ENOMEM"]);

/** Whether an errno name says the process or the system ran out of descriptors. */
export function isExhaustion(name: string): boolean {
  return EXHAUSTION_ERRNOS.has(name);
}

/** Everything a loop Worker is told at start. */
export interface LoopConfig {
  index: number;
  loops: number;
  backend: BackendName;
  network: "tcp" | "udp";
  hostname: string;
  port: number;
  reusePort: boolean;
  tickMs: number | undefined;
  idleTimeoutMs: number | undefined;
  maxWriteBuffer: number;
  readBufferSize: number;
  /** A UDP listener's SO_RCVBUF and SO_SNDBUF (bytes; 0: the kernel's default). */
  socketBuffer: number;
  data: unknown;
  logLevel: LogLevel;
  /** uring features to leave off (tests of the downgrade paths). */
  disable: string[];
  /** Terminate TLS on accepted connections. */
  tls?: LoopTlsConfig;
}

/**
 * Empties a list that is filled again soon, keeping its room: `length = 0` gives the list's
 * backing store back to V8 and the next push allocates another (152 heap bytes for 16 slots,
 * measured), where `pop` keeps it (and clears the slots, so nothing is kept alive).
 */
export function emptyKeepingRoom(list: unknown[]): void {
  while (list.length > 0) list.pop();
}

/** Activity stamps wrap after this many milliseconds (2^30: about 12.4 days). */
const STAMP_WRAP = 0x40000000;
/** Idle timeouts are measured up to half the wrap (about 6.2 days); longer ones act as that. */
const LONGEST_IDLE_MS = STAMP_WRAP / 2;

/**
 * A connection's activity stamp for the turn clock `now`: whole milliseconds modulo 2^30, which
 * V8 keeps as a small integer in the connection's field. A fractional `performance.now()` stored
 * there was a new heap number on every read, referenced from a long-lived connection: with 15,000
 * connections held, every scavenge copied one per connection that had been active since the last.
 */
export function activityStamp(now: number): number {
  return (now | 0) & (STAMP_WRAP - 1);
}

/** Milliseconds from `stamp` to the turn clock `now` (modulo the wrap). */
function idleFor(now: number, stamp: number): number {
  return (activityStamp(now) - stamp) & (STAMP_WRAP - 1);
}

/**
 * Connections the idle scan checks in one go (about 0.5 ms): a loop holding more spreads each pass
 * over up to IDLE_SCAN_SLICES turns (a pass over 1,000,000 in one go took 26 ms).
 */
const IDLE_SCAN_SLICE = 20_000;
const IDLE_SCAN_SLICES = 20;

/** The connection-close error for an idle timeout. */
function idleError(ms: number): NetloopError {
  return new NetloopError(`Connection was idle for more than ${ms} ms`, { code: "idle_timeout" });
}

/** An IPv4 sender remembered by {@linkcode LoopCore.peerAddress}: its sockaddr words and address. */
class Peer4 {
  constructor(readonly p0: number, readonly p1: number, readonly address: SocketAddress) {}
}

/** An IPv6 sender remembered by {@linkcode LoopCore.peerAddress}: its sockaddr words and address. */
class Peer6 {
  constructor(
    readonly p0: number,
    readonly p1: number,
    readonly p2: number,
    readonly p3: number,
    readonly p4: number,
    readonly p5: number,
    readonly p6: number,
    readonly address: SocketAddress,
  ) {}
}

/** The base of every backend's loop. */
export abstract class LoopCore implements Loop {
  readonly index: number;
  readonly loops: number;
  readonly backend: BackendName;
  readonly data: unknown;
  readonly logger: Logger;
  address: SocketAddress = { family: 4, address: "0.0.0.0", port: 0 };
  /** Every open connection (accepted and dialed). */
  readonly conns: Set<ConnImpl> = new Set();
  /** Connections with something to send or a close to finish, in order. */
  dirty: ConnImpl[] = [];
  private spareDirty: ConnImpl[] = [];
  stopping = false;
  /**
   * `performance.now()` when the loop last came back from the kernel: the clock of the turn
   * (each reading of the real one is an op call, about 80 ns).
   */
  now: number = performance.now();
  /** When the loop last came back from the kernel with events. */
  lastEvent: number = this.now;
  /** Set when a handler returned `Action.Shutdown`. */
  shutdownRequested = false;
  protected nextTick = Infinity;
  protected nextIdleScan = Infinity;
  /** The idle scan's pass in progress (see `idleScan`). */
  private idleCursor: SetIterator<ConnImpl> | undefined;
  private idleSliceSize = 0;
  private idleSliceGap = 0;
  /** Shared with the main thread: word 0 counts the messages it posted. */
  control: Int32Array | undefined;
  /** Messages from the main thread handled so far. */
  handledMessages = 0;
  /** The Worker's handler timers (set by `_worker.ts`), which bound an idle loop's block. */
  handlerTimers: HandlerTimers | undefined;
  /**
   * The handler module's own handler: dialed connections fall back to it (the loop's `handler`
   * may be the TLS layer wrapped around it).
   */
  userHandler: EventHandler;
  /** Short-lived copies (queued datagrams) without a malloc each. */
  readonly bytes: BytePool = new BytePool();
  /** Allocates memory the kernel may be handed by address. */
  allocate: (size: number) => Uint8Array = (size) => new Uint8Array(size);
  /** The address of memory from `allocate` (FFI backends; 0 elsewhere). */
  pointerOf: (buffer: Uint8Array) => number = () => 0;
  /** Outbound buffers idle connections gave back (see `ConnImpl.idleOutbound`), and addresses. */
  readonly outBuffers: Uint8Array[] = [];
  readonly outAddresses: number[] = [];
  /** Larger outbound buffers (grown past the pooled size, up to 64 KiB) kept for the next burst. */
  readonly bigOutBuffers: Uint8Array[] = [];
  readonly bigOutAddresses: number[] = [];
  /** What running out of descriptors refused (see {@linkcode Loop.exhaustion}). */
  readonly exhaustion: { -readonly [K in keyof Exhaustion]: Exhaustion[K] } = {
    accepts: 0,
    dials: 0,
    pauses: 0,
    paused: false,
  };
  /**
   * Descriptors held while accepting, so that accepts cannot take the last free ones: given back
   * while accepting is paused, taken again before it resumes (see `DescriptorReserve`).
   */
  protected reserve: { fill(): boolean; release(): void } | undefined;
  /** While accepting is paused for lack of descriptors: when to try again; 0 while accepting. */
  protected acceptResumeAt = 0;
  private acceptPauseMs = 0;
  /** A connection closed (a descriptor came free) while accepting was paused. */
  private descriptorFreed = false;
  private exhaustionLoggedAt = -Infinity;
  private exhaustionUnlogged = 0;

  constructor(
    readonly config: LoopConfig,
    readonly handler: EventHandler,
    private readonly post: (message: unknown) => void,
  ) {
    this.index = config.index;
    this.loops = config.loops;
    this.backend = config.backend;
    this.data = config.data;
    this.userHandler = handler;
    this.logger = createLogger({
      level: config.logLevel,
      fields: { module: "netloop", loop: config.index },
    });
    const now = performance.now();
    if (config.tickMs !== undefined) this.nextTick = now + config.tickMs;
    if (config.idleTimeoutMs !== undefined) this.nextIdleScan = now + this.idleScanEvery();
  }

  get connections(): number {
    return this.conns.size;
  }

  tickWithin(ms: number): void {
    const at = this.now + ms;
    if (at < this.nextTick) {
      this.nextTick = at;
      this.tickMoved(at);
    }
  }

  /** The next tick moved sooner (to `at`): a backend whose wait does not read it is told here. */
  protected tickMoved(_at: number): void {}

  /** Opens the listener and sets `address`. */
  abstract listen(): void | Promise<void>;
  /** Runs until `stopping`, then closes every connection and the listener. */
  abstract run(): Promise<void>;
  /** Starts connecting a dialed connection. */
  protected abstract connect(conn: ConnImpl, address: SocketAddress): void;
  /** Returns a connection's local or remote address. */
  abstract addressOf(conn: ConnImpl, which: "local" | "remote"): SocketAddress;
  /** IPv4 senders decoded lately, by a hash of their sockaddr words (checked on use). */
  private readonly peers = new Map<number, Peer4>();
  /** IPv6 senders decoded lately, by a hash of their sockaddr words (checked on use). */
  private readonly peers6 = new Map<number, Peer6>();
  private readonly peerWords = new Uint32Array(8);
  private readonly peerBytes = new Uint8Array(this.peerWords.buffer);

  /**
   * Decodes a datagram's sender, remembering recent ones: a busy UDP server sees the same clients
   * again and again, and decoding means formatting the address as text. The tables are keyed by
   * small integers, hashes of the sockaddr words: an IPv6 key built as a string cost a string and
   * V8's hashing of it per datagram, and an IPv4 key made of address and port (up to 2^48) a heap
   * number per datagram.
   */
  peerAddress(conn: PacketConn): SocketAddress {
    if (conn.peerLength <= 16) {
      // IPv4: family and port (p0), address (p1).
      const key = Math.imul(conn.p1 ^ Math.imul(conn.p0, 0x9e3779b1), 0x5bd1e995) >>> 2;
      const known = this.peers.get(key);
      if (known !== undefined && known.p0 === conn.p0 && known.p1 === conn.p1) {
        return known.address;
      }
      const address = this.decodePeer(conn);
      if (this.peers.size >= 4096) this.peers.clear();
      // A sender whose words hash the same replaces the one before.
      this.peers.set(key, new Peer4(conn.p0, conn.p1, address));
      return address;
    }
    let h = conn.p0;
    h = Math.imul(h ^ conn.p1, 0x5bd1e995) ^ (h >>> 15);
    h = Math.imul(h ^ conn.p2, 0x5bd1e995) ^ (h >>> 15);
    h = Math.imul(h ^ conn.p3, 0x5bd1e995) ^ (h >>> 15);
    h = Math.imul(h ^ conn.p4, 0x5bd1e995) ^ (h >>> 15);
    h = Math.imul(h ^ conn.p5, 0x5bd1e995) ^ (h >>> 15);
    h = (Math.imul(h ^ conn.p6, 0x5bd1e995) ^ (h >>> 15)) & 0x3fffffff;
    const peer = this.peers6.get(h);
    if (
      peer !== undefined && peer.p0 === conn.p0 && peer.p1 === conn.p1 && peer.p2 === conn.p2 &&
      peer.p3 === conn.p3 && peer.p4 === conn.p4 && peer.p5 === conn.p5 && peer.p6 === conn.p6
    ) {
      return peer.address;
    }
    const address = this.decodePeer(conn);
    if (this.peers6.size >= 4096) this.peers6.clear();
    // A sender whose words hash the same replaces the one before.
    this.peers6.set(
      h,
      new Peer6(conn.p0, conn.p1, conn.p2, conn.p3, conn.p4, conn.p5, conn.p6, address),
    );
    return address;
  }

  private decodePeer(conn: PacketConn): SocketAddress {
    conn.writePeer(this.peerWords, 0);
    return Object.freeze(decodeSockaddr(this.peerBytes));
  }
  /** Queues a datagram reply from a UDP listener. */
  abstract sendDatagram(conn: PacketConn, bytes: Uint8Array): void;

  /**
   * Sends a dialed UDP connection's datagram at once, if the backend can (the connection is open
   * and nothing is queued before it).
   *
   * @returns Whether it was dealt with; if not, `write` queues a copy for the next flush.
   */
  sendDialed(_conn: ConnImpl, _bytes: Uint8Array): boolean {
    return false;
  }
  /** Wakes the loop if it is blocked in the kernel (called from this Worker's message handler). */
  wake(): void {}

  /** Asks the loop to stop (from a message or an action). */
  requestStop(): void {
    this.stopping = true;
    this.wake();
  }

  markDirty(conn: ConnImpl): void {
    if (!conn.dirty) {
      conn.dirty = true;
      this.dirty.push(conn);
    }
  }

  /**
   * Hands every dirty connection to `flushConn`, including those made dirty meanwhile.
   *
   * @param flushConn The backend's sender.
   */
  protected drainDirty(flushConn: (conn: ConnImpl) => void): void {
    while (this.dirty.length > 0) {
      const dirty = this.dirty;
      // The list emptied last time takes the new ones (an array per turn otherwise).
      this.dirty = this.spareDirty.length === 0 ? this.spareDirty : [];
      for (const conn of dirty) {
        conn.dirty = false;
        if (conn.state === State.Closed || conn.state === State.Connecting) continue;
        flushConn(conn);
      }
      emptyKeepingRoom(dirty);
      this.spareDirty = dirty;
    }
  }

  postMessage(data: unknown): void {
    this.post({ type: "message", data });
  }

  dial(options: DialOptions): Conn {
    if (options.tls !== undefined) {
      const { tls } = options;
      return this.dialTls({ ...options, tls }, this.mergeHandler(options.handler));
    }
    const address = typeof options.address === "string"
      ? parseSocketAddress(options.address)
      : options.address;
    const handler = this.mergeHandler(options.handler);
    const conn = new ConnImpl(this, options.network, handler, options.network === "udp", address);
    conn.state = State.Connecting;
    if (options.context !== undefined) conn.context = options.context;
    conn.lastActive = activityStamp(this.now);
    this.conns.add(conn);
    this.connect(conn, address);
    const error = conn.closeError;
    if (error instanceof NetloopError && error.code === "descriptors_exhausted") {
      this.exhaustion.dials++;
      this.logExhaustion("dial", error.message);
    }
    return conn;
  }

  /** Dials a TLS connection: OpenSSL over the loop's socket (the portable backend overrides). */
  protected dialTls(options: DialOptions & { tls: DialTlsOptions }, handler: ConnHandler): Conn {
    return dialTls(this, options, handler, (o) => this.dial(o));
  }

  /** Merged dial handlers by the handler passed to dial (a proxy passes one for every query). */
  private readonly merged = new WeakMap<ConnHandler, ConnHandler>();

  protected mergeHandler(over: ConnHandler | undefined): ConnHandler {
    const base = this.userHandler;
    if (over === undefined) return base;
    let merged = this.merged.get(over);
    if (merged === undefined) {
      merged = this.merge(base, over);
      this.merged.set(over, merged);
    }
    return merged;
  }

  private merge(base: ConnHandler, over: ConnHandler): ConnHandler {
    const merged: ConnHandler = {};
    const onOpen = over.onOpen ?? base.onOpen;
    const onTraffic = over.onTraffic ?? base.onTraffic;
    const onClose = over.onClose ?? base.onClose;
    if (onOpen) merged.onOpen = onOpen.bind(over.onOpen ? over : base);
    if (onTraffic) merged.onTraffic = onTraffic.bind(over.onTraffic ? over : base);
    if (onClose) merged.onClose = onClose.bind(over.onClose ? over : base);
    return merged;
  }

  /** A new accepted or dialed connection is up. */
  opened(conn: ConnImpl): void {
    conn.state = State.Open;
    conn.lastActive = activityStamp(this.now);
    this.conns.add(conn);
    if (conn.handler.onOpen === undefined) return;
    let result: HandlerResult;
    try {
      result = conn.handler.onOpen(conn);
    } catch (error) {
      this.handlerFailed(conn, "onOpen", error);
      return;
    }
    if (result) this.apply(conn, result);
  }

  /** Data arrived on a connection (`bytes[from, to)`): run `onTraffic` over it. */
  traffic(
    conn: ConnImpl,
    bytes: Uint8Array,
    now: number,
    max = Infinity,
    from = 0,
    to = bytes.length,
  ): void {
    conn.lastActive = activityStamp(now);
    if (conn.state >= State.Closing) return;
    conn.beginTraffic(bytes, from, to);
    if (max !== Infinity) conn.limitTo(max);
    let result: HandlerResult = undefined;
    if (conn.handler.onTraffic !== undefined) {
      try {
        result = conn.handler.onTraffic(conn);
      } catch (error) {
        conn.endTraffic();
        this.handlerFailed(conn, "onTraffic", error);
        return;
      }
    } else {
      conn.discard();
    }
    conn.endTraffic();
    if (result) this.apply(conn, result);
  }

  /** A datagram arrived on the UDP listener. */
  packet(conn: PacketConn): void {
    let result: HandlerResult = undefined;
    try {
      result = this.handler.onTraffic?.(conn);
    } catch (error) {
      this.logger.error("onTraffic threw", { error, remote: conn.remoteAddress });
    }
    conn.endTraffic();
    if (result === Action.Shutdown) this.shutdown();
  }

  /**
   * What a failed `recv` or `send` on a stream ends `conn` with: a `syscall` error, or none when
   * the handler had already closed it. A peer that resets once our last bytes are on their way is
   * the ordinary end of many protocols (a TLS client after its close_notify), and an `Error` costs
   * 2-4 µs to build, a tenth of what netloop spends on such a handshake outside OpenSSL.
   *
   * @param conn The connection.
   * @param call The call that failed (`recv`, `send`).
   * @param code Its positive errno.
   */
  protected streamError(conn: ConnImpl, call: string, code: number): NetloopError | undefined {
    if (conn.state === State.Closing) return undefined;
    return syscallError(`${call}(${conn.network} fd ${conn.fd})`, code);
  }

  /** The connection is gone: call `onClose` once, forget it. */
  closed(conn: ConnImpl, error?: Error): void {
    if (conn.state === State.Closed) return;
    conn.state = State.Closed;
    this.conns.delete(conn);
    if (this.acceptResumeAt !== 0) this.freed();
    const reason = error ?? conn.closeError;
    let result: HandlerResult = undefined;
    try {
      result = reason === undefined
        ? conn.handler.onClose?.(conn)
        : conn.handler.onClose?.(conn, reason);
    } catch (thrown) {
      this.logger.error("onClose threw", { error: thrown });
    }
    if (result === Action.Shutdown) this.shutdown();
  }

  /** Applies an action returned for `conn`. */
  apply(conn: ConnImpl, action: HandlerResult): void {
    if (action === Action.Close) conn.close();
    else if (action === Action.Shutdown) this.shutdown();
  }

  private handlerFailed(conn: ConnImpl, method: string, error: unknown): void {
    this.logger.error(`${method} threw; closing the connection`, { error });
    conn.closeError = error instanceof Error ? error : new Error(String(error));
    conn.close();
  }

  /** A handler asked for the engine to stop. */
  shutdown(): void {
    if (this.shutdownRequested) return;
    this.shutdownRequested = true;
    this.post({ type: "shutdown" });
  }

  /** Delivers a message from the main thread to the handler. */
  message(data: unknown): void {
    try {
      const result = this.handler.onMessage?.(data);
      if (result === Action.Shutdown) this.shutdown();
    } catch (error) {
      this.logger.error("onMessage threw", { error });
    }
  }

  /**
   * accept(2) failed for lack of descriptors (`code`, an errno name such as `EMFILE`): the backend
   * has stopped asking for connections; {@linkcode resumeAccept} is called when a connection
   * closes or after a pause that doubles from 10 ms to 1 s while accepting keeps failing, so a
   * full descriptor table costs a few system calls a second rather than a core. Connections
   * waiting meanwhile stay in the listen backlog.
   */
  protected acceptExhausted(code: string): void {
    this.reserve?.release();
    this.exhaustion.accepts++;
    if (this.acceptResumeAt === 0) this.exhaustion.pauses++;
    this.exhaustion.paused = true;
    this.acceptPauseMs = Math.min(
      ACCEPT_PAUSE_MAX_MS,
      Math.max(ACCEPT_PAUSE_MIN_MS, this.acceptPauseMs * 2),
    );
    this.acceptResumeAt = this.now + this.acceptPauseMs;
    this.descriptorFreed = false;
    this.logExhaustion("accept", code);
  }

  /** A connection was accepted: the next exhaustion pauses for the shortest time again. */
  protected acceptWorked(): void {
    this.acceptPauseMs = 0;
  }

  /** Backends that paused accepting start again (re-arm accept, watch the listener). */
  protected resumeAccept(): void {}

  /** A descriptor came free while accepting was paused (the portable backend waits on this). */
  protected freed(): void {
    this.descriptorFreed = true;
  }

  /** Ends a pause of accepting when it is due or a descriptor came free. */
  protected acceptTimer(now: number): void {
    if (this.acceptResumeAt === 0 || (now < this.acceptResumeAt && !this.descriptorFreed)) return;
    this.acceptResumeAt = 0;
    this.descriptorFreed = false;
    this.exhaustion.paused = false;
    if (this.stopping) return;
    if (this.reserve !== undefined && !this.reserve.fill()) {
      // No room for the reserve and a connection: accepting would take the runtime's last
      // descriptors for nothing.
      this.acceptExhausted("EMFILE");
      return;
    }
    this.resumeAccept();
  }

  /** Logs running out of descriptors at most once per interval, with the counts. */
  protected logExhaustion(what: "accept" | "dial", reason: string): void {
    if (this.now - this.exhaustionLoggedAt < EXHAUSTION_LOG_EVERY_MS) {
      this.exhaustionUnlogged++;
      return;
    }
    this.exhaustionLoggedAt = this.now;
    const since = this.exhaustionUnlogged;
    this.exhaustionUnlogged = 0;
    this.logger.warn(
      what === "accept"
        ? `out of descriptors (${reason}): accepting paused until a connection closes (retried within 1 s)`
        : `out of descriptors: ${reason}`,
      {
        acceptFailures: this.exhaustion.accepts,
        dialFailures: this.exhaustion.dials,
        pauses: this.exhaustion.pauses,
        unloggedSinceLast: since,
        open: this.conns.size,
      },
    );
  }

  /**
   * The longest the loop may block now: MAX_BLOCK_MS, or once it is idle (no event and no handler
   * timer run) IDLE_BLOCK_MS, then LONG_IDLE_BLOCK_MS, or less when a handler timer is due sooner.
   */
  maxBlock(now: number): number {
    const timers = this.handlerTimers;
    // A handler timer that just ran counts as an event: what it started (a fetch, a file read)
    // completes on the Worker's event loop, which runs only between blocks.
    const idle = now - Math.max(this.lastEvent, timers?.lastFired ?? -Infinity);
    if (idle < IDLE_AFTER_MS) return MAX_BLOCK_MS;
    // Without the Worker's timers known (a loop run outside _worker.ts), the shorter block.
    if (timers === undefined) return IDLE_BLOCK_MS;
    return Math.min(
      idle < LONG_IDLE_AFTER_MS ? IDLE_BLOCK_MS : LONG_IDLE_BLOCK_MS,
      timers.until(now),
    );
  }

  private idleScanEvery(): number {
    return Math.max(5, Math.min(1000, this.config.idleTimeoutMs! / 4));
  }

  /**
   * Closes connections idle past the timeout: every connection is checked once per pass, a pass
   * every quarter of the timeout (at most a second); past IDLE_SCAN_SLICE connections a pass is
   * cut into slices spread over that period, so that no turn stops for all of them.
   */
  private idleScan(now: number): void {
    if (this.idleCursor === undefined) {
      const slices = Math.min(IDLE_SCAN_SLICES, Math.ceil(this.conns.size / IDLE_SCAN_SLICE)) || 1;
      this.idleCursor = this.conns.values();
      this.idleSliceSize = Math.max(1, Math.ceil(this.conns.size / slices));
      this.idleSliceGap = this.idleScanEvery() / slices;
    }
    const limit = this.config.idleTimeoutMs!;
    const over = Math.min(limit, LONGEST_IDLE_MS);
    let checked = 0;
    let finished = true;
    // A Set's iterator has no return(): leaving the loop early keeps it where it stopped.
    for (const conn of this.idleCursor) {
      if (conn.state === State.Open && idleFor(now, conn.lastActive) > over) {
        conn.closeError = idleError(limit);
        conn.close();
      }
      if (++checked >= this.idleSliceSize) {
        finished = false;
        break;
      }
    }
    if (finished) this.idleCursor = undefined;
    this.nextIdleScan = now + this.idleSliceGap;
  }

  /**
   * Runs due timers (tick, idle scan).
   *
   * @param now `performance.now()`.
   * @returns Milliseconds until the next timer is due (Infinity when none).
   */
  timers(now: number): number {
    if (this.acceptResumeAt !== 0) this.acceptTimer(now);
    if (now >= this.nextTick) {
      this.nextTick = now + (this.config.tickMs ?? Infinity);
      try {
        const result = this.handler.onTick?.();
        if (result === Action.Shutdown) this.shutdown();
      } catch (error) {
        this.logger.error("onTick threw", { error });
      }
    }
    if (now >= this.nextIdleScan) this.idleScan(now);
    const next = Math.min(this.nextTick - now, this.nextIdleScan - now, expireHandshakes(now));
    if (this.acceptResumeAt === 0) return next;
    return Math.min(next, this.descriptorFreed ? 0 : this.acceptResumeAt - now);
  }

  /** Pauses reading a connection whose outbound buffer is over `maxWriteBuffer`. */
  overLimit(conn: ConnImpl): boolean {
    return conn.outboundBuffered > this.config.maxWriteBuffer;
  }
}

/**
 * Gives the Worker's event loop a turn from a loop that otherwise blocks in the kernel.
 *
 * `setImmediate` lets promises and I/O callbacks run cheaply (about 13 µs), but Deno delivers
 * messages from the main thread only on a timer turn, so when the main thread has posted (it
 * bumps a shared counter) the loop takes `setTimeout(0)` turns until the messages are handled.
 * A MessageChannel is no use here: its turns starve the messages from the main thread.
 */
export class Yielder {
  #last = performance.now();

  constructor(private readonly loop: LoopCore) {}

  /**
   * Whether to yield now: when asked to (`force`: the loop was woken or found nothing), when the
   * last turn was `YIELD_EVERY_MS` before `now`, or when the main thread posted messages.
   */
  due(force: boolean, now: number): boolean {
    return force || now - this.#last >= YIELD_EVERY_MS || this.controlPending();
  }

  /**
   * Yields (call when {@linkcode due}: a turn that need not yield then costs no promise and no
   * microtask).
   */
  async turn(): Promise<void> {
    await this.yield();
    this.#last = performance.now();
  }

  /** Whether the main thread posted messages this Worker has not handled yet. */
  controlPending(): boolean {
    const control = this.loop.control;
    return control !== undefined && Atomics.load(control, 0) !== this.loop.handledMessages;
  }

  /** Resolves after the event loop has run its pending tasks (and messages, if any). */
  async yield(): Promise<void> {
    await new Promise<void>((resolve) => setImmediate(resolve));
    for (let i = 0; i < 50 && this.controlPending(); i++) {
      await new Promise<void>((resolve) => setTimeout(resolve, 0));
    }
  }
}
