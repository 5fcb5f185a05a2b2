/**
 * A raw io_uring instance driven from TypeScript: `io_uring_setup`, `io_uring_enter` and
 * `io_uring_register` through syscall(2), the SQ and CQ rings mmapped and read and written as
 * typed arrays, and a provided-buffer ring. Linux x86-64 and arm64 (the syscall numbers 425-427
 * are the same on both).
 *
 * @module
 */
import { errnoName } from "@triad/core";
import { errno, type Libc, libc, syscallError } from "../../_ffi.ts";
import type { NetloopError } from "../../errors.ts";

const SYS_SETUP = 425;
/** sizeof(struct io_uring_getevents_arg), as a pointer-typed value (see _ffi.ts). */
const EXT_ARG_SIZE = Deno.UnsafePointer.create(24n);
const SYS_ENTER = 426;
const SYS_REGISTER = 427;

/** Opcodes used here (include/uapi/linux/io_uring.h). */
export const Op = {
  NOP: 0,
  POLL_ADD: 6,
  SENDMSG: 9,
  RECVMSG: 10,
  ACCEPT: 13,
  ASYNC_CANCEL: 14,
  CONNECT: 16,
  CLOSE: 19,
  READ: 22,
  SEND: 26,
  RECV: 27,
  SHUTDOWN: 34,
  SOCKET: 45,
  SEND_ZC: 47,
  SENDMSG_ZC: 48,
} as const;

/** Setup flags. */
export const Setup = {
  CQSIZE: 1 << 3,
  CLAMP: 1 << 4,
  SUBMIT_ALL: 1 << 7,
  COOP_TASKRUN: 1 << 8,
  SINGLE_ISSUER: 1 << 12,
  DEFER_TASKRUN: 1 << 13,
  NO_SQARRAY: 1 << 16,
} as const;

/** Feature bits reported by io_uring_setup. */
export const Feature = {
  SINGLE_MMAP: 1 << 0,
  NODROP: 1 << 1,
  EXT_ARG: 1 << 8,
  CQE_SKIP: 1 << 11,
} as const;

/** SQE flags. */
export const SqeFlag = { BUFFER_SELECT: 1 << 5, CQE_SKIP_SUCCESS: 1 << 6 } as const;
/** CQE flags. */
export const CqeFlag = { BUFFER: 1 << 0, MORE: 1 << 1 } as const;
/** ioprio bits for accept and recv. */
export const Ioprio = { ACCEPT_MULTISHOT: 1 << 0, RECV_MULTISHOT: 1 << 1 } as const;

const ENTER_GETEVENTS = 1 << 0;
const ENTER_EXT_ARG = 1 << 3;
const ENTER_REGISTERED_RING = 1 << 4;
const REGISTER_PROBE = 8;
const REGISTER_RING_FDS = 20;
const REGISTER_PBUF_RING = 22;
const OFF_SQ_RING = 0;
const OFF_CQ_RING = 0x8000000;
const OFF_SQES = 0x10000000;
const PROT_RW = 0x1 | 0x2;
const MAP_SHARED = 0x01;
const MAP_PRIVATE = 0x02;
const MAP_ANONYMOUS = 0x20;
const MAP_POPULATE = 0x8000;

function fail(what: string, code: number): NetloopError {
  return syscallError(what, code);
}

/** A region of memory from mmap(2), viewed from JS. */
class Mapping {
  readonly buffer: ArrayBuffer;
  constructor(readonly pointer: Deno.PointerObject, readonly length: number) {
    this.buffer = Deno.UnsafePointerView.getArrayBuffer(pointer, length);
  }

  /** The address as a number. */
  get address(): number {
    return Number(Deno.UnsafePointer.value(this.pointer));
  }

  /**
   * Maps memory.
   *
   * @param lib libc.
   * @param length Bytes.
   * @param fd A ring fd, or -1 for anonymous memory.
   * @param offset The ring region (IORING_OFF_*), 0 for anonymous memory.
   * @returns The mapping.
   */
  static map(lib: Libc, length: number, fd: number, offset: number): Mapping {
    const flags = fd < 0 ? MAP_PRIVATE | MAP_ANONYMOUS : MAP_SHARED | MAP_POPULATE;
    const pointer = lib.mmap(null, length, PROT_RW, flags, fd, offset);
    const value = Deno.UnsafePointer.value(pointer);
    if (pointer === null || BigInt.asIntN(64, BigInt(value)) === -1n) {
      throw fail(`mmap(${length} bytes, offset 0x${offset.toString(16)})`, errno());
    }
    return new Mapping(pointer, length);
  }

