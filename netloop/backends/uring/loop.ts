/**
 * The io_uring backend: one ring per loop Worker, one `io_uring_enter` per turn that submits every
 * queued SQE and waits for completions; multishot accept, multishot recv (recvmsg for UDP) into a
 * provided buffer ring, one SEND per connection in flight with everything written during the turn
 * gathered into it. A SEND is final when io_uring_enter issues it (MSG_DONTWAIT) and completes
 * silently when whole (CQE_SKIP_SUCCESS), so a turn's replies cost no completions and the loop's
 * next io_uring_enter waits for the next requests at once; a short or refused send posts its
 * completion, and the rest goes out with a SEND that waits for room. Missing kernel features are
 * downgraded one at a time (see `probe.ts`).
 *
 * @module
 */
import { errnoName, type SocketAddress } from "@triad/core";
import { ConnImpl, PacketConn, State } from "../../_conn.ts";
import {
  activityStamp,
  emptyKeepingRoom,
  isExhaustion,
  SETTLE_AWAITS,
  SETTLED,
  Yielder,
} from "../../_loop.ts";
import { type DialSocket, FdLoopCore } from "../../_fd_loop.ts";
import { addressOf, E, errno, type Libc, libc, offHeap, syscallError } from "../../_ffi.ts";
import { SOCKADDR_MAX } from "../../_sockaddr.ts";
import {
  DescriptorReserve,
  openListener,
  openReplySocket,
  reserveFdTable,
  sendConnected,
  setNoDelay,
  SOCK_CLOEXEC,
  socketAddress,
} from "../../_socket.ts";
import { BufferRing, CqeFlag, Feature, Ioprio, Op, Ring, SqeFlag } from "./ring.ts";
import { FLAG_SETS, probeUring, type UringFeatures } from "./probe.ts";

const OP_ACCEPT = 1;
const OP_RECV = 2;
const OP_SEND = 3;
const OP_CONNECT = 4;
const OP_WAKE = 5;
const OP_RECVMSG = 6;
const OP_SENDMSG = 7;
const OP_CANCEL = 8;
/** A SEND with MSG_DONTWAIT and CQE_SKIP_SUCCESS: only a short or failed one completes. */
const OP_SEND_FAST = 9;

const F_ARMED = 1;
const F_SENDING = 2;
const F_EOF = 4;
const F_STASHED = 8;
/** A fast SEND came back short or refused: the next sends wait for room (one completion each). */
const F_SLOW = 16;

const MSG_NOSIGNAL = 0x4000;
const MSG_DONTWAIT = 0x40;
const MSG_WAITALL = 0x100;
const SHUT_RDWR = 2;
const BUFFER_GROUP = 1;
const RECVMSG_OUT = 16;
const ENOBUFS = 105;
const EBUSY = 16;
const MAX_SEND_SLOTS = 4096;
/** Completions handled per turn before the replies they produced are submitted. */
const TURN_BATCH = 32;
const EMPTY = new Uint8Array(0);

/** A UDP reply in flight: msghdr, iovec and name in `header`, payload in `data`. */
interface SendSlot {
  header: Uint8Array;
  words: Uint32Array;
  address: number;
  data: Uint8Array;
  index: number;
}

function setAddress(words: Uint32Array, at: number, address: number): void {
  words[at] = address >>> 0;
  words[at + 1] = Math.floor(address / 4294967296);
}
/** A loop on io_uring. */
export class UringLoop extends FdLoopCore {
  private readonly lib: Libc = libc();
  private readonly ring: Ring;
  private readonly features: UringFeatures;
  private buffers: BufferRing | undefined;
  readonly wakeFd: number;
  private readonly wakeBuffer = offHeap(8);
  private listenFd = -1;
  /** UDP: where replies leave from (see {@linkcode openReplySocket}); -1: the listener sends. */
  private replyFd = -1;
  private readonly slots: (ConnImpl | undefined)[] = [undefined];
  private readonly freeSlots: number[] = [];
  private starving: ConnImpl[] = [];
  private acceptArmed = false;
  private recvMsgArmed = false;
  private recvMsgHeader: Uint8Array | undefined;
  private recvMsgPlain: Uint8Array | undefined;
  private recvMsgPlainWords: Uint32Array | undefined;
  private readonly sendSlots: SendSlot[] = [];
  private readonly freeSendSlots: SendSlot[] = [];
  /** Send slots whose SQEs the next io_uring_enter issues (CQE_SKIP_SUCCESS mode). */
  private readonly submittedSendSlots: SendSlot[] = [];
  private readonly skipSendCompletions: boolean;
  /** TCP sends are fast SENDs (CQE_SKIP_SUCCESS works; not disabled with `fastsend`). */
  private readonly fastSends: boolean;
  /** Connections whose fast SEND the next io_uring_enter issues. */
  private fastSent: ConnImpl[] = [];
  /** The list `settleFastSends` walks while `fastSent` takes new ones (swapped, not reallocated). */
  private fastSettling: ConnImpl[] = [];
  /** Results of fast SENDs that completed short or failed, by connection (see `settleFastSends`). */
  private readonly fastFailed = new Map<ConnImpl, number>();
  private woken = false;
  /** Milliseconds from the turn's start to the next timer (see `beginTurn`). */
  private timersDue = Infinity;
  /** Completions left in the CQ by a turn that hit TURN_BATCH. */
  private backlog = false;
  private readonly sliceSize: number;
  /** Closed dialed UDP connections whose socket joins the pool once their recv has completed. */
  private readonly cooling = new Set<ConnImpl>();

