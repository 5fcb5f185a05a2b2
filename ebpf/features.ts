/**
 * Feature probes: which program types, map types, helpers and attach kinds the running kernel
 * supports (wrapping `libbpf_probe_bpf_*` and small test loads), whether BTF and tracefs are
 * there; `require*` variants raise {@linkcode UnsupportedFeatureError} naming what is missing and
 * the kernel version that added it. Results are cached per process.
 *
 * @example
 * ```ts ignore
 * import { features } from "@triad/ebpf";
 *
 * features.requireMapType("ringbuf"); // throws UnsupportedFeatureError before Linux 5.8
 * const hook = features.attach("fentry") ? "fentry" : "tracepoint";
 * ```
 *
 * @module
 */
import { exists } from "./_exists.ts";
import { libbpf, libbpfVersion } from "./_ffi.ts";
import { asm } from "./asm.ts";
import { BTF } from "./btf.ts";
import { BpfError, errnoName, UnsupportedFeatureError, VerifierError } from "./errors.ts";
import { kprobesAvailable, Program } from "./program.ts";
import { MAP_TYPES, type MapType, PROGRAM_TYPES, type ProgramType } from "./types.ts";
import { type HelperName, HELPERS } from "./asm.ts";

/** Kernel versions that added each program type. */
export const PROGRAM_TYPE_SINCE: Partial<Record<ProgramType, string>> = {
  socket_filter: "3.19",
  kprobe: "4.1",
  sched_cls: "4.1",
  sched_act: "4.1",
  tracepoint: "4.7",
  xdp: "4.8",
  perf_event: "4.9",
  cgroup_skb: "4.10",
  cgroup_sock: "4.10",
  lwt_in: "4.10",
  lwt_out: "4.10",
  lwt_xmit: "4.10",
  sock_ops: "4.13",
  sk_skb: "4.14",
  cgroup_device: "4.15",
  sk_msg: "4.17",
  raw_tracepoint: "4.17",
  cgroup_sock_addr: "4.17",
  lwt_seg6local: "4.18",
  lirc_mode2: "4.18",
  sk_reuseport: "4.19",
  flow_dissector: "4.20",
  cgroup_sysctl: "5.2",
  raw_tracepoint_writable: "5.2",
  cgroup_sockopt: "5.3",
  tracing: "5.5",
  struct_ops: "5.6",
  ext: "5.6",
  lsm: "5.7",
  sk_lookup: "5.9",
  syscall: "5.14",
  netfilter: "6.4",
};

/** Kernel versions that added each map type. */
export const MAP_TYPE_SINCE: Partial<Record<MapType, string>> = {
  hash: "3.19",
  array: "3.19",
  prog_array: "4.2",
  perf_event_array: "4.3",
  percpu_hash: "4.6",
  percpu_array: "4.6",
  stack_trace: "4.6",
  cgroup_array: "4.8",
  lru_hash: "4.10",
  lru_percpu_hash: "4.10",
  lpm_trie: "4.11",
  array_of_maps: "4.12",
  hash_of_maps: "4.12",
  devmap: "4.14",
  sockmap: "4.14",
  cpumap: "4.15",
  xskmap: "4.18",
  sockhash: "4.18",
  cgroup_storage: "4.19",
  reuseport_sockarray: "4.19",
  percpu_cgroup_storage: "4.20",
  queue: "4.20",
  stack: "4.20",
  sk_storage: "5.2",
  devmap_hash: "5.4",
  struct_ops: "5.6",
  ringbuf: "5.8",
  inode_storage: "5.10",
  task_storage: "5.11",
  bloom_filter: "5.16",
  user_ringbuf: "6.1",
  cgrp_storage: "6.2",
  arena: "6.9",
};

/** Attach kinds that can be probed. */
export type AttachKind =
  | "kprobe"
  | "uprobe"
  | "tracepoint"
  | "raw_tracepoint"
  | "fentry"
  | "xdp"
  | "tc"
  | "cgroup";

/** Kernel versions that added each attach kind (what `requireAttach` names). */
export const ATTACH_SINCE: Record<AttachKind, string> = {
  kprobe: "4.1",
  uprobe: "4.3",
  tracepoint: "4.7",
  raw_tracepoint: "4.17",
  fentry: "5.5",
  xdp: "4.8",
  tc: "4.1",
  cgroup: "4.10",
};

const cache = new Map<string, boolean>();
const reasons = new Map<string, string>();

function cached(key: string, probe: () => boolean): boolean {
  let value = cache.get(key);
  if (value === undefined) {
    value = probe();
    cache.set(key, value);
  }
  return value;
}

function programTypeNumber(type: ProgramType): number {
  const number = PROGRAM_TYPES.indexOf(type);
  if (number <= 0) throw new BpfError(`Unknown program type ${type}`, { code: "bad_program_type" });
  return number;
}

