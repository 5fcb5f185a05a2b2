/**
 * The one place netloop opens libc: socket calls, epoll, mmap and raw syscalls (io_uring), declared
 * with their C signatures. Opened lazily, so the portable backend never needs `--allow-ffi`.
 *
 * @module
 */
import { Errno, errnoName } from "@triad/core";
import { NetloopError } from "./errors.ts";

const SYMBOLS = {
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  bind: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  listen: { parameters: ["i32", "i32"], result: "i32" },
  accept4: { parameters: ["i32", "buffer", "buffer", "i32"], result: "i32" },
  connect: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  setsockopt: { parameters: ["i32", "i32", "i32", "buffer", "u32"], result: "i32" },
  getsockopt: { parameters: ["i32", "i32", "i32", "buffer", "buffer"], result: "i32" },
  getsockname: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  getpeername: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  shutdown: { parameters: ["i32", "i32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  /** Called as `fcntl(fd, cmd, int)` only (variadic in C; integer arguments pass the same way). */
  fcntl: { parameters: ["i32", "i32", "i32"], result: "i32" },
  // 32-bit sizes and buffer/pointer arguments keep these on Deno's fast FFI path (64-bit integer
  // arguments cost several hundred nanoseconds more per call).
  read: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  write: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  writeBuffer: { name: "write", parameters: ["i32", "buffer", "u32"], result: "i32" },
  sendto: { parameters: ["i32", "buffer", "u32", "i32", "buffer", "u32"], result: "i32" },
  recvfrom: { parameters: ["i32", "buffer", "u32", "i32", "buffer", "buffer"], result: "i32" },
  recvmmsg: { parameters: ["i32", "buffer", "u32", "i32", "buffer"], result: "i32" },
  sendmmsg: { parameters: ["i32", "buffer", "u32", "i32"], result: "i32" },
  epoll_create1: { parameters: ["i32"], result: "i32" },
  epoll_ctl: { parameters: ["i32", "i32", "i32", "buffer"], result: "i32" },
  epoll_wait: { parameters: ["i32", "buffer", "i32", "i32"], result: "i32" },
  eventfd: { parameters: ["u32", "i32"], result: "i32" },
  getrlimit: { parameters: ["i32", "buffer"], result: "i32" },
  open: { parameters: ["buffer", "i32"], result: "i32" },
  mmap: { parameters: ["pointer", "usize", "i32", "i32", "i32", "i64"], result: "pointer" },
  munmap: { parameters: ["pointer", "usize"], result: "i32" },
  __errno_location: { parameters: [], result: "pointer" },
  // syscall(2) with the argument shapes io_uring needs.
  sys_uring_setup: { name: "syscall", parameters: ["i32", "u32", "buffer"], result: "i32" },
  sys_uring_enter: {
    name: "syscall",
    // argsz is the 7th argument, passed on the stack on x86-64: it must fill a whole 8-byte
    // slot, which a 32-bit parameter does not; a pointer-typed value does, and stays fast.
    parameters: ["i32", "i32", "u32", "u32", "u32", "buffer", "pointer"],
    result: "i32",
  },
  sys_uring_register: {
    name: "syscall",
    parameters: ["i32", "i32", "u32", "buffer", "u32"],
    result: "i32",
  },
} as const;

type RawLibc = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];
type Loose<F> = F extends (...args: infer A) => infer R
  ? (...args: { [K in keyof A]: A[K] extends bigint ? number | bigint : A[K] }) => R
  : never;
/** The libc symbols netloop calls (64-bit integers may be passed as numbers). */
export type Libc = { [K in keyof RawLibc]: Loose<RawLibc[K]> };

let library: Deno.DynamicLibrary<typeof SYMBOLS> | undefined;
let errnoView: Deno.UnsafePointerView | undefined;

/**
 * Opens libc (once per Worker).
 *
 * @returns The symbols.
 */
export function libc(): Libc {
  if (library === undefined) {
    try {
      library = Deno.dlopen("libc.so.6", SYMBOLS);
    } catch (cause) {
      throw new NetloopError(`Cannot open libc.so.6 through FFI: ${(cause as Error).message}`, {
        code: "backend_unavailable",
        cause,
      });
    }
    errnoView = new Deno.UnsafePointerView(library.symbols.__errno_location()!);
  }
  return library.symbols as unknown as Libc;
}

/** Returns the calling thread's errno (call right after the failing libc call). */
export function errno(): number {
  return errnoView!.getInt32(0);
}

/** Errno values the loops branch on (`@triad/core`'s table). */
export const E = Errno;

/**
 * Builds the error for a failed system call.
 *
 * @param what The call and its subject, such as `bind(127.0.0.1:53)`.
 * @param code The positive errno.
 * @returns The error, code `syscall`, with `errno` set (and no stack trace).
 */
export function syscallError(what: string, code: number): NetloopError {
  // No stack trace: it would name the loop's own reaping code, and capturing it cost ~3% of a
  // TLS handshake's CPU on uring (every client that resets its connection makes one).
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try {
    return new NetloopError(`${what} failed: ${errnoName(code)}`, { code: "syscall", errno: code });
  } finally {
    Error.stackTraceLimit = limit;
  }
}

/**
 * Returns the address of a buffer's first byte as a number (the buffer must stay referenced while
 * the kernel uses the address, and must not be a small on-heap typed array).
 *
 * @param buffer The buffer.
 * @returns Its address.
 */
export function addressOf(buffer: ArrayBufferView | ArrayBuffer): number {
  return Number(Deno.UnsafePointer.value(Deno.UnsafePointer.of(buffer as Uint8Array)));
}

/**
 * Allocates a zeroed byte buffer whose memory lives outside the JS heap (safe to hand to the
 * kernel by address).
 *
 * @param size Bytes; at least 128 are allocated so V8 never keeps it on-heap.
 * @returns The buffer.
 */
export function offHeap(size: number): Uint8Array {
  const buffer = new ArrayBuffer(Math.max(size, 128));
  return new Uint8Array(buffer, 0, size);
}

/** Reports whether this process may use FFI. */
export function ffiAllowed(): boolean {
  try {
    return Deno.permissions.querySync({ name: "ffi" }).state === "granted";
  } catch {
    return false;
  }
}