  constructor(...args: ConstructorParameters<typeof FdLoopCore>) {
    super(...args);
    this.allocate = offHeap;
    this.pointerOf = addressOf;
    this.sliceSize = Math.min(this.config.readBufferSize, 16384);
    this.skipSendCompletions = false;
    const probe = probeUring(this.config.disable);
    this.features = { ...probe.features };
    // "defer" off: no SINGLE_ISSUER/DEFER_TASKRUN (completions run as they arrive).
    const flagSets = this.config.disable.includes("defer") ? FLAG_SETS.slice(2) : FLAG_SETS;
    this.ring = Ring.create({ entries: 1024, cqEntries: 16384, flagSets });
    this.skipSendCompletions = (this.ring.features & Feature.CQE_SKIP) !== 0;
    // From 6.1 (SENDMSG_ZC's generation) a short send's completion carries the bytes it sent
    // ("io_uring/net: don't lose partial send/recv on fail"); older kernels keep one completion
    // per send.
    this.fastSends = this.skipSendCompletions && probe.lastOp >= Op.SENDMSG_ZC &&
      !this.config.disable.includes("fastsend");
    try {
      if (this.features.registeredRing && !this.ring.registerRingFd()) {
        this.features.registeredRing = false;
      }
      if (this.features.bufferRing) {
        // TCP: 512 buffers of 32 KiB (16 MiB). A 16 KiB TLS record (16,406 bytes) fits one, so it
        // arrives in one receive, not two: -11% server CPU per 16 KiB TLS message (2026-12-07).
        const udp = this.config.network === "udp";
        const size = Math.min(this.config.readBufferSize, udp ? 65536 : 32768);
        const created = BufferRing.create(this.ring, 512, size, BUFFER_GROUP);
        if (typeof created === "string") {
          this.logger.warn(
            `buffer ring refused (${created}); receiving into per-connection buffers`,
          );
          this.features.bufferRing = false;
          this.features.multishotRecv = false;
        } else {
          this.buffers = created;
        }
      } else {
        this.features.multishotRecv = false;
      }
      this.wakeFd = this.lib.eventfd(0, SOCK_CLOEXEC);
      if (this.wakeFd < 0) throw syscallError("eventfd", errno());
      // Sockets opened under load must not wait for the descriptor table to grow.
      reserveFdTable(this.wakeFd);
    } catch (error) {
      this.ring.close();
      this.buffers?.free(this.lib);
      throw error;
    }
    this.armWake();
    if (this.index === 0) {
      this.logger.debug("io_uring ring ready", {
        flags: `0x${this.ring.flags.toString(16)}`,
        features: this.features,
      });
    }
  }

  override listen(): void {
    const spec = { ...this.config, nonblocking: false };
    const { fd, address } = openListener(spec);
    this.listenFd = fd;
    this.address = address;
    if (this.config.network === "tcp") {
      this.reserve = new DescriptorReserve(this.wakeFd);
      this.reserve.fill();
      this.armAccept();
    } else {
      this.replyFd = openReplySocket(spec, address);
      this.armRecvMsg();
    }
  }

  /** Serves what reached the reply socket before it was connected to itself (a few at most). */
  private drainReplySocket(): void {
    const bytes = offHeap(this.config.readBufferSize);
    const name = new Uint8Array(new ArrayBuffer(SOCKADDR_MAX));
    const nameLength = new Uint32Array(1);
    for (let i = 0; i < 64; i++) {
      nameLength[0] = SOCKADDR_MAX;
      const n = this.lib.recvfrom(
        this.replyFd,
        bytes,
        bytes.length,
        MSG_DONTWAIT,
        name,
        new Uint8Array(nameLength.buffer),
      );
      if (n < 0) return;
      const conn = new PacketConn(this, this.listenFd, bytes.slice(0, n));
      conn.readPeer(new Uint32Array(name.buffer), 0, Math.min(nameLength[0]!, SOCKADDR_MAX));
      this.packet(conn);
    }
  }