  /** Unmaps it. */
  unmap(lib: Libc): void {
    lib.munmap(this.pointer, this.length);
  }
}

/** Options of {@linkcode Ring.create}. */
interface RingOptions {
  entries: number;
  cqEntries: number;
  /** Setup flag sets to try in order (the first the kernel accepts wins). */
  flagSets: number[];
}

/** An io_uring instance. */
export class Ring {
  readonly lib: Libc;
  readonly entries: number;
  readonly features: number;
  readonly flags: number;
  private readonly maps: Mapping[] = [];
  private readonly sq32: Uint32Array;
  private readonly sqHeadIndex: number;
  private readonly sqTailIndex: number;
  private readonly sqMask: number;
  /** The SQEs, 16 words each. */
  readonly sqe32: Uint32Array;
  private readonly cq32: Uint32Array;
  /** The CQEs viewed as signed words (for `res`). */
  readonly cqeI32: Int32Array;
  /** The CQEs as unsigned words (user_data halves, flags). */
  readonly cqeU32: Uint32Array;
  private readonly cqHeadIndex: number;
  private readonly cqTailIndex: number;
  readonly cqMask: number;
  private readonly cqesWord: number;
  private sqTail = 0;
  /**
   * The kernel's SQ head as of the last `enter`: without SQPOLL the kernel takes SQEs only inside
   * io_uring_enter, so it is read there once, not with an atomic load for every SQE.
   */
  private sqHead = 0;
  private enterFd: number;
  private enterFlags = 0;
  private readonly waitArgs = new BigUint64Array(new ArrayBuffer(128));
  private readonly timespec = new BigInt64Array(new ArrayBuffer(128));
  private readonly timespecWords = new Uint32Array(this.timespec.buffer);
  /** Whether the ring fd is registered (IORING_REGISTER_RING_FDS). */
  registeredRing = false;

  private constructor(readonly fd: number, params: DataView, lib: Libc, flags: number) {
    this.lib = lib;
    this.flags = flags;
    this.enterFd = fd;
    const sqEntries = params.getUint32(0, true);
    const cqEntries = params.getUint32(4, true);
    this.entries = sqEntries;
    this.features = params.getUint32(20, true);
    const sq = (field: number) => params.getUint32(40 + field * 4, true);
    const cq = (field: number) => params.getUint32(80 + field * 4, true);
    // sq_off: head, tail, ring_mask, ring_entries, flags, dropped, array; cq_off: head, tail,
    // ring_mask, ring_entries, overflow, cqes, flags.
    const noArray = (flags & Setup.NO_SQARRAY) !== 0;
    const sqSize = noArray ? sq(4) + 64 : sq(6) + sqEntries * 4;
    const cqSize = cq(5) + cqEntries * 16;
    const single = (this.features & Feature.SINGLE_MMAP) !== 0;
    const sqMap = Mapping.map(lib, single ? Math.max(sqSize, cqSize) : sqSize, fd, OFF_SQ_RING);
    this.maps.push(sqMap);
    const cqMap = single ? sqMap : Mapping.map(lib, cqSize, fd, OFF_CQ_RING);
    if (!single) this.maps.push(cqMap);
    const sqeMap = Mapping.map(lib, sqEntries * 64, fd, OFF_SQES);
    this.maps.push(sqeMap);
    this.sq32 = new Uint32Array(sqMap.buffer);
    this.sqHeadIndex = sq(0) / 4;
    this.sqTailIndex = sq(1) / 4;
    this.sqMask = this.sq32[sq(2) / 4]!;
    if (!noArray) {
      // Identity indirection: SQEs are always filled in ring order.
      const array = sq(6) / 4;
      for (let i = 0; i < sqEntries; i++) this.sq32[array + i] = i;
    }
    this.sqTail = this.sq32[this.sqTailIndex]!;
    this.sqHead = this.sq32[this.sqHeadIndex]!;
    this.sqe32 = new Uint32Array(sqeMap.buffer);
    this.cq32 = new Uint32Array(cqMap.buffer);
    this.cqHeadIndex = cq(0) / 4;
    this.cqTailIndex = cq(1) / 4;
    this.cqMask = this.cq32[cq(2) / 4]!;
    this.cqesWord = cq(5) / 4;
    this.cqeI32 = new Int32Array(cqMap.buffer);
    this.cqeU32 = this.cq32;
    // struct io_uring_getevents_arg { u64 sigmask; u32 sigmask_sz; u32 pad; u64 ts; }
    this.waitArgs[2] = BigInt(
      Number(Deno.UnsafePointer.value(Deno.UnsafePointer.of(this.timespec))),
    );
  }

