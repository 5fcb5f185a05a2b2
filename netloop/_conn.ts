/**
 * The connection objects every backend shares: inbound views with an elastic leftover buffer, and
 * an outbound double buffer (one half being sent while the handler fills the other).
 *
 * @module
 */
import type { SocketAddress } from "@triad/core";
import type { Conn } from "./conn.ts";
import type { ConnHandler } from "./event_handler.ts";
import type { TlsInfo } from "./tls.ts";
import type { LoopCore } from "./_loop.ts";

const EMPTY = new Uint8Array(0);
/** The size of pooled outbound buffers (a larger write grows one past it, then it is not pooled). */
const OUT_BUFFER = 4096;
/** Outbound buffers a loop keeps for reuse (4 MiB). */
const OUT_POOL = 1024;
/** The largest grown outbound buffer a loop keeps for reuse, and how many (at most 2 MiB). */
const BIG_OUT_BUFFER = 64 * 1024;
const BIG_OUT_POOL = 32;

/** Connection states. */
export const State = { Connecting: 0, Open: 1, Closing: 2, Closed: 3 } as const;
/** A connection state. */
export type State = typeof State[keyof typeof State];

function grow(
  buffer: Uint8Array | null,
  used: number,
  need: number,
  alloc: (n: number) => Uint8Array,
) {
  if (buffer !== null && buffer.length >= need) return buffer;
  let size = buffer === null ? 4096 : buffer.length * 2;
  while (size < need) size *= 2;
  const next = alloc(size);
  if (buffer !== null && used > 0) next.set(buffer.subarray(0, used));
  return next;
}

function concat(chunks: readonly Uint8Array[]): Uint8Array {
  let total = 0;
  for (const c of chunks) total += c.length;
  const joined = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    joined.set(c, at);
    at += c.length;
  }
  return joined;
}

function resolveCount(n: number | undefined, available: number): number {
  return n === undefined || n < 0 || n > available ? available : n;
}

/** A TCP connection, or a dialed (connected) UDP socket when `datagram` is set. */
export class ConnImpl implements Conn {
  context: unknown = undefined;
  /** Backend: the socket. */
  fd = -1;
  /** Backend: slot in its table and generation (stale completions are told apart). */
  slot = -1;
  gen = 0;
  /** Backend: kernel operations in flight that still reference this connection's memory. */
  ops = 0;
  /** Backend flags (armed reads, paused interest and so on). */
  flags = 0;
  state: State = State.Open;
  paused = false;
  dirty = false;
  /** `activityStamp` of the turn it last had traffic (a small integer: see `_loop.ts`). */
  lastActive = 0;
  closeError: Error | undefined = undefined;
  /** Outbound: `out` is being filled, `fly[flyOff, flyLen)` is being sent. */
  out: Uint8Array | null = null;
  outLen = 0;
  /** Addresses of `out` and `fly` for the FFI backends (0 elsewhere). */
  outAddress = 0;
  flyAddress = 0;
  fly: Uint8Array | null = null;
  flyOff = 0;
  flyLen = 0;
  /** Outbound datagrams (dialed UDP). */
  datagrams: Uint8Array[] | null;
  /** Plain receive buffer (backends without a shared or provided buffer). */
  recvBuffer: Uint8Array | null = null;
  /** Anything else a backend keeps per connection. */
  backendState: unknown = undefined;
  /** What TLS negotiated, when the backend terminates it itself (portable). */
  tls?: TlsInfo;

  private cur: Uint8Array = EMPTY;
  private start = 0;
  private end = 0;
  private keep: Uint8Array | null = null;
  private hiddenEnd = -1;
  private local: SocketAddress | undefined;
  private remote: SocketAddress | undefined;

  constructor(
    readonly loop: LoopCore,
    readonly network: "tcp" | "udp",
    readonly handler: ConnHandler,
    readonly datagram: boolean,
    remote?: SocketAddress,
  ) {
    this.datagrams = datagram ? [] : null;
    this.remote = remote;
  }

  get localAddress(): SocketAddress {
    return this.local ??= this.loop.addressOf(this, "local");
  }

  get remoteAddress(): SocketAddress {
    return this.remote ??= this.loop.addressOf(this, "remote");
  }