  // --- arming -------------------------------------------------------------------------------

  private armWake(): void {
    this.ring.prep(Op.READ, this.wakeFd, addressOf(this.wakeBuffer), 8, 0, OP_WAKE, 0);
  }

  private armAccept(): void {
    const w = this.ring.prep(Op.ACCEPT, this.listenFd, 0, 0, 0, OP_ACCEPT, 0);
    if (this.features.multishotAccept) {
      this.ring.sqe32[w] = this.ring.sqe32[w]! | (Ioprio.ACCEPT_MULTISHOT << 16);
    }
    this.ring.sqe32[w + 7] = SOCK_CLOEXEC;
    this.acceptArmed = true;
  }

  private armRecv(conn: ConnImpl): void {
    const user = (conn.slot << 4) | OP_RECV;
    if (this.buffers !== undefined) {
      const w = this.ring.prep(Op.RECV, conn.fd, 0, 0, 0, user, conn.gen);
      let word = Op.RECV | (SqeFlag.BUFFER_SELECT << 8);
      if (this.features.multishotRecv) word |= Ioprio.RECV_MULTISHOT << 16;
      this.ring.sqe32[w] = word;
      this.ring.sqe32[w + 10] = BUFFER_GROUP;
    } else {
      conn.recvBuffer ??= offHeap(Math.min(this.config.readBufferSize, 65536));
      this.ring.prep(
        Op.RECV,
        conn.fd,
        addressOf(conn.recvBuffer),
        conn.recvBuffer.length,
        0,
        user,
        conn.gen,
      );
    }
    conn.flags |= F_ARMED;
    conn.ops++;
  }

  private armRecvMsg(): void {
    // Multishot recvmsg writes io_uring_recvmsg_out + name + payload into a provided buffer;
    // without multishot, recvmsg fills a plain msghdr (name and one iovec) of our own.
    const multishot = this.buffers !== undefined && this.features.multishotRecv;
    let header: number;
    if (multishot) {
      if (this.recvMsgHeader === undefined) {
        // struct msghdr: name, namelen, iov, iovlen, control, controllen, flags (56 bytes)
        this.recvMsgHeader = offHeap(128);
        new DataView(this.recvMsgHeader.buffer).setUint32(8, SOCKADDR_MAX, true);
      }
      header = addressOf(this.recvMsgHeader);
    } else {
      if (this.recvMsgPlain === undefined) {
        // [msghdr 64][iovec 16][name 32][payload]
        this.recvMsgPlain = offHeap(112 + this.config.readBufferSize);
        this.recvMsgPlainWords = new Uint32Array(this.recvMsgPlain.buffer, 0, 28);
        const base = addressOf(this.recvMsgPlain);
        const view = new DataView(this.recvMsgPlain.buffer);
        view.setBigUint64(0, BigInt(base + 80), true);
        view.setBigUint64(16, BigInt(base + 64), true);
        view.setBigUint64(24, 1n, true);
        view.setBigUint64(64, BigInt(base + 112), true);
        view.setBigUint64(72, BigInt(this.config.readBufferSize), true);
      }
      new DataView(this.recvMsgPlain.buffer).setUint32(8, SOCKADDR_MAX, true);
      header = addressOf(this.recvMsgPlain);
    }
    const w = this.ring.prep(Op.RECVMSG, this.listenFd, header, 1, 0, OP_RECVMSG, 0);
    if (multishot) {
      this.ring.sqe32[w] = Op.RECVMSG | (SqeFlag.BUFFER_SELECT << 8) |
        (Ioprio.RECV_MULTISHOT << 16);
      this.ring.sqe32[w + 10] = BUFFER_GROUP;
    }
    this.recvMsgArmed = true;
  }

  private allocSlot(conn: ConnImpl): void {
    const slot = this.freeSlots.pop() ?? this.slots.length;
    this.slots[slot] = conn;
    conn.slot = slot;
    conn.gen = (conn.gen + 1) >>> 0;
  }

  // --- the loop -----------------------------------------------------------------------------