/** The feature probes (see {@linkcode features}). */
export interface Features {
  /** The running kernel's release, such as `6.1.0-18-amd64`. */
  readonly kernelRelease: string;
  /**
   * Whether the kernel can load programs of a type (`libbpf_probe_bpf_prog_type`).
   *
   * @param type The program type.
   * @returns Whether it is supported.
   */
  programType(type: ProgramType): boolean;
  /**
   * Whether the kernel can create maps of a type (`libbpf_probe_bpf_map_type`).
   *
   * @param type The map type.
   * @returns Whether it is supported.
   */
  mapType(type: MapType): boolean;
  /**
   * Whether programs of a type may call a helper (`libbpf_probe_bpf_helper`).
   *
   * @param programType The program type.
   * @param helper The helper id or name.
   * @returns Whether it is available.
   */
  helper(programType: ProgramType, helper: number | HelperName): boolean;
  /**
   * Whether an attach kind works here.
   *
   * @param kind The attach kind.
   * @returns Whether it is supported.
   */
  attach(kind: AttachKind): boolean;
  /** Whether the kernel exposes its BTF. */
  btf(): boolean;
  /** Whether tracefs is mounted. */
  tracefs(): boolean;
  /**
   * Throws {@linkcode UnsupportedFeatureError} unless programs of a type can load.
   *
   * @param type The program type.
   */
  requireProgramType(type: ProgramType): void;
  /**
   * Throws {@linkcode UnsupportedFeatureError} unless maps of a type can be created.
   *
   * @param type The map type.
   */
  requireMapType(type: MapType): void;
  /**
   * Throws {@linkcode UnsupportedFeatureError} unless an attach kind works here.
   *
   * @param kind The attach kind.
   */
  requireAttach(kind: AttachKind): void;
  /** Returns every probe's result. */
  report(): Record<string, boolean>;
}

/** Probes for what the running kernel supports. */
export const features: Features = {
  /** The running kernel's release, such as `6.1.0-18-amd64`. */
  get kernelRelease(): string {
    return Deno.osRelease();
  },

  /**
   * Whether the kernel can load programs of a type (`libbpf_probe_bpf_prog_type`).
   *
   * @param type The program type.
   * @returns Whether it is supported.
   */
  programType(type: ProgramType): boolean {
    return cached(`prog:${type}`, () => {
      const rc = libbpf().libbpf_probe_bpf_prog_type(programTypeNumber(type), null);
      if (rc < 0) reasons.set(`prog:${type}`, probeFailure(rc));
      return rc === 1;
    });
  },

  /**
   * Whether the kernel can create maps of a type (`libbpf_probe_bpf_map_type`).
   *
   * @param type The map type.
   * @returns Whether it is supported.
   */
  mapType(type: MapType): boolean {
    return cached(`map:${type}`, () => {
      const number = MAP_TYPES.indexOf(type);
      if (number <= 0) throw new BpfError(`Unknown map type ${type}`, { code: "bad_map_type" });
      const rc = libbpf().libbpf_probe_bpf_map_type(number, null);
      if (rc < 0) reasons.set(`map:${type}`, probeFailure(rc));
      return rc === 1;
    });
  },

  /**
   * Whether programs of a type may call a helper (`libbpf_probe_bpf_helper`).
   *
   * @param programType The program type.
   * @param helper The helper id or name.
   * @returns Whether it is available.
   */
  helper(programType: ProgramType, helper: number | HelperName): boolean {
    const id = typeof helper === "number" ? helper : HELPERS[helper];
    return cached(`helper:${programType}:${id}`, () => probeHelper(programType, id));
  },

  /**
   * Whether an attach kind works here. kprobe/uprobe: the kernel's probe event support;
   * fentry: a test load of an fentry program (BPF trampolines, which some kernels forbid);
   * the others: their program type.
   *
   * @param kind The attach kind.
   * @returns Whether it is supported.
   */
  attach(kind: AttachKind): boolean {
    return cached(`attach:${kind}`, () => {
      switch (kind) {
        case "kprobe":
          return kprobesAvailable();
        case "uprobe":
          return exists("/sys/bus/event_source/devices/uprobe") ||
            exists("/sys/kernel/tracing/uprobe_events");
        case "tracepoint":
          return features.tracefs() && features.programType("tracepoint");
        case "raw_tracepoint":
          return features.programType("raw_tracepoint");
        case "fentry":
          return probeFentry();
        case "xdp":
          return features.programType("xdp");
        case "tc":
          return features.programType("sched_cls");
        case "cgroup":
          return features.programType("cgroup_skb");
      }
    });
  },

  /** Whether the kernel exposes its BTF (`/sys/kernel/btf/vmlinux`, needed for CO-RE). */
  btf(): boolean {
    return exists("/sys/kernel/btf/vmlinux");
  },

  /** Whether tracefs is mounted (tracepoints and kprobes need it). */
  tracefs(): boolean {
    return exists("/sys/kernel/tracing/events") || exists("/sys/kernel/debug/tracing/events");
  },

  /**
   * Throws unless programs of a type can load.
   *
   * @param type The program type.
   */
  requireProgramType(type: ProgramType): void {
    if (!features.programType(type)) {
      throw new UnsupportedFeatureError(
        `BPF program type ${type}`,
        PROGRAM_TYPE_SINCE[type] ?? "?",
        reasons.get(`prog:${type}`),
      );
    }
  },

  /**
   * Throws unless maps of a type can be created.
   *
   * @param type The map type.
   */
  requireMapType(type: MapType): void {
    if (!features.mapType(type)) {
      throw new UnsupportedFeatureError(
        `BPF map type ${type}`,
        MAP_TYPE_SINCE[type] ?? "?",
        reasons.get(`map:${type}`),
      );
    }
  },

  /**
   * Throws unless an attach kind works here.
   *
   * @param kind The attach kind.
   */
  requireAttach(kind: AttachKind): void {
    if (features.attach(kind)) return;
    const detail = kind === "kprobe"
      ? "the kernel was built without CONFIG_KPROBE_EVENTS"
      : kind === "fentry"
      ? `loading an fentry program failed (${reasons.get("attach:fentry") ?? "unknown"}): BPF ` +
        "trampolines need CONFIG_DEBUG_INFO_BTF and x86-64/arm64, and may be forbidden by lockdown"
      : kind === "tracepoint" && !features.tracefs()
      ? "tracefs is not mounted: mount -t tracefs tracefs /sys/kernel/tracing"
      : undefined;
    throw new UnsupportedFeatureError(`${kind} attachment`, ATTACH_SINCE[kind], detail);
  },

  /**
   * Returns every probe's result, for a diagnostics line or `--features` output.
   *
   * @returns Attach kinds, BTF, tracefs, and the ring buffer.
   */
  report(): Record<string, boolean> {
    const out: Record<string, boolean> = {
      btf: features.btf(),
      tracefs: features.tracefs(),
      ringbuf: features.mapType("ringbuf"),
    };
    for (const kind of Object.keys(ATTACH_SINCE) as AttachKind[]) out[kind] = features.attach(kind);
    return out;
  },
};

