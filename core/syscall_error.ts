/**
 * The Linux errno table and {@linkcode SyscallError}, the one error type for a failed system call
 * that `@triad/ebpf` and `@triad/netloop` both build on.
 *
 * @module
 */
import { TriadError } from "./error.ts";

/**
 * Linux errno values by name (x86-64 and arm64 agree on all of these).
 *
 * @example
 * ```ts
 * import { Errno } from "@triad/core";
 * import assert from "node:assert/strict";
 *
 * assert.equal(Errno.ECONNRESET, 104);
 * ```
 */
export const Errno = {
  EPERM: 1,
  ENOENT: 2,
  ESRCH: 3,
  EINTR: 4,
  EIO: 5,
  E2BIG: 7,
  EBADF: 9,
  EAGAIN: 11,
  ENOMEM: 12,
  EACCES: 13,
  EFAULT: 14,
  EBUSY: 16,
  EEXIST: 17,
  ENODEV: 19,
  EINVAL: 22,
  ENFILE: 23,
  EMFILE: 24,
  ENOSPC: 28,
  EPIPE: 32,
  ERANGE: 34,
  ENOSYS: 38,
  ETIME: 62,
  EBADFD: 77,
  EOPNOTSUPP: 95,
  EAFNOSUPPORT: 97,
  EADDRINUSE: 98,
  EADDRNOTAVAIL: 99,
  ECONNABORTED: 103,
  ECONNRESET: 104,
  ENOBUFS: 105,
  ENOTCONN: 107,
  ETIMEDOUT: 110,
  ECONNREFUSED: 111,
  EHOSTUNREACH: 113,
  EALREADY: 114,
  EINPROGRESS: 115,
  ECANCELED: 125,
  ENOTSUPP: 524,
} as const;

const NAMES: ReadonlyMap<number, string> = new Map(
  Object.entries(Errno).map(([name, value]) => [value, name]),
);

/**
 * Returns the symbolic name of an errno.
 *
 * @example
 * ```ts
 * import { errnoName } from "@triad/core";
 * import assert from "node:assert/strict";
 *
 * assert.equal(errnoName(-1), "EPERM");
 * assert.equal(errnoName(999), "errno 999");
 * ```
 *
 * @param errno The errno, positive or negative (`-errno` as io_uring and libbpf return it).
 * @returns `EPERM` and the like, or `errno N` when the table does not have it.
 */
export function errnoName(errno: number): string {
  const value = Math.abs(errno);
  return NAMES.get(value) ?? `errno ${value}`;
}

/** Options for {@linkcode SyscallError}. */
export interface SyscallErrorOptions {
  /** A stable code to branch on. */
  code: string;
  /** The errno (positive or negative) of the failed call; 0 or absent when it had none. */
  errno?: number;
  /** The underlying error. */
  cause?: unknown;
}

/**
 * A failed system call (or an error of a module whose failures mostly are): a {@linkcode TriadError}
 * that also carries the positive `errno`, 0 when the failure had none.
 *
 * @example
 * ```ts
 * import { errnoName, SyscallError, TriadError } from "@triad/core";
 * import assert from "node:assert/strict";
 *
 * const error = new SyscallError(`bind(127.0.0.1:53) failed: ${errnoName(13)}`, {
 *   code: "syscall",
 *   errno: -13,
 * });
 * assert.equal(error.errno, 13);
 * assert.ok(error instanceof TriadError);
 * ```
 */
export class SyscallError extends TriadError {
  /** The positive errno, 0 when the failure had none. */
  readonly errno: number;

  /**
   * Creates an error.
   *
   * @param message What failed and where, in sentence case.
   * @param options The code, the errno and the cause.
   */
  constructor(message: string, options: SyscallErrorOptions) {
    super(message, { code: options.code, cause: options.cause });
    this.errno = Math.abs(options.errno ?? 0);
  }
}
