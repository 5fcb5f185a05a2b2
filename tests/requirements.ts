/**
 * What a privileged or integration test needs from the machine, and a `Deno.test` wrapper that skips
 * with the reason printed (never silently) when something is missing.
 *
 * ```ts ignore
 * import { command, root, testWith } from "./requirements.ts";
 * testWith("etcd source watches a key", [root, command("etcd", "etcd-server")], async () => {});
 * ```
 *
 * @module
 */
import { effectiveCapabilityBits, exists } from "./support.ts";

/** One thing a test needs; `check()` returns why it is missing, or `undefined` when present. */
export interface Requirement {
  /** A short name, such as `root` or `BTF`. */
  readonly name: string;
  /** Returns the reason the requirement is not met, with the fix, or `undefined` when it is. */
  check(): string | undefined;
}

function readText(path: string): string | undefined {
  try {
    return Deno.readTextFileSync(path);
  } catch {
    return undefined;
  }
}

const CAPABILITY_BITS = { CAP_NET_ADMIN: 12, CAP_SYS_ADMIN: 21, CAP_PERFMON: 38, CAP_BPF: 39 };

/** Returns the effective capabilities of this process, as names. */
export function effectiveCapabilities(): Set<string> {
  const bits = effectiveCapabilityBits();
  const names = new Set<string>();
  for (const [name, bit] of Object.entries(CAPABILITY_BITS)) {
    if ((bits >> BigInt(bit)) & 1n) names.add(name);
  }
  return names;
}

/** Returns the running kernel's version as `[major, minor]`, `[0, 0]` where unknown. */
export function kernelVersion(): [number, number] {
  const release = Deno.build.os === "linux" ? Deno.osRelease() : "0.0";
  const match = /^(\d+)\.(\d+)/.exec(release);
  return match ? [Number(match[1]), Number(match[2])] : [0, 0];
}

/** The process runs on Linux. */
export const linux: Requirement = {
  name: "Linux",
  check: () => Deno.build.os === "linux" ? undefined : `needs Linux, this is ${Deno.build.os}`,
};

/** The process is root (uid 0). */
export const root: Requirement = {
  name: "root",
  check: () =>
    linux.check() ?? (Deno.uid() === 0 ? undefined : `needs root, running as uid ${Deno.uid()}`),
};

/** The process may load and attach BPF programs (CAP_BPF + CAP_PERFMON, or CAP_SYS_ADMIN). */
export const bpfCapabilities: Requirement = {
  name: "CAP_BPF",
  check: () => {
    const caps = effectiveCapabilities();
    if (caps.has("CAP_SYS_ADMIN") || (caps.has("CAP_BPF") && caps.has("CAP_PERFMON"))) {
      return undefined;
    }
    return "needs CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN): run as root";
  },
};

/** The process may create network namespaces and interfaces (CAP_NET_ADMIN + CAP_SYS_ADMIN). */
export const netAdmin: Requirement = {
  name: "CAP_NET_ADMIN",
  check: () => {
    const caps = effectiveCapabilities();
    return caps.has("CAP_NET_ADMIN") && caps.has("CAP_SYS_ADMIN")
      ? undefined
      : "needs CAP_NET_ADMIN and CAP_SYS_ADMIN to create network namespaces: run as root";
  },
};

/**
 * A requirement met when something exists at any of `paths`.
 *
 * @param name A short name.
 * @param paths Where to look, in order.
 * @param reason Why the test cannot run without it, with the fix.
 */
export function anyPath(name: string, paths: readonly string[], reason: string): Requirement {
  return { name, check: () => paths.some(exists) ? undefined : reason };
}

/** The kernel exposes its BTF (CONFIG_DEBUG_INFO_BTF, Linux 5.4+). */
export const btf: Requirement = anyPath(
  "BTF",
  ["/sys/kernel/btf/vmlinux"],
  "needs kernel BTF at /sys/kernel/btf/vmlinux (CONFIG_DEBUG_INFO_BTF, Linux 5.4+)",
);

/** tracefs is mounted. */
export const tracefs: Requirement = anyPath(
  "tracefs",
  ["/sys/kernel/tracing/events", "/sys/kernel/debug/tracing/events"],
  "needs tracefs: mount -t tracefs tracefs /sys/kernel/tracing",
);

/** The kernel has uprobe events (CONFIG_UPROBE_EVENTS). */
export const uprobes: Requirement = anyPath(
  "uprobes",
  ["/sys/bus/event_source/devices/uprobe", "/sys/kernel/tracing/uprobe_events"],
  "needs uprobes (CONFIG_UPROBE_EVENTS) in this kernel",
);

/** bpffs is mounted at /sys/fs/bpf. */
export const bpffs: Requirement = {
  name: "bpffs",
  check: () => {
    const mounts = readText("/proc/self/mounts") ?? "";
    return / \/sys\/fs\/bpf bpf /.test(mounts)
      ? undefined
      : "needs bpffs: mount -t bpf bpf /sys/fs/bpf";
  },
};