  override async run(): Promise<void> {
    const yielder = new Yielder(this);
    try {
      if (this.replyFd >= 0) this.drainReplySocket();
      // The turn's work is in synchronous methods: an async function never leaves V8's baseline
      // tier (it cannot be optimized in the middle of its loop), so only the awaits stay here.
      while (!this.stopping) {
        let busy = this.beginTurn();
        if (!busy) {
          for (let i = 0; i < SETTLE_AWAITS && this.dirty.length === 0; i++) await SETTLED;
          if (this.dirty.length > 0) {
            this.flush();
            busy = true;
          }
        }
        const reaped = this.waitAndReap(busy);
        const woken = this.woken;
        this.woken = false;
        if (yielder.due(woken || reaped === 0, this.now)) await yielder.turn();
        // Promise callbacks the handlers queued get a step every turn, even a turn that neither
        // blocks (the settling awaits above) nor yields.
        else await SETTLED;
      }
      this.drain();
    } finally {
      this.closeAll();
    }
  }

  /**
   * Submits what the last turn wrote and runs due timers.
   *
   * @returns Whether the next wait must not block (work is left).
   */
  private beginTurn(): boolean {
    this.flush();
    this.buffers?.publish();
    this.timersDue = this.timers(this.now);
    return this.backlog || this.dirty.length > 0 || this.pendingOpen.length > 0 ||
      this.starving.length > 0;
  }

  /**
   * Enters the kernel (submits, and waits for a completion unless `busy`), then handles the
   * completions.
   *
   * @returns How many completions were handled.
   */
  private waitAndReap(busy: boolean): number {
    let now = this.now;
    // (a promise callback run before the wait may have asked for a sooner tick)
    const wait = Math.min(this.timersDue, this.nextTick - now, this.maxBlock(now));
    const result = this.ring.enter(busy || this.pausedFastSend() ? 0 : 1, wait);
    this.recycleSendSlots();
    this.settleFastSends();
    if (
      result < 0 && result !== -E.ETIME && result !== -E.EINTR && result !== -EBUSY &&
      result !== -E.EAGAIN
    ) {
      throw syscallError("io_uring_enter", -result);
    }
    now = this.now = performance.now();
    const reaped = this.reap(now);
    if (reaped > 0) this.lastEvent = now;
    return reaped;
  }

  /**
   * Whether a fast SEND about to be issued belongs to a connection paused for its outbound buffer
   * (or with received bytes kept while paused): its completion, which posts nothing, is what lets
   * the loop go on with that connection, so the enter that issues it must not wait for one. It
   * waited for the block's timeout: a slow reader on `uring` was served a slice per 50 ms, or per
   * second once no completion had come for 3 s.
   */
  private pausedFastSend(): boolean {
    for (const conn of this.fastSent) if (conn.paused || conn.flags & F_STASHED) return true;
    return false;
  }

  /** The sends io_uring_enter just issued are done with their slots. */
  private recycleSendSlots(): void {
    if (this.submittedSendSlots.length === 0 || this.ring.pending > 0) return;
    const submitted = this.submittedSendSlots;
    while (submitted.length > 0) this.freeSendSlots.push(submitted.pop()!);
  }

  /**
   * The fast SENDs io_uring_enter just issued are over: each completed whole (no completion),
   * short or refused (a completion, already in the CQ). Those completions are taken out of the CQ
   * first (the turn may not reach them, and the next flush reuses the sent buffer), then every
   * connection is settled as its completion would have been.
   */
  private settleFastSends(): void {
    if (this.fastSent.length === 0 || this.ring.pending > 0) return;
    const ring = this.ring;
    const u32 = ring.cqeU32;
    const tail = ring.cqTail();
    for (let head = ring.cqHead(); head !== tail; head = (head + 1) >>> 0) {
      const w = ring.cqe(head);
      const low = u32[w]!;
      if ((low & 15) !== OP_SEND_FAST) continue;
      const conn = this.slots[low >>> 4];
      if (conn !== undefined && conn.gen === u32[w + 1]!) {
        this.fastFailed.set(conn, ring.cqeI32[w + 2]!);
      }
      u32[w] = OP_CANCEL; // handled: the reap skips it
    }
    const sent = this.fastSent;
    this.fastSent = this.fastSettling;
    this.fastSettling = sent;
    // (sends that completed whole post nothing, but they are the loop's work: not idle)
    this.lastEvent = this.now;
    const anyFailed = this.fastFailed.size > 0;
    for (const conn of sent) {
      const failed = anyFailed ? this.fastFailed.get(conn) : undefined;
      if (failed === undefined) this.onSend(conn, conn.flyLen - conn.flyOff);
      else {
        this.fastFailed.delete(conn);
        // Short (bytes sent) or refused for want of room (EAGAIN): the rest waits for room.
        if (failed >= 0 || failed === -E.EAGAIN) conn.flags |= F_SLOW;
        this.onSend(conn, failed === -E.EAGAIN ? 0 : failed);
      }
    }
    // (every turn that sent: a list emptied by `length = 0` allocates its room again)
    emptyKeepingRoom(sent);
  }