  get inboundBuffered(): number {
    return this.end - this.start;
  }

  get outboundBuffered(): number {
    let n = this.outLen + this.flyLen - this.flyOff;
    if (this.datagrams !== null) { for (const d of this.datagrams) n += d.length; }
    return n;
  }

  get closed(): boolean {
    return this.state >= State.Closing;
  }

  /**
   * Makes `bytes[from, to)` (plus anything kept from before) what peek/next/discard see. Offsets
   * rather than a view of the read: every typed array view costs an allocation of its own, and
   * the handler's `next()` makes the one it reads.
   */
  beginTraffic(bytes: Uint8Array, from = 0, to: number = bytes.length): void {
    if (this.start === this.end) {
      this.cur = bytes;
      this.start = from;
      this.end = to;
      return;
    }
    const rest = this.end - this.start;
    const length = to - from;
    const keep = this.keep!;
    if (this.start > 0) keep.copyWithin(0, this.start, this.end);
    this.keep = grow(keep, rest, rest + length, (n) => new Uint8Array(n));
    this.keep.set(from === 0 && to === bytes.length ? bytes : bytes.subarray(from, to), rest);
    this.cur = this.keep;
    this.start = 0;
    this.end = rest + length;
  }

  /** Keeps bytes for later without running the handler (reading is paused). */
  stash(view: Uint8Array): void {
    this.beginTraffic(view);
    this.endTraffic();
  }

  /** Shows the handler at most `max` of the bytes (the rest stays kept for a later turn). */
  limitTo(max: number): void {
    if (this.end - this.start > max) {
      this.hiddenEnd = this.end;
      this.end = this.start + max;
    }
  }

  /** Keeps what the handler left (TCP) or drops it (datagrams); the view may be recycled after. */
  endTraffic(): void {
    if (this.hiddenEnd >= 0) {
      // Only kept bytes were shown (cur is keep): move what is left, shown or not, to the front.
      const rest = this.hiddenEnd - this.start;
      this.hiddenEnd = -1;
      if (this.start > 0) this.keep!.copyWithin(0, this.start, this.start + rest);
      this.start = 0;
      this.end = rest;
      return;
    }
    const rest = this.end - this.start;
    if (rest === 0 || this.datagram) {
      this.cur = EMPTY;
      this.start = this.end = 0;
      // Elastic: give a large leftover buffer back once it is empty.
      if (this.keep !== null && this.keep.length > 65536) this.keep = null;
      return;
    }
    if (this.cur !== this.keep) {
      this.keep = grow(this.keep, 0, rest, (n) => new Uint8Array(n));
      this.keep.set(this.cur.subarray(this.start, this.end));
      this.cur = this.keep;
      this.start = 0;
      this.end = rest;
    }
  }

  peek(n?: number): Uint8Array {
    const k = resolveCount(n, this.end - this.start);
    return this.cur.subarray(this.start, this.start + k);
  }

  next(n?: number): Uint8Array {
    const k = resolveCount(n, this.end - this.start);
    const view = this.cur.subarray(this.start, this.start + k);
    this.start += k;
    return view;
  }

  discard(n?: number): number {
    const k = resolveCount(n, this.end - this.start);
    this.start += k;
    return k;
  }

  write(bytes: Uint8Array): number {
    if (this.state >= State.Closing) return 0;
    if (this.datagrams !== null) {
      if (this.loop.sendDialed(this, bytes)) return bytes.length;
      this.datagrams.push(this.loop.bytes.copy(bytes)); // kept until the next flush
    } else {
      const need = this.outLen + bytes.length;
      if (this.out === null || this.out.length < need) this.growOut(need);
      this.out!.set(bytes, this.outLen);
      this.outLen = need;
    }
    this.loop.markDirty(this);
    return bytes.length;
  }

  /**
   * Room for `n` more outbound bytes (TCP): the outbound buffer, to be filled from `outLen` on and
   * then counted with {@linkcode commitOutbound}. Lets a layer (TLS) write its output in place
   * rather than into a buffer of its own that `write` copies again.
   */
  reserveOutbound(n: number): Uint8Array {
    const need = this.outLen + n;
    if (this.out === null || this.out.length < need) this.growOut(need);
    return this.out!;
  }