/** The system libbpf (libbpf.so.1) can be found. */
export const libbpf: Requirement = {
  name: "libbpf",
  check: () => {
    const dirs = [
      "/usr/lib/x86_64-linux-gnu",
      "/usr/lib/aarch64-linux-gnu",
      "/usr/lib64",
      "/usr/lib",
    ];
    return dirs.some((dir) => exists(`${dir}/libbpf.so.1`))
      ? undefined
      : "needs libbpf.so.1: apt-get install libbpf1";
  },
};

/** io_uring is not disabled by sysctl (kernel.io_uring_disabled, Linux 6.6+). */
export const ioUring: Requirement = {
  name: "io_uring",
  check: () => {
    if (linux.check()) return linux.check();
    const disabled = readText("/proc/sys/kernel/io_uring_disabled")?.trim() ?? "0";
    if (disabled === "2") return "io_uring is disabled: sysctl kernel.io_uring_disabled=2";
    if (disabled === "1" && Deno.uid() !== 0) {
      return "io_uring is limited to root by sysctl kernel.io_uring_disabled=1";
    }
    return undefined;
  },
};

/** Foreign function calls are allowed (`--allow-ffi`). */
export const ffi: Requirement = {
  name: "FFI",
  check: () =>
    Deno.permissions.querySync({ name: "ffi" }).state === "granted"
      ? undefined
      : "needs --allow-ffi",
};

/**
 * A program on PATH.
 *
 * @param name The program, such as `etcd`.
 * @param debianPackage The Debian package that ships it, named in the reason.
 */
export function command(name: string, debianPackage = name): Requirement {
  return {
    name,
    check: () => {
      const path = Deno.env.get("PATH") ?? "";
      const dirs = [...path.split(":"), "/usr/sbin", "/sbin"];
      return dirs.some((dir) => dir !== "" && exists(`${dir}/${name}`))
        ? undefined
        : `needs ${name}: apt-get install ${debianPackage}`;
    },
  };
}

/**
 * Not inside the VM suite's guest under software emulation (`TRIAD_VM_ACCEL=tcg`, set by the
 * harness), where a guest runs about 12x slower: for tests whose thousands of connections would
 * take longer there than CI allows. The host run covers them; the guest reports them skipped.
 */
export const fullSpeed: Requirement = {
  name: "full speed",
  check: () =>
    Deno.env.get("TRIAD_VM_ACCEL") === "tcg"
      ? "the VM guest runs under software emulation (TCG, about 12x slower): thousands of " +
        "connections would take longer than CI allows; the host run covers this test"
      : undefined,
};

/** A C compiler (`cc`, `clang` or `gcc`, as `tests/servers/compile_c.ts` looks for). */
export const cCompiler: Requirement = {
  name: "a C compiler",
  check: () => {
    const names = ["cc", "clang", "gcc"].map((name) => command(name).check());
    return names.some((reason) => reason === undefined)
      ? undefined
      : "needs a C compiler such as gcc: apt-get install gcc (or clang)";
  },
};

/**
 * A kernel at least of a version, for a feature it added.
 *
 * @param major Major version.
 * @param minor Minor version.
 * @param feature What that version added, named in the reason.
 */
export function kernelAtLeast(major: number, minor: number, feature: string): Requirement {
  return {
    name: `Linux ${major}.${minor}`,
    check: () => {
      const [haveMajor, haveMinor] = kernelVersion();
      return haveMajor > major || (haveMajor === major && haveMinor >= minor)
        ? undefined
        : `needs ${feature} (Linux ${major}.${minor}+), kernel is ${haveMajor}.${haveMinor}`;
    },
  };
}

/**
 * What every test that loads BPF programs needs: the capabilities, the kernel's BTF, libbpf, and
 * bpftool (to check that nothing is left behind). Spread it into a test's own list:
 * `[...bpfTest, tracefs, kernelAtLeast(5, 9, "bpf_iter")]`.
 */
export const bpfTest: readonly Requirement[] = [bpfCapabilities, btf, libbpf, command("bpftool")];

/**
 * Returns the first reason a requirement is missing, or `undefined` when all are met.
 *
 * @param requirements What the test needs.
 */
export function missing(requirements: readonly Requirement[]): string | undefined {
  for (const requirement of requirements) {
    const reason = requirement.check();
    if (reason !== undefined) return reason;
  }
  return undefined;
}

/**
 * Registers a test that runs only where every requirement is met; otherwise it is reported as
 * ignored and the reason is printed as `SKIP <name>: <reason>`.
 *
 * @param name The test name.
 * @param requirements What it needs.
 * @param fn The test.
 */
export function testWith(
  name: string,
  requirements: readonly Requirement[],
  fn: (t: Deno.TestContext) => void | Promise<void>,
): void {
  const reason = missing(requirements);
  if (reason !== undefined) console.error(`SKIP ${name}: ${reason}`);
  Deno.test({ name, ignore: reason !== undefined, fn });
}