  /** Sends what is queued at stop, waiting a bounded time for the sends to complete. */
  private drain(): void {
    const until = performance.now() + 200;
    for (;;) {
      this.flush();
      let sending = false;
      for (const conn of this.conns) if (conn.flags & F_SENDING) sending = true;
      if (!sending && this.ring.pending === 0) return;
      if (performance.now() > until) return;
      this.ring.enter(1, 5);
      this.recycleSendSlots();
      this.settleFastSends();
      this.reap(performance.now());
    }
  }

  private closeAll(): void {
    this.reserve?.release();
    if (this.listenFd >= 0) {
      this.lib.shutdown(this.listenFd, SHUT_RDWR);
      this.lib.close(this.listenFd);
      this.listenFd = -1;
    }
    for (const conn of [...this.conns]) this.finish(conn);
    this.finishPending();
    for (const conn of this.cooling) this.lib.close(conn.backendState as number);
    this.cooling.clear();
    this.dialPool.close();
    this.lib.close(this.wakeFd);
    this.ring.close();
    if (this.replyFd >= 0) this.lib.close(this.replyFd);
    this.replyFd = -1;
    this.buffers?.free(this.lib);
    this.buffers = undefined;
  }

  /** Processes every completion; returns how many. */
  private reap(now: number): number {
    const ring = this.ring;
    const u32 = ring.cqeU32;
    const i32 = ring.cqeI32;
    let head = ring.cqHead();
    const available = (ring.cqTail() - head) >>> 0;
    // A short turn sends replies sooner: the peer works on them while this loop reaps the rest.
    const count = Math.min(available, TURN_BATCH);
    this.backlog = available > count;
    const tail = (head + count) >>> 0;
    while (head !== tail) {
      const w = ring.cqe(head);
      const low = u32[w]!;
      const high = u32[w + 1]!;
      const res = i32[w + 2]!;
      const flags = u32[w + 3]!;
      head = (head + 1) >>> 0;
      switch (low & 15) {
        case OP_RECV:
          this.onRecv(low >>> 4, high, res, flags, now);
          break;
        case OP_SEND: {
          const conn = this.slots[low >>> 4];
          if (conn !== undefined && conn.gen === high) this.onSend(conn, res);
          break;
        }
        case OP_ACCEPT:
          this.onAccept(res, flags, now);
          break;
        case OP_RECVMSG:
          this.onRecvMsg(res, flags);
          break;
        case OP_SENDMSG:
          // With CQE_SKIP_SUCCESS only failures arrive, and their slot is already free again.
          if (!this.skipSendCompletions) this.freeSendSlots.push(this.sendSlots[low >>> 4]!);
          break;
        case OP_CONNECT:
          this.onConnect(low >>> 4, high, res);
          break;
        case OP_WAKE:
          this.woken = true;
          if (!this.stopping) this.armWake();
          break;
        case OP_CANCEL:
          break;
      }
    }
    ring.advance(head);
    return count;
  }

  private onAccept(res: number, flags: number, now: number): void {
    if (!(flags & CqeFlag.MORE)) this.acceptArmed = false;
    if (res >= 0) {
      const fd = res;
      if (this.stopping) {
        this.lib.close(fd);
        return;
      }
      setNoDelay(fd);
      this.acceptWorked();
      const conn = new ConnImpl(this, "tcp", this.handler, false);
      conn.fd = fd;
      conn.lastActive = activityStamp(now);
      this.allocSlot(conn);
      this.opened(conn);
      if (conn.state === State.Open) this.armRecv(conn);
    } else if (res === -E.EINVAL && this.features.multishotAccept) {
      this.features.multishotAccept = false;
      this.logger.warn("multishot accept refused (EINVAL); accepting one at a time");
    } else if (isExhaustion(errnoName(-res))) {
      // Re-armed at once, accept would fail again at once, forever: pause it (see LoopCore).
      if (flags & CqeFlag.MORE) this.cancelAccept();
      if (!this.stopping) this.acceptExhausted(errnoName(-res));
    } else if (res !== -E.ECANCELED && !this.stopping) {
      this.logger.warn("accept failed", { error: errnoName(-res) });
    }
    if (!this.acceptArmed && !this.stopping && this.listenFd >= 0 && this.acceptResumeAt === 0) {
      this.armAccept();
    }
  }

  /** Cancels the armed (multishot) accept. */
  private cancelAccept(): void {
    const w = this.ring.prep(Op.ASYNC_CANCEL, -1, 0, 0, 0, OP_CANCEL, 0);
    this.ring.sqe32[w + 4] = OP_ACCEPT;
    this.ring.sqe32[w + 5] = 0;
  }

  protected override resumeAccept(): void {
    if (this.listenFd < 0) return;
    if (!this.acceptArmed) this.armAccept();
  }