  /**
   * Sets up a ring, trying each flag set in turn (newer kernels accept more).
   *
   * @param options Sizes and flag sets.
   * @returns The ring.
   * @throws {NetloopError} `syscall` when no flag set works (EPERM: io_uring disabled).
   */
  static create(options: RingOptions): Ring {
    const lib = libc();
    let lastError = 0;
    for (const flags of options.flagSets) {
      const params = new Uint8Array(new ArrayBuffer(128));
      const view = new DataView(params.buffer);
      view.setUint32(8, flags | Setup.CQSIZE, true);
      view.setUint32(4, options.cqEntries, true);
      const fd = lib.sys_uring_setup(SYS_SETUP, options.entries, params);
      if (fd >= 0) {
        try {
          return new Ring(fd, view, lib, flags);
        } catch (error) {
          lib.close(fd);
          throw error;
        }
      }
      lastError = errno();
      if (lastError !== 22) break; // only EINVAL means "try fewer flags"
    }
    throw fail("io_uring_setup", lastError);
  }

  /** Registers the ring fd so io_uring_enter skips the fd lookup (Linux 5.18+). */
  registerRingFd(): boolean {
    const update = new Uint32Array(new ArrayBuffer(128));
    update[0] = 0xffffffff; // offset: let the kernel pick
    update[2] = this.fd;
    const n = this.register(REGISTER_RING_FDS, update, 1);
    if (n !== 1) return false;
    this.enterFd = update[0]!;
    this.enterFlags |= ENTER_REGISTERED_RING;
    this.registeredRing = true;
    return true;
  }

  /**
   * Calls io_uring_register.
   *
   * @returns The result, or -errno.
   */
  register(opcode: number, arg: ArrayBufferView, count: number): number {
    const bytes = new Uint8Array(arg.buffer, arg.byteOffset, arg.byteLength);
    const result = this.lib.sys_uring_register(SYS_REGISTER, this.fd, opcode, bytes, count);
    return result < 0 ? -errno() : result;
  }

  /**
   * Returns the opcodes the kernel supports (IORING_REGISTER_PROBE).
   *
   * @returns The supported opcodes, and the last opcode the kernel knows.
   */
  probe(): { supported: Set<number>; lastOp: number } {
    const bytes = new Uint8Array(new ArrayBuffer(16 + 256 * 8));
    const result = this.register(REGISTER_PROBE, bytes, 256);
    if (result < 0) throw fail("io_uring_register(PROBE)", -result);
    const supported = new Set<number>();
    const count = bytes[1]!;
    for (let i = 0; i < count; i++) {
      const at = 16 + i * 8;
      if ((bytes[at + 2]! | (bytes[at + 3]! << 8)) & 1) supported.add(bytes[at]!);
    }
    return { supported, lastOp: bytes[0]! };
  }

  /** SQEs written since the last submit. */
  get pending(): number {
    return (this.sqTail - this.sqHead) >>> 0;
  }

  /**
   * Takes the next free SQE, zeroed, submitting first when the ring is full.
   *
   * @returns The SQE's first word index in `sqe32`.
   */
  sqe(): number {
    if (this.pending >= this.entries) this.enter(0, 0);
    const at = (this.sqTail & this.sqMask) * 16;
    // Sixteen stores rather than fill(): TypedArray.prototype.fill is a C++ builtin, a call out
    // of the optimized code for every SQE.
    const s = this.sqe32;
    s[at] = 0;
    s[at + 1] = 0;
    s[at + 2] = 0;
    s[at + 3] = 0;
    s[at + 4] = 0;
    s[at + 5] = 0;
    s[at + 6] = 0;
    s[at + 7] = 0;
    s[at + 8] = 0;
    s[at + 9] = 0;
    s[at + 10] = 0;
    s[at + 11] = 0;
    s[at + 12] = 0;
    s[at + 13] = 0;
    s[at + 14] = 0;
    s[at + 15] = 0;
    // The tail is published once, by enter(): the kernel reads SQEs only there.
    this.sqTail = (this.sqTail + 1) >>> 0;
    return at;
  }

