/**
 * The errors `@triad/ebpf` raises: {@linkcode BpfError} for a failed system call (its message names
 * the errno and the likely fix), {@linkcode VerifierError} carrying the whole verifier log, and
 * {@linkcode UnsupportedFeatureError} naming the kernel version that added a missing feature.
 *
 * @module
 */
import { errnoName, SyscallError, TriadError } from "@triad/core";
import { takeLibbpfMessages } from "./_ffi.ts";

export { LibbpfMissingError } from "./_ffi.ts";

const ERRNO_FIXES: Record<string, string> = {
  EPERM: "needs CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN, i.e. root); on some kernels lockdown " +
    "or kernel.unprivileged_bpf_disabled also forbid it",
  EACCES: "permission denied: run as root, or the verifier rejected the program",
  ENOENT: "it does not exist: check the name or path (kernel function, tracepoint, pin path)",
  E2BIG: "too big for the kernel: lower max_entries or the key/value size",
  ENOMEM: "out of memory: on kernels before 5.11 raise RLIMIT_MEMLOCK (ulimit -l unlimited)",
  EBUSY: "already in use: detach what is attached there first",
  EEXIST: "it already exists: use another pin path or update flag",
  ENOSPC: "no space left: the map is full",
  EINVAL: "the kernel rejected an argument: check types, sizes and flags",
  EOPNOTSUPP: "the kernel does not support it: see features for what this kernel has",
  ENOTSUPP: "the kernel does not support it: see features for what this kernel has",
  ENOSYS: "the kernel has no bpf() system call (CONFIG_BPF_SYSCALL)",
  EBADF: "a file descriptor was already closed",
  ENODEV: "no such device (network interface)",
  EMFILE: "too many open files: close objects you no longer need (or use `using`)",
};

/** Returns the symbolic name of an errno (`EPERM`), or `errno N` when unknown (from `@triad/core`). */
export { errnoName };

/** Options for {@linkcode BpfError}. */
export interface BpfErrorOptions {
  /** The errno (positive or negative) of the failed call. */
  errno?: number;
  /** A stable code; defaults to the lower-case errno name (`eperm`). */
  code?: string;
  /** The underlying error. */
  cause?: unknown;
}

/**
 * A failed bpf operation. The message names the operation, what it was applied to, the errno
 * and the likely fix, followed by libbpf's own explanation where it gave one.
 *
 * @example
 * ```ts
 * import { BpfError } from "@triad/ebpf";
 * import assert from "node:assert/strict";
 *
 * const error = BpfError.fromErrno("Load program handle_exec", -1);
 * assert.equal(error.errno, 1);
 * assert.equal(error.code, "eperm");
 * assert.match(error.message, /CAP_BPF/);
 * ```
 */
export class BpfError extends SyscallError {
  /**
   * Creates an error.
   *
   * @param message What failed and where.
   * @param options The errno, code and cause.
   */
  constructor(message: string, options: BpfErrorOptions = {}) {
    const errno = Math.abs(options.errno ?? 0);
    super(message, {
      code: options.code ?? (errno === 0 ? "bpf" : errnoName(errno).toLowerCase()),
      errno,
      cause: options.cause,
    });
  }

  /**
   * Builds an error for a failed call from its errno, with the fix and libbpf's recent messages.
   *
   * @param what What failed, such as `Attach program handle_exec to tracepoint sched/sched_exec`.
   * @param errno The errno (positive or negative).
   * @param messages libbpf's messages about the failure (by default, those since the last call).
   * @returns The error.
   */
  static fromErrno(what: string, errno: number, messages?: string[]): BpfError {
    const name = errnoName(errno);
    const fix = ERRNO_FIXES[name];
    const details = (messages ?? takeLibbpfMessages()).filter((line) =>
      !/^libbpf: prog '.*': -- (BEGIN|END)/.test(line)
    );
    let message = `${what}: ${name}${fix === undefined ? "" : ` (${fix})`}`;
    if (details.length > 0) message += `\nlibbpf said:\n  ${details.slice(-8).join("\n  ")}`;
    return new BpfError(message, { errno });
  }
}

/** Where a verifier rejection happened, parsed from the log. */
export interface VerifierFailure {
  /** Index of the instruction the verifier stopped at, if the log names one. */
  instruction?: number;
  /** The instruction as the verifier printed it, such as `(61) r1 = *(u32 *)(r2 +0)`. */
  instructionText?: string;
  /** The source line the verifier printed for it (`; return x; @ prog.bpf.c:12`), if any. */
  source?: string;
  /** The verifier's reason, such as `R2 invalid mem access 'scalar'`. */
  reason: string;
}

/**
 * The verifier rejected a program. `log` is the whole verifier log (the buffer is grown until it
 * fits, never truncated silently); the message names the program, the failing instruction, its
 * source line and the verifier's reason.
 *
 * @example
 * ```ts
 * import { VerifierError } from "@triad/ebpf";
 * import assert from "node:assert/strict";
 *
 * const log = "0: (b7) r0 = 0\n1: (61) r1 = *(u32 *)(r2 +0)\nR2 !read_ok\nprocessed 2 insns\n";
 * const error = new VerifierError("probe", log, 13);
 * assert.equal(error.failure.instruction, 1);
 * assert.equal(error.failure.reason, "R2 !read_ok");
 * assert.match(error.message, /instruction 1/);
 * ```
 */
