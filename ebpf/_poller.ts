/**
 * Waits for file descriptors to become readable without blocking Deno's event loop: an epoll
 * instance whose `epoll_wait` runs on a worker thread (`nonblocking: true` FFI), plus an eventfd
 * that `wake()` uses to end a wait early (on close).
 *
 * @module
 */
import { setImmediate } from "node:timers";
import { errno, libc } from "./_ffi.ts";
import { BpfError } from "./errors.ts";

const EPOLL_CTL_ADD = 1;
const EPOLLIN = 0x001;
const EPOLL_CLOEXEC = 0o2000000;
const EFD_CLOEXEC = 0o2000000;
const EFD_NONBLOCK = 0o4000;
const WAKE_TAG = 0xffffffff;

/** An epoll set with a wake-up eventfd. */
export class Poller {
  readonly #epoll: number;
  readonly #wake: number;
  readonly #events = new Uint8Array(12 * 64);
  #waiting: Promise<number> | undefined;
  #closed = false;

  /** Creates the epoll instance and its eventfd. */
  constructor() {
    const epoll = libc().epoll_create1(EPOLL_CLOEXEC);
    if (epoll < 0) throw BpfError.fromErrno("Create epoll instance", -errno());
    const wake = libc().eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (wake < 0) {
      libc().close(epoll);
      throw BpfError.fromErrno("Create eventfd", -errno());
    }
    this.#epoll = epoll;
    this.#wake = wake;
    this.add(wake, WAKE_TAG);
  }

  /**
   * Watches a file descriptor for readability.
   *
   * @param fd The descriptor.
   * @param tag Reported back by `wait` when it is ready.
   */
  add(fd: number, tag: number): void {
    const event = new Uint8Array(12);
    const view = new DataView(event.buffer);
    view.setUint32(0, EPOLLIN, true);
    view.setUint32(4, tag, true);
    if (libc().epoll_ctl(this.#epoll, EPOLL_CTL_ADD, fd, event) < 0) {
      throw BpfError.fromErrno(`Watch fd ${fd} with epoll`, -errno());
    }
  }

  /**
   * Waits until a watched descriptor is readable, on a worker thread.
   *
   * @param timeoutMs The longest wait.
   * @returns The tags of the ready descriptors (empty on timeout or wake-up).
   */
  async wait(timeoutMs: number): Promise<number[]> {
    if (this.#closed) return [];
    this.#waiting = libc().epoll_wait_blocking(this.#epoll, this.#events, 64, timeoutMs);
    let count: number;
    try {
      count = await this.#waiting;
    } finally {
      this.#waiting = undefined;
    }
    if (this.#closed) {
      this.#release();
      return [];
    }
    // errno belongs to the worker thread that waited; the only failure here is EINTR.
    if (count < 0) return [];
    const view = new DataView(this.#events.buffer);
    const tags: number[] = [];
    for (let i = 0; i < count; i++) {
      const tag = view.getUint32(i * 12 + 4, true);
      if (tag === WAKE_TAG) libc().read(this.#wake, new Uint8Array(8), 8n);
      else tags.push(tag);
    }
    return tags;
  }

  /**
   * Returns the ready tags without waiting.
   *
   * @returns The tags of the ready descriptors.
   */
  poll(): number[] {
    if (this.#closed) return [];
    const count = libc().epoll_wait(this.#epoll, this.#events, 64, 0);
    const view = new DataView(this.#events.buffer);
    const tags: number[] = [];
    for (let i = 0; i < count; i++) {
      const tag = view.getUint32(i * 12 + 4, true);
      if (tag !== WAKE_TAG) tags.push(tag);
    }
    return tags;
  }

  /** Ends a wait in progress early. */
  wake(): void {
    const one = new Uint8Array(8);
    one[0] = 1;
    libc().write(this.#wake, one, 8n);
  }

  /** Whether a wait is in progress. */
  get waiting(): Promise<number> | undefined {
    return this.#waiting;
  }

  /** Wakes any wait and closes the descriptors (after the wait returns, if one is running). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#waiting !== undefined) this.wake();
    else this.#release();
  }

  #release(): void {
    libc().close(this.#wake);
    libc().close(this.#epoll);
  }
}

/** Maps memory shared with the kernel; returns `null` on failure. */
export function mmap(
  length: number,
  writable: boolean,
  fd: number,
  offset: number,
): Deno.PointerObject {
  const PROT_READ = 1;
  const PROT_WRITE = 2;
  const MAP_SHARED = 1;
  const pointer = libc().mmap(
    null,
    BigInt(length),
    writable ? PROT_READ | PROT_WRITE : PROT_READ,
    MAP_SHARED,
    fd,
    BigInt(offset),
  );
  if (pointer === null || Deno.UnsafePointer.value(pointer) === 0xffffffffffffffffn) {
    throw BpfError.fromErrno(`Map ${length} bytes of fd ${fd} at offset ${offset}`, -errno());
  }
  return pointer;
}

/** Unmaps memory from {@linkcode mmap}. */
export function munmap(pointer: Deno.PointerObject, length: number): void {
  libc().munmap(pointer, BigInt(length));
}

/**
 * Lets timers and I/O run, then continues: `setImmediate`, because nested `setTimeout(0)` calls
 * are clamped to 4 ms each.
 */
export function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