  private onRecv(slot: number, gen: number, res: number, flags: number, now: number): void {
    const buffers = this.buffers;
    const hasBuffer = (flags & CqeFlag.BUFFER) !== 0;
    const bid = flags >>> 16;
    const conn = this.slots[slot];
    if (conn === undefined || conn.gen !== gen) {
      if (hasBuffer) buffers?.recycle(bid);
      return;
    }
    if (!(flags & CqeFlag.MORE)) {
      conn.flags &= ~F_ARMED;
      conn.ops--;
    }
    if (conn.state === State.Closed) {
      if (hasBuffer) buffers?.recycle(bid);
      this.maybeFree(conn);
      return;
    }
    if (res > 0) {
      // Paused (outbound over maxWriteBuffer): what the kernel already completed is kept, not
      // handed to the handler, so the outbound buffer stops growing.
      if (conn.paused || conn.flags & F_STASHED) {
        conn.stash(hasBuffer ? buffers!.view(bid, res) : conn.recvBuffer!.subarray(0, res));
        conn.flags |= F_STASHED;
      } else if (hasBuffer) {
        const at = bid * buffers!.size;
        this.traffic(conn, buffers!.bytes, now, Infinity, at, at + res);
      } else this.traffic(conn, conn.recvBuffer!, now, Infinity, 0, res);
      if (hasBuffer) buffers!.recycle(bid);
      if (conn.state === State.Open && !conn.paused && this.overLimit(conn)) this.pause(conn);
    } else if (res === 0) {
      if (hasBuffer) buffers?.recycle(bid);
      if (conn.datagram) {
        this.traffic(conn, new Uint8Array(0), now);
      } else {
        conn.flags |= F_EOF;
        conn.close();
      }
    } else if (res === -ENOBUFS) {
      this.buffers?.starved();
      this.starving.push(conn);
      return;
    } else if (res === -E.ECANCELED) {
      // Cancelled to pause reading: re-armed when the outbound buffer drains.
    } else if (res === -E.EINVAL && this.features.multishotRecv) {
      this.features.multishotRecv = false;
      this.logger.warn("multishot recv refused (EINVAL); one recv at a time");
    } else {
      this.finish(conn, this.streamError(conn, "recv", -res));
      return;
    }
    if (
      !(conn.flags & (F_ARMED | F_EOF | F_STASHED)) && conn.state === State.Open && !conn.paused &&
      conn.fd >= 0
    ) this.armRecv(conn);
  }

  private pause(conn: ConnImpl): void {
    conn.paused = true;
    if (conn.flags & F_ARMED && this.features.multishotRecv) this.cancelRecv(conn);
  }

  /** Cancels a connection's pending recv (named by its user_data, carried in addr). */
  private cancelRecv(conn: ConnImpl): void {
    const w = this.ring.prep(Op.ASYNC_CANCEL, -1, 0, 0, 0, OP_CANCEL, 0);
    this.ring.sqe32[w + 4] = (conn.slot << 4) | OP_RECV;
    this.ring.sqe32[w + 5] = conn.gen;
  }

  private onSend(conn: ConnImpl, res: number): void {
    conn.ops--;
    conn.flags &= ~F_SENDING;
    if (conn.state === State.Closed) {
      this.maybeFree(conn);
      return;
    }
    if (res < 0) {
      this.finish(conn, this.streamError(conn, "send", -res));
      return;
    }
    conn.flyOff += res;
    const left = conn.outboundBuffered;
    if (left === 0) conn.flags &= ~F_SLOW;
    if (left > 0 || conn.state === State.Closing || conn.paused) {
      this.markDirty(conn);
    } else conn.idleOutbound();
  }

  private onConnect(slot: number, gen: number, res: number): void {
    const conn = this.slots[slot];
    if (conn === undefined || conn.gen !== gen) return;
    conn.ops--;
    if (conn.state === State.Closed) {
      this.maybeFree(conn);
      return;
    }
    if (res < 0) {
      const to = conn.remoteAddress;
      this.finish(conn, syscallError(`connect(${to.address}:${to.port})`, -res));
      return;
    }
    this.opened(conn);
    if (conn.state === State.Open) this.armRecv(conn);
    this.markDirty(conn);
  }

  // --- sending and closing ------------------------------------------------------------------

  private flush(): void {
    if (this.pendingOpen.length > 0) this.openPending();
    if (this.starving.length > 0) {
      const starving = this.starving;
      this.starving = [];
      for (const conn of starving) {
        if (conn.state === State.Open && !(conn.flags & F_ARMED) && !conn.paused) {
          this.armRecv(conn);
        }
      }
    }
    if (!this.recvMsgArmed && this.listenFd >= 0 && this.config.network === "udp") {
      this.armRecvMsg();
    }
    this.drainDirty(this.flushConnBound);
  }