export class VerifierError extends BpfError {
  /** The program that was rejected. */
  readonly program: string;
  /** The whole verifier log. */
  readonly log: string;
  /** Where and why it failed. */
  readonly failure: VerifierFailure;

  /**
   * Creates the error from the verifier log.
   *
   * @param program The program name.
   * @param log The whole verifier log.
   * @param errno The errno of the load (usually EACCES or EINVAL).
   */
  constructor(program: string, log: string, errno: number) {
    const failure = parseVerifierLog(log);
    const at = failure.instruction === undefined ? "" : ` at instruction ${failure.instruction}` +
      (failure.instructionText === undefined ? "" : ` ${failure.instructionText}`);
    const source = failure.source === undefined ? "" : `\n  source: ${failure.source}`;
    const tail = log.trimEnd().split("\n").slice(-12).join("\n    ");
    super(
      `Verifier rejected program ${program}${at}: ${failure.reason} (${
        errnoName(errno)
      })${source}` +
        `\n  last lines of the log (error.log has all ${
          log.split("\n").length
        } lines):\n    ${tail}`,
      { errno, code: "verifier" },
    );
    this.program = program;
    this.log = log;
    this.failure = failure;
  }
}

const INSTRUCTION_LINE = /^(\d+): (\([0-9a-f]{2}\).*)$/;

/**
 * Finds the failing instruction, its source line and the reason in a verifier log.
 *
 * @param log The verifier log.
 * @returns The failure.
 */
export function parseVerifierLog(log: string): VerifierFailure {
  const lines = log.split("\n").map((line) => line.trimEnd()).filter((line) => line !== "");
  // The log ends with statistics ("processed N insns ...", "verification time ...") after the reason.
  let end = lines.length;
  while (
    end > 0 &&
    /^(processed \d+ insns|verification time|stack depth|mark_precise|-- END)/.test(lines[end - 1]!)
  ) end--;
  const reason = lines[end - 1] ?? "no verifier log";
  const failure: VerifierFailure = { reason };
  for (let i = end - 1; i >= 0; i--) {
    const match = INSTRUCTION_LINE.exec(lines[i]!);
    if (match === null) continue;
    failure.instruction = Number(match[1]);
    failure.instructionText = match[2]!;
    // The verifier prints "; <source> @ file.c:N" only where the source line changes, so the
    // failing instruction's line is the last one printed before it, however many instructions
    // back. An empty one (";" or "; @ file.c:0") is an instruction the compiler gave no line.
    for (let j = i - 1; j >= 0; j--) {
      const line = lines[j]!;
      if (line !== ";" && !line.startsWith("; ")) continue;
      const source = line.slice(2).trim();
      if (source !== "" && !/^@ \S+:0$/.test(source)) failure.source = source;
      break;
    }
    break;
  }
  return failure;
}

/**
 * A feature the running kernel (or libbpf) lacks. The message names the feature and the kernel
 * version that added it.
 *
 * @example
 * ```ts
 * import { UnsupportedFeatureError } from "@triad/ebpf";
 * import assert from "node:assert/strict";
 *
 * const error = new UnsupportedFeatureError("BPF ring buffer map", "5.8");
 * assert.match(error.message, /Linux 5\.8/);
 * assert.equal(error.code, "unsupported");
 * ```
 */
export class UnsupportedFeatureError extends TriadError {
  /** The missing feature. */
  readonly feature: string;
  /** The kernel version that added it, such as `5.8`. */
  readonly minimumKernel: string;

  /**
   * Creates the error.
   *
   * @param feature What is missing.
   * @param minimumKernel The kernel version that added it.
   * @param detail Extra detail (why the probe failed).
   */
  constructor(feature: string, minimumKernel: string, detail?: string) {
    const release = Deno.build.os === "linux" ? Deno.osRelease() : Deno.build.os;
    const newEnough = compareVersions(release, minimumKernel) >= 0;
    super(
      newEnough
        ? `${feature} is not available on this kernel (${release}) although Linux ` +
          `${minimumKernel}+ has it` + (detail === undefined ? "" : `: ${detail}`)
        : `${feature} is not supported by this kernel (${release}): it needs Linux ` +
          `${minimumKernel} or newer` + (detail === undefined ? "" : ` (${detail})`),
      { code: "unsupported" },
    );
    this.feature = feature;
    this.minimumKernel = minimumKernel;
  }
}

/** Compares dotted kernel versions by their numeric parts (`6.1.0-18-amd64` vs `5.8`). */
function compareVersions(a: string, b: string): number {
  const parse = (v: string) => (/^(\d+)\.(\d+)/.exec(v) ?? [0, 0, 0]).slice(1).map(Number);
  const [aMajor = 0, aMinor = 0] = parse(a);
  const [bMajor = 0, bMinor = 0] = parse(b);
  return aMajor !== bMajor ? aMajor - bMajor : aMinor - bMinor;
}