  /**
   * Fills an SQE.
   *
   * @returns The SQE word index, for further fields.
   */
  prep(
    opcode: number,
    fd: number,
    address: number,
    length: number,
    offset: number,
    userLow: number,
    userHigh: number,
  ): number {
    const w = this.sqe();
    const s = this.sqe32;
    s[w] = opcode;
    s[w + 1] = fd;
    s[w + 2] = offset >>> 0;
    s[w + 3] = Math.floor(offset / 4294967296);
    s[w + 4] = address >>> 0;
    s[w + 5] = Math.floor(address / 4294967296);
    s[w + 6] = length;
    s[w + 8] = userLow;
    s[w + 9] = userHigh;
    return w;
  }

  /**
   * Submits pending SQEs and waits for at least `minComplete` completions or the timeout.
   *
   * @param minComplete Completions to wait for (0: just submit and reap).
   * @param timeoutMs The longest wait.
   * @returns The number submitted, or -errno (ETIME and EINTR are normal).
   */
  enter(minComplete: number, timeoutMs: number): number {
    let flags = this.enterFlags | ENTER_GETEVENTS;
    let arg: BigUint64Array | null = null;
    let argSize: Deno.PointerValue = null;
    if (minComplete > 0) {
      const ms = Math.max(0, timeoutMs);
      // struct __kernel_timespec { i64 tv_sec; i64 tv_nsec; } as 32-bit halves (no BigInt).
      this.timespecWords[0] = Math.floor(ms / 1000);
      this.timespecWords[2] = Math.floor((ms % 1000) * 1e6);
      flags |= ENTER_EXT_ARG;
      arg = this.waitArgs;
      argSize = EXT_ARG_SIZE;
    }
    // (read by the kernel in this thread's system call below: no fence needed)
    this.sq32[this.sqTailIndex] = this.sqTail;
    const result = this.lib.sys_uring_enter(
      SYS_ENTER,
      this.enterFd,
      this.pending,
      minComplete,
      flags,
      arg,
      argSize,
    );
    this.sqHead = this.sq32[this.sqHeadIndex]!;
    return result < 0 ? -errno() : result;
  }

  /** The CQ head and tail: completions are in [head, tail). */
  cqHead(): number {
    return this.cq32[this.cqHeadIndex]!;
  }

  /** The CQ tail (acquire). */
  cqTail(): number {
    return Atomics.load(this.cq32, this.cqTailIndex);
  }

  /** Marks completions up to `head` as consumed. */
  advance(head: number): void {
    Atomics.store(this.cq32, this.cqHeadIndex, head >>> 0);
  }

  /** The word index of CQE number `i` (unmasked). */
  cqe(i: number): number {
    return this.cqesWord + (i & this.cqMask) * 4;
  }

  /** Unmaps the rings and closes the fd. */
  close(): void {
    this.lib.close(this.fd);
    for (const map of this.maps) map.unmap(this.lib);
    this.maps.length = 0;
  }
}

/** Fewest buffers a {@linkcode BufferRing} offers the kernel at once. */
const MIN_OFFERED = 32;
/** Turns of light use (under an eighth of the offer returned) before the offer halves. */
const SHRINK_AFTER = 1024;

/**
 * A provided-buffer ring (IORING_REGISTER_PBUF_RING, Linux 5.19+) and its buffers.
 *
 * The kernel takes buffers in the order they were offered, so offering all of them would send
 * every receive to the least recently used buffer: with 512 of 32 KiB that is 16 MiB, more than
 * the core's cache, and each 16 KiB receive cost about 1 µs more in the kernel's copy than into
 * a buffer in cache. So only as many are offered as recent turns needed (at least MIN_OFFERED,
 * doubled when a turn hands back half of the offer or the kernel runs out), and the buffers handed
 * back most recently, still in cache, are offered first.
 */