  /** Counts `n` bytes written into the outbound buffer at `outLen` (after `reserveOutbound`). */
  commitOutbound(n: number): void {
    if (n <= 0 || this.state >= State.Closing) return;
    this.outLen += n;
    this.loop.markDirty(this);
  }

  /** Makes the outbound buffer hold `need` bytes: a pooled one, a kept big one, or grown. */
  private growOut(need: number): void {
    if (this.out === null && need <= OUT_BUFFER) {
      this.takeOutBuffer();
      return;
    }
    const loop = this.loop;
    const big = loop.bigOutBuffers;
    if (need <= BIG_OUT_BUFFER && big.length > 0 && big[big.length - 1]!.length >= need) {
      const next = big.pop()!;
      const address = loop.bigOutAddresses.pop()!;
      if (this.out !== null && this.outLen > 0) next.set(this.out.subarray(0, this.outLen));
      this.pool(this.out, this.outAddress);
      this.out = next;
      this.outAddress = address;
      return;
    }
    const old = this.out;
    const oldAddress = this.outAddress;
    this.out = grow(old, this.outLen, need, loop.allocate);
    this.outAddress = loop.pointerOf(this.out);
    if (old !== this.out) this.pool(old, oldAddress);
  }

  writev(chunks: readonly Uint8Array[]): number {
    if (this.datagrams !== null) {
      return this.write(concat(chunks));
    }
    let total = 0;
    for (const c of chunks) total += this.write(c);
    return total;
  }

  flush(): void {
    if (this.outboundBuffered > 0) this.loop.markDirty(this);
  }

  close(): void {
    if (this.state >= State.Closing) return;
    this.state = State.Closing;
    this.loop.markDirty(this);
  }

  /** Takes an outbound buffer of OUT_BUFFER bytes from the loop's pool (or a new one). */
  private takeOutBuffer(): void {
    const pool = this.loop.outBuffers;
    if (pool.length > 0) {
      this.out = pool.pop()!;
      this.outAddress = this.loop.outAddresses.pop()!;
    } else {
      this.out = this.loop.allocate(OUT_BUFFER);
      this.outAddress = this.loop.pointerOf(this.out);
    }
  }

  /**
   * Gives both outbound buffers back to the loop's pool once everything was sent (the backend
   * calls this when a send completes or finds nothing left): an idle connection then holds no
   * buffer of its own, and a busy one takes a pooled buffer per burst rather than allocating one.
   */
  idleOutbound(): void {
    if (this.outLen !== 0 || this.flyOff < this.flyLen) return;
    // (two statements, not a loop over pairs: that cost three arrays per completed send)
    this.pool(this.fly, this.flyAddress);
    this.pool(this.out, this.outAddress);
    this.fly = this.out = null;
    this.flyOff = this.flyLen = 0;
    this.flyAddress = this.outAddress = 0;
  }

  private pool(buffer: Uint8Array | null, address: number): void {
    if (buffer === null) return;
    const loop = this.loop;
    if (buffer.length === OUT_BUFFER) {
      if (loop.outBuffers.length < OUT_POOL) {
        loop.outBuffers.push(buffer);
        loop.outAddresses.push(address);
      }
    } else if (buffer.length <= BIG_OUT_BUFFER && loop.bigOutBuffers.length < BIG_OUT_POOL) {
      loop.bigOutBuffers.push(buffer);
      loop.bigOutAddresses.push(address);
    }
  }

  /** Moves queued bytes into the in-flight half when it is free; returns the bytes to send. */
  takeOutbound(): number {
    if (this.flyOff < this.flyLen) return this.flyLen - this.flyOff;
    if (this.outLen === 0) return 0;
    const spare = this.fly;
    const spareAddress = this.flyAddress;
    this.fly = this.out;
    this.flyAddress = this.outAddress;
    this.flyOff = 0;
    this.flyLen = this.outLen;
    this.out = spare;
    this.outAddress = spareAddress;
    this.outLen = 0;
    return this.flyLen;
  }