  private readonly flushConnBound = (conn: ConnImpl) => this.flushConn(conn);

  private flushConn(conn: ConnImpl): void {
    if (conn.datagrams !== null) {
      // A connected upstream socket: sent at once, like a full socket buffer drops on EAGAIN.
      for (const datagram of conn.datagrams) sendConnected(conn.fd, datagram);
      // (a pool socket sends a datagram per query: its list keeps its room)
      emptyKeepingRoom(conn.datagrams);
    } else if (!(conn.flags & F_SENDING) && conn.takeOutbound() > 0) {
      const fast = this.fastSends && !(conn.flags & F_SLOW);
      const w = this.ring.prep(
        Op.SEND,
        conn.fd,
        conn.flyAddress + conn.flyOff,
        conn.flyLen - conn.flyOff,
        0,
        (conn.slot << 4) | (fast ? OP_SEND_FAST : OP_SEND),
        conn.gen,
      );
      if (fast) {
        // MSG_WAITALL makes a short send a failure, so that it posts its completion.
        this.ring.sqe32[w] = Op.SEND | (SqeFlag.CQE_SKIP_SUCCESS << 8);
        this.ring.sqe32[w + 7] = MSG_NOSIGNAL | MSG_DONTWAIT | MSG_WAITALL;
        this.fastSent.push(conn);
      } else {
        this.ring.sqe32[w + 7] = MSG_NOSIGNAL;
      }
      conn.flags |= F_SENDING;
      conn.ops++;
    }
    if (conn.paused && !this.overLimit(conn)) {
      conn.paused = false;
      if (conn.flags & F_STASHED) this.markDirty(conn);
      else if (!(conn.flags & (F_ARMED | F_EOF)) && conn.state === State.Open) this.armRecv(conn);
    } else if (!conn.paused && conn.flags & F_STASHED && conn.state === State.Open) {
      // Hand what was kept while paused to the handler a read's worth per turn, so the
      // outbound buffer stays near maxWriteBuffer.
      if (conn.inboundBuffered > 0) {
        this.traffic(conn, EMPTY, performance.now(), this.sliceSize);
        if (conn.state === State.Open && this.overLimit(conn)) conn.paused = true;
      }
      if (conn.inboundBuffered === 0 || conn.state !== State.Open) {
        conn.flags &= ~F_STASHED;
        if (!(conn.flags & (F_ARMED | F_EOF)) && conn.state === State.Open && !conn.paused) {
          this.armRecv(conn);
        }
      }
    }
    if (conn.state === State.Closing && !(conn.flags & F_SENDING) && conn.outboundBuffered === 0) {
      this.finish(conn);
    }
  }

  protected override finish(conn: ConnImpl, error?: Error): void {
    if (conn.state === State.Closed) return;
    if (conn.fd >= 0) {
      // A pending recv holds the socket open after close(2): cancel it (UDP sockets ignore
      // shutdown), and shut TCP down so the peer sees the end at once.
      if (conn.flags & F_ARMED) this.cancelRecv(conn);
      if (conn.datagram && error === undefined && conn.closeError === undefined && !this.stopping) {
        // A dialed UDP socket that ended well is kept for the next dial: disconnected now (its
        // port is gone, so a late reply reaches nothing), pooled once its recv has completed
        // (`maybeFree`), so that no completion of this connection can reach the next.
        if (this.dialPool.disconnect(conn.fd)) {
          conn.backendState = conn.fd;
          this.cooling.add(conn);
        }
      } else {
        if (conn.ops > 0 && conn.network === "tcp") this.lib.shutdown(conn.fd, SHUT_RDWR);
        this.lib.close(conn.fd);
      }
      conn.fd = -1;
    }
    this.closed(conn, error);
    this.maybeFree(conn);
  }

  private maybeFree(conn: ConnImpl): void {
    if (conn.state !== State.Closed || conn.ops > 0) return;
    if (typeof conn.backendState === "number") {
      this.dialPool.park(conn.backendState, conn.remoteAddress.family);
      conn.backendState = undefined;
      this.cooling.delete(conn);
    }
    if (conn.slot > 0 && this.slots[conn.slot] === conn) {
      this.slots[conn.slot] = undefined;
      this.freeSlots.push(conn.slot);
    }
    conn.release(true);
  }

  // --- dialing ------------------------------------------------------------------------------

  protected override readonly connectsAtOnce = false;
  protected override readonly endOnSendError = false;

  protected override connect(conn: ConnImpl, address: SocketAddress): void {
    this.allocSlot(conn);
    super.connect(conn, address);
  }