/**
 * Loads a program that calls the helper and reads the verifier's verdict. libbpf 1.1's own probe
 * predates the "cannot use helper" wording of newer kernels and reports every helper as
 * supported there, so it is only the fallback for types that need attach details to load.
 */
function probeHelper(programType: ProgramType, id: number): boolean {
  try {
    using _program = Program.load({
      type: programType,
      license: "GPL",
      instructions: [
        asm.mov64(1, 0),
        asm.mov64(2, 0),
        asm.mov64(3, 0),
        asm.mov64(4, 0),
        asm.mov64(5, 0),
        asm.call(id),
        asm.mov64(0, 0),
        asm.exit(),
      ],
    });
    return true;
  } catch (error) {
    if (error instanceof VerifierError) {
      return !/invalid func|unknown func|cannot use helper/.test(error.log);
    }
    return libbpf().libbpf_probe_bpf_helper(programTypeNumber(programType), id, null) === 1;
  }
}

function probeFailure(rc: number): string {
  const [major, minor] = libbpfVersion();
  return rc === -95
    ? `libbpf ${major}.${minor} cannot probe it (a newer libbpf can)`
    : `probe failed with ${errnoName(rc)}`;
}

function probeFentry(): boolean {
  if (!features.btf()) {
    reasons.set("attach:fentry", "no kernel BTF");
    return false;
  }
  let target: number;
  try {
    const btf = BTF.kernel();
    const fn = btf.findByName("bpf_fentry_test1", "func") ??
      btf.findByName("security_file_open", "func");
    if (fn === undefined) {
      reasons.set("attach:fentry", "no probe target function in kernel BTF");
      return false;
    }
    target = fn.id;
  } catch (error) {
    reasons.set("attach:fentry", (error as Error).message);
    return false;
  }
  try {
    using _program = Program.load({
      type: "tracing",
      expectedAttachType: "trace_fentry",
      attachBtfId: target,
      license: "GPL",
      name: "probe_fentry",
      instructions: [asm.mov64(0, 0), asm.exit()],
    });
    return true;
  } catch (error) {
    reasons.set(
      "attach:fentry",
      error instanceof BpfError ? errnoName(error.errno) : String(error),
    );
    return false;
  }
}
