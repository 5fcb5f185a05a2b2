/**
 * What the tracer needs from the machine, checked before loading anything, each failure with one
 * message naming the fix. tracefs is mounted for the user when the process may do so.
 *
 * @module
 */

import { TriadError } from "@triad/core";
import { exists } from "../_exists.ts";

/**
 * A missing prerequisite; `code` is `privileges`, `btf`, `tracefs` or `perf_event_paranoid`
 * (a missing libbpf is reported by `@triad/ebpf` as `LibbpfMissingError`).
 */
export class TracePrerequisiteError extends TriadError {}

/** Where to look for things; tests point these at temp dirs. */
interface PreflightPaths {
  /** Kernel BTF. @default "/sys/kernel/btf/vmlinux" */
  btf?: string;
  /** The tracefs mount point. @default "/sys/kernel/tracing" */
  tracefs?: string;
  /** The legacy tracefs path under debugfs. @default "/sys/kernel/debug/tracing" */
  debugfsTracing?: string;
  /** Process status (capabilities). @default "/proc/self/status" */
  status?: string;
  /** The perf_event_paranoid sysctl. @default "/proc/sys/kernel/perf_event_paranoid" */
  perfEventParanoid?: string;
}

const CAP_SYS_ADMIN = 21n;
const CAP_PERFMON = 38n;
const CAP_BPF = 39n;

/**
 * The effective capability set of this process, from `/proc/self/status`.
 *
 * @param statusPath The status file to read.
 * @returns The `CapEff` bits.
 */
export function effectiveCapabilityBits(statusPath = "/proc/self/status"): bigint {
  try {
    const status = Deno.readTextFileSync(statusPath);
    const hex = /^CapEff:\s*([0-9a-f]+)$/m.exec(status)?.[1];
    return hex ? BigInt(`0x${hex}`) : 0n;
  } catch {
    return 0n;
  }
}

function has(bits: bigint, cap: bigint): boolean {
  return ((bits >> cap) & 1n) === 1n;
}

/**
 * Checks privileges and kernel BTF, then makes sure tracefs is reachable, mounting it when this
 * process may.
 *
 * @param paths Where to look (defaults: the real system paths).
 * @throws {TracePrerequisiteError} The first missing prerequisite, with the fix.
 */
export async function checkTracePrerequisites(paths: PreflightPaths = {}): Promise<void> {
  const caps = effectiveCapabilityBits(paths.status);
  const admin = has(caps, CAP_SYS_ADMIN);
  if (!admin && !(has(caps, CAP_BPF) && has(caps, CAP_PERFMON))) {
    throw new TracePrerequisiteError(
      `The tracer needs root, or CAP_BPF and CAP_PERFMON (plus CAP_SYS_RESOURCE on kernels before ` +
        `5.11): run it with sudo, e.g. sudo deno task trace`,
      { code: "privileges" },
    );
  }
  const btf = paths.btf ?? "/sys/kernel/btf/vmlinux";
  if (!exists(btf)) {
    throw new TracePrerequisiteError(
      `Kernel BTF is missing at ${btf}: the tracer needs a kernel built with ` +
        `CONFIG_DEBUG_INFO_BTF=y (Linux 5.4+; stock Debian 11+, Ubuntu 20.10+ and Fedora kernels)`,
      { code: "btf" },
    );
  }
  const tracefs = paths.tracefs ?? "/sys/kernel/tracing";
  const legacy = paths.debugfsTracing ?? "/sys/kernel/debug/tracing";
  if (!exists(`${tracefs}/events`) && !exists(`${legacy}/events`)) {
    await mountTracefs(tracefs, admin);
  }
  // Debian's and Ubuntu's kernels add perf_event_paranoid levels above 2 under which
  // perf_event_open() (how tracepoints attach) needs CAP_SYS_ADMIN, CAP_PERFMON is not enough.
  const paranoidPath = paths.perfEventParanoid ?? "/proc/sys/kernel/perf_event_paranoid";
  let paranoid = Number.NaN;
  try {
    paranoid = Number(Deno.readTextFileSync(paranoidPath).trim());
  } catch {
    // not readable: let the attach say what is wrong
  }
  if (!admin && paranoid > 2) {
    throw new TracePrerequisiteError(
      `kernel.perf_event_paranoid is ${paranoid}: at levels above 2 (a Debian/Ubuntu kernel ` +
        `patch) attaching to tracepoints needs CAP_SYS_ADMIN, CAP_BPF and CAP_PERFMON are not ` +
        `enough: run as root, or set sysctl kernel.perf_event_paranoid=2 on this machine`,
      { code: "perf_event_paranoid" },
    );
  }
}

async function mountTracefs(tracefs: string, admin: boolean): Promise<void> {
  if (admin) {
    const mounted = await new Deno.Command("mount", {
      args: ["-t", "tracefs", "tracefs", tracefs],
      stdout: "null",
      stderr: "piped",
    }).output().catch(() => undefined);
    if (mounted?.success && exists(`${tracefs}/events`)) return;
  }
  throw new TracePrerequisiteError(
    `tracefs is not mounted at ${tracefs}: mount it with ` +
      `mount -t tracefs tracefs ${tracefs} (in a container: mount the host's ${tracefs} read-only)`,
    { code: "tracefs" },
  );
}