  protected override adoptDialed(conn: ConnImpl, socket: DialSocket | undefined): void {
    if (socket !== undefined) conn.backendState = socket.sockaddr; // the CONNECT reads it
  }

  protected override watchDialed(conn: ConnImpl, socket: DialSocket): void {
    if (conn.network === "udp") return;
    this.ring.prep(
      Op.CONNECT,
      socket.fd,
      addressOf(socket.sockaddr),
      0,
      socket.length,
      (conn.slot << 4) | OP_CONNECT,
      conn.gen,
    );
    conn.ops++;
  }

  protected override dialOpened(conn: ConnImpl): void {
    if (conn.state === State.Open) this.armRecv(conn);
  }

  override addressOf(conn: ConnImpl, which: "local" | "remote"): SocketAddress {
    return socketAddress(conn.fd, which);
  }

  // --- UDP listener -------------------------------------------------------------------------

  private onRecvMsg(res: number, flags: number): void {
    if (!(flags & CqeFlag.MORE)) this.recvMsgArmed = false;
    const hasBuffer = (flags & CqeFlag.BUFFER) !== 0;
    const bid = flags >>> 16;
    if (res < 0) {
      if (res === -E.EINVAL && this.features.multishotRecv) {
        this.features.multishotRecv = false;
        this.logger.warn("multishot recvmsg refused (EINVAL); one recvmsg at a time");
      } else if (res === -ENOBUFS) {
        this.buffers?.starved();
      } else if (res !== -E.ECANCELED && !this.stopping) {
        this.logger.debug("recvmsg failed", { error: errnoName(-res) });
      }
      return;
    }
    if (this.stopping) {
      if (hasBuffer) this.buffers?.recycle(bid);
      return;
    }
    if (hasBuffer) {
      const buffers = this.buffers!;
      const at = bid * buffers.size;
      const word = at >>> 2;
      const nameLength = buffers.words[word]!;
      const payload = buffers.words[word + 2]!;
      const start = RECVMSG_OUT + SOCKADDR_MAX;
      const from = at + start;
      const conn = new PacketConn(
        this,
        this.listenFd,
        buffers.bytes,
        from,
        from + Math.min(payload, res - start),
      );
      conn.readPeer(buffers.words, word + (RECVMSG_OUT >> 2), Math.min(nameLength, SOCKADDR_MAX));
      this.packet(conn);
      buffers.recycle(bid);
    } else {
      const words = this.recvMsgPlainWords!;
      const conn = new PacketConn(this, this.listenFd, this.recvMsgPlain!.subarray(112, 112 + res));
      conn.readPeer(words, 20, Math.min(words[2]!, SOCKADDR_MAX));
      this.packet(conn);
    }
  }

  override sendDatagram(conn: PacketConn, bytes: Uint8Array): void {
    let slot = this.freeSendSlots.pop();
    if (slot === undefined) {
      if (this.sendSlots.length >= MAX_SEND_SLOTS) return; // like a full socket buffer: dropped
      // [msghdr 64][iovec 16][name 32], the payload in its own buffer
      const header = offHeap(128);
      const words = new Uint32Array(header.buffer, 0, 32);
      const address = addressOf(header);
      slot = { header, words, address, data: EMPTY, index: this.sendSlots.length };
      this.sendSlots.push(slot);
      setAddress(words, 0, address + 80);
      setAddress(words, 4, address + 64);
      words[6] = 1;
    }
    if (slot.data.length < bytes.length) {
      slot.data = offHeap(Math.max(2048, bytes.length));
      setAddress(slot.words, 16, addressOf(slot.data));
    }
    slot.data.set(bytes);
    slot.words[2] = conn.writePeer(slot.words, 20);
    slot.words[18] = bytes.length;
    const w = this.ring.prep(
      Op.SENDMSG,
      this.replyFd >= 0 ? this.replyFd : this.listenFd,
      slot.address,
      1,
      0,
      (slot.index << 4) | OP_SENDMSG,
      0,
    );
    if (this.skipSendCompletions) {
      // MSG_DONTWAIT makes the send final when io_uring_enter issues it (a full socket buffer
      // drops the datagram, as UDP may), so the slot is reusable once that call returns and a
      // successful send needs no completion at all.
      this.ring.sqe32[w] = Op.SENDMSG | (SqeFlag.CQE_SKIP_SUCCESS << 8);
      this.ring.sqe32[w + 7] = MSG_NOSIGNAL | MSG_DONTWAIT;
      this.submittedSendSlots.push(slot);
    } else {
      this.ring.sqe32[w + 7] = MSG_NOSIGNAL;
    }
  }
}