export class BufferRing {
  private readonly ring: Mapping;
  private readonly data: Mapping;
  private readonly ring32: Uint32Array;
  private readonly ring16: Uint16Array;
  private readonly mask: number;
  private tail = 0;
  /** Buffers not offered, the most recently handed back on top. */
  private readonly spare: Uint16Array;
  private spareCount = 0;
  /** Buffers offered and not yet handed back. */
  private offered = 0;
  /** Handed back since the last `publish`. */
  private returned = 0;
  /** How many to keep offered. */
  private target: number;
  private lightTurns = 0;
  /** All buffers, back to back. */
  readonly bytes: Uint8Array;
  /** The same memory as 32-bit words (for headers at buffer starts). */
  readonly words: Uint32Array;
  private readonly dataAddress: number;

  private constructor(
    ring: Mapping,
    data: Mapping,
    readonly count: number,
    readonly size: number,
    readonly group: number,
  ) {
    this.ring = ring;
    this.data = data;
    this.ring32 = new Uint32Array(ring.buffer);
    this.ring16 = new Uint16Array(ring.buffer);
    this.mask = count - 1;
    this.bytes = new Uint8Array(data.buffer);
    this.words = new Uint32Array(data.buffer);
    this.dataAddress = data.address;
    this.spare = new Uint16Array(count);
    for (let bid = count - 1; bid >= 0; bid--) this.spare[this.spareCount++] = bid;
    this.target = Math.min(count, MIN_OFFERED);
    this.publish();
  }

  /**
   * Maps the buffers and registers them with the ring.
   *
   * @returns The buffer ring, or the errno name when the kernel refuses.
   */
  static create(ring: Ring, count: number, size: number, group: number): BufferRing | string {
    const lib = ring.lib;
    const entries = Mapping.map(lib, Math.max(4096, count * 16), -1, 0);
    const data = Mapping.map(lib, count * size, -1, 0);
    // struct io_uring_buf_reg { u64 ring_addr; u32 ring_entries; u16 bgid; u16 flags; u64 resv[3]; }
    const reg = new DataView(new ArrayBuffer(128));
    reg.setBigUint64(0, BigInt(entries.address), true);
    reg.setUint32(8, count, true);
    reg.setUint16(12, group, true);
    const result = ring.register(REGISTER_PBUF_RING, reg, 1);
    if (result < 0) {
      entries.unmap(lib);
      data.unmap(lib);
      return errnoName(-result);
    }
    return new BufferRing(entries, data, count, size, group);
  }

  /** Takes back buffer `bid` from a completion (offered again by `publish`). */
  recycle(bid: number): void {
    this.spare[this.spareCount++] = bid;
    this.returned++;
  }

  /** The kernel ran out of buffers (a receive failed with ENOBUFS): offer every one. */
  starved(): void {
    this.target = this.count;
    this.lightTurns = 0;
  }

  /** Offers the kernel buffers up to the target, the most recently handed back first. */
  publish(): void {
    const returned = this.returned;
    this.returned = 0;
    this.offered -= returned;
    const target = this.target;
    if (returned * 2 > target) {
      this.target = Math.min(this.count, target * 2);
      this.lightTurns = 0;
    } else if (returned * 8 < target && target > MIN_OFFERED) {
      if (++this.lightTurns >= SHRINK_AFTER) {
        this.target = Math.max(MIN_OFFERED, target >>> 1);
        this.lightTurns = 0;
      }
    } else this.lightTurns = 0;
    const n = Math.min(this.target - this.offered, this.spareCount);
    if (n <= 0) return;
    const ring32 = this.ring32;
    const mask = this.mask;
    let tail = this.tail;
    for (let i = 0; i < n; i++) {
      const bid = this.spare[--this.spareCount]!;
      const at = (tail & mask) * 4;
      const address = this.dataAddress + bid * this.size;
      ring32[at] = address >>> 0;
      ring32[at + 1] = Math.floor(address / 4294967296);
      ring32[at + 2] = this.size;
      this.ring16[at * 2 + 6] = bid;
      tail = (tail + 1) & 0xffff;
    }
    this.tail = tail;
    this.offered += n;
    Atomics.store(this.ring16, 7, tail);
  }

  /** A view of buffer `bid`'s first `length` bytes. */
  view(bid: number, length: number): Uint8Array {
    return this.bytes.subarray(bid * this.size, bid * this.size + length);
  }

  /** Unmaps the memory (after the ring is closed). */
  free(lib: Libc): void {
    this.ring.unmap(lib);
    this.data.unmap(lib);
  }
}