  /**
   * Drops every buffer (the connection is gone).
   *
   * @param reuse No system call still reads the outbound buffers (epoll; uring once no operation
   * is in flight), so they go back to the loop's pool. A connection closed with bytes queued (a
   * TLS close_notify, say) otherwise took a fresh off-heap buffer for every connection.
   */
  release(reuse = false): void {
    if (reuse) {
      this.pool(this.fly, this.flyAddress);
      this.pool(this.out, this.outAddress);
      this.flyAddress = this.outAddress = 0;
    }
    this.out =
      this.fly =
      this.keep =
      this.recvBuffer =
        null;
    this.outLen = this.flyLen = this.flyOff = 0;
    if (this.datagrams !== null) this.datagrams.length = 0;
    this.cur = EMPTY;
    this.start = this.end = 0;
  }
}

/**
 * One received datagram on a UDP listener, `cur[start, end)` (the receive buffer itself: a view
 * per datagram would cost an allocation; `next()` makes the one the handler reads); `write`
 * replies to its sender.
 */
export class PacketConn implements Conn {
  readonly network = "udp";
  context: unknown = undefined;
  private remote: SocketAddress | undefined;
  /**
   * The sender's sockaddr (up to 28 bytes) as seven little-endian 32-bit words and its length:
   * numbers, not a copied Uint8Array, because every typed array costs a malloc'd backing store
   * and a datagram's sender must outlive the receive buffer (a reply may be written later). Kept
   * as signed words (`| 0`): a word past 2^31 (a port or an address byte from 128 up) was a heap
   * number, and made every connection's field one (16 heap bytes more per datagram).
   */
  p0 = 0;
  p1 = 0;
  p2 = 0;
  p3 = 0;
  p4 = 0;
  p5 = 0;
  p6 = 0;
  peerLength = 0;

  constructor(
    readonly loop: LoopCore,
    /** The listening socket (backend-defined). */
    readonly socket: number,
    private cur: Uint8Array,
    private start: number = 0,
    private end: number = cur.length,
    remote?: SocketAddress,
  ) {
    this.remote = remote;
  }

  /** Copies the sender's sockaddr from `words[at..]` (`length` bytes). */
  readPeer(words: Uint32Array, at: number, length: number): void {
    this.peerLength = length;
    this.p0 = words[at]! | 0;
    this.p1 = words[at + 1]! | 0;
    if (length <= 16) return; // sockaddr_in: the rest is padding
    this.p2 = words[at + 2]! | 0;
    this.p3 = words[at + 3]! | 0;
    this.p4 = words[at + 4]! | 0;
    this.p5 = words[at + 5]! | 0;
    this.p6 = words[at + 6]! | 0;
  }

  /** Writes the sender's sockaddr into `words[at..]` (8 words); returns its length in bytes. */
  writePeer(words: Uint32Array, at: number): number {
    words[at] = this.p0;
    words[at + 1] = this.p1;
    words[at + 2] = this.p2;
    words[at + 3] = this.p3;
    words[at + 4] = this.p4;
    words[at + 5] = this.p5;
    words[at + 6] = this.p6;
    words[at + 7] = 0;
    return this.peerLength;
  }

  get localAddress(): SocketAddress {
    return this.loop.address;
  }

  get remoteAddress(): SocketAddress {
    return this.remote ??= this.loop.peerAddress(this);
  }

  get inboundBuffered(): number {
    return this.end - this.start;
  }

  get outboundBuffered(): number {
    return 0;
  }

  get closed(): boolean {
    return false;
  }

  /** The datagram is no longer readable (its buffer goes back to the kernel). */
  endTraffic(): void {
    this.cur = EMPTY;
    this.start = this.end = 0;
  }

  peek(n?: number): Uint8Array {
    const k = resolveCount(n, this.end - this.start);
    return this.cur.subarray(this.start, this.start + k);
  }

  next(n?: number): Uint8Array {
    const view = this.peek(n);
    this.start += view.length;
    return view;
  }

  discard(n?: number): number {
    return this.next(n).length;
  }

  write(bytes: Uint8Array): number {
    this.loop.sendDatagram(this, bytes);
    return bytes.length;
  }

  writev(chunks: readonly Uint8Array[]): number {
    return this.write(concat(chunks));
  }

  flush(): void {}

  close(): void {}
}
