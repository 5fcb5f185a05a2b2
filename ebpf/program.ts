/**
 * {@linkcode Program}: a loaded BPF program — attach it (each attach returns a
 * {@linkcode Link}), pin it, run it through `BPF_PROG_TEST_RUN`, or load one built with the
 * instruction builder.
 *
 * @module
 */
import { exists } from "./_exists.ts";
import { addressOf, cString, errno, libbpf, libc, toCString } from "./_ffi.ts";
import { assemble, type Instruction } from "./asm.ts";
import { elfFunctionOffsets, elfUsdtNotes } from "./_elf.ts";
import { encodeUsdtSpec, USDT_SPEC_SIZE } from "./_usdt.ts";
import { Bytes, Uint32 as Uint32Codec } from "./codec.ts";
import { BpfError, errnoName, UnsupportedFeatureError, VerifierError } from "./errors.ts";
import { createLink, type Link, type LinkBackend } from "./link.ts";
import type { BpfMap } from "./map.ts";
import {
  ATTACH_TYPES,
  type AttachType,
  PROGRAM_TYPES,
  type ProgramType,
  programTypeName,
} from "./types.ts";

/** The attach type of each socket map program section. */
const SOCKET_MAP_ATTACH: Record<string, AttachType | undefined> = {
  "sk_msg": "sk_msg_verdict",
  "sk_skb/stream_verdict": "sk_skb_stream_verdict",
  "sk_skb/stream_parser": "sk_skb_stream_parser",
  "sk_skb/verdict": "sk_skb_verdict",
};

/** @internal What ties a program to its object. */
export interface ProgramOwner {
  /** The object name, for messages. */
  name: string;
  /** Whether the object was closed. */
  closed: boolean;
  /** Links created from the object's programs, destroyed when the object closes. */
  links: Set<Link>;
  /** The object's map of a name (after load). */
  map?: (name: string) => BpfMap<unknown, unknown> | undefined;
}

/** The next free USDT spec slot of each object's `triad_usdt_specs` map. */
const usdtNextSpec = new WeakMap<object, number>();

/** Options for {@linkcode Program.attachKprobe}. */
export interface KprobeOptions {
  /** Attach to the function's return (kretprobe). */
  retprobe?: boolean;
}

/** Options for {@linkcode Program.attachUprobe}. */
export interface UprobeOptions {
  /** The symbol to probe, such as `malloc` (resolved by libbpf in the ELF symbol table). */
  function?: string;
  /** Byte offset (from the function, or in the file when no function is given). */
  offset?: number;
  /** Only this process (default: every process mapping the binary). */
  pid?: number;
  /** Attach to the function's return (uretprobe). */
  retprobe?: boolean;
  /** A value the program reads with `bpf_get_attach_cookie`. */
  cookie?: bigint;
}

/** Options for {@linkcode Program.attachUprobeMulti}. */
export interface UprobeMultiOptions {
  /** Only this process (default: every process mapping the binary). */
  pid?: number;
  /** Attach to the functions' returns. */
  retprobe?: boolean;
  /** One cookie per function (default: its index). */
  cookies?: readonly bigint[];
  /**
   * Told why, when one uprobe per function is attached instead of one multi link (default: a
   * `console.warn`).
   */
  onFallback?: (reason: string) => void;
}

/** Options for {@linkcode Program.attachNetfilter}. */
export interface NetfilterOptions {
  /** IPv4 or IPv6. */
  family: 4 | 6;
  /** The netfilter hook. */
  hook: "prerouting" | "local_in" | "forward" | "local_out" | "postrouting";
  /** The order among the hook's functions (default 0; lower runs first). */
  priority?: number;
  /** Reassemble IP fragments before the program runs. */
  defrag?: boolean;
}

/** Where a multi-attach fallback is told when the caller gave no `onFallback`. */
function warnFallback(reason: string): void {
  console.warn(`@triad/ebpf: ${reason}`);
}

const SYS_BPF = Deno.build.arch === "aarch64" ? 280 : 321;
const BPF_LINK_CREATE = 28;

const XDP_FLAGS_SKB_MODE = 2;
const XDP_FLAGS_DRV_MODE = 4;

/** Options for {@linkcode Program.attachXdp}. */
export interface XdpOptions {
  /** `auto` (default), `native` (driver mode) or `generic` (skb mode). */
  mode?: "auto" | "native" | "generic";
}

/** Options for {@linkcode Program.attachTc}. */
export interface TcOptions {
  /** Ingress (default) or egress. */
  direction?: "ingress" | "egress";
  /**
   * `auto` (default): a tcx link where the kernel has them (6.6+), else netlink; `tcx` or
   * `netlink` to insist on one.
   */
  mode?: "auto" | "tcx" | "netlink";
}

/** The input of {@linkcode Program.testRun}. */
export interface TestRunInput {
  /** The packet (or other data) the program sees. */
  data?: Uint8Array;
  /** The context (`struct __sk_buff`, `xdp_md`, raw tracepoint args...). */
  context?: Uint8Array;
  /** Room for the output data; defaults to the input size plus 256 bytes. */
  dataOutSize?: number;
  /** Run this many times (for timing). */
  repeat?: number;
  /** `BPF_F_TEST_RUN_ON_CPU` and friends. */
  flags?: number;
  /** The CPU to run on, with `flags` 1. */
  cpu?: number;
}

/** The result of {@linkcode Program.testRun}. */
export interface TestRunResult {
  /** The program's return value. */
  retval: number;
  /** The output data (the packet after the program changed it). */
  data: Uint8Array;
  /** The output context, when a context was given. */
  context?: Uint8Array;
  /** Average run time per repetition, in nanoseconds. */
  durationNs: number;
}

/** Options for {@linkcode Program.load}. */
export interface ProgramLoadOptions {
  /** The program type, such as `socket_filter`, `xdp`, `sched_cls`. */
  type: ProgramType;
  /** The instructions (from `asm`), or already encoded bytes. */
  instructions: readonly Instruction[] | Uint8Array<ArrayBuffer>;
  /** The license; GPL-only helpers need a GPL-compatible one. */
  license: string;
  /** The program name (at most 15 bytes). */
  name?: string;
  /** The expected attach type (cgroup programs need it). */
  expectedAttachType?: AttachType;
  /** The target's BTF id (fentry/fexit). */
  attachBtfId?: number;
  /** Verifier log level on success (1 or 2) to read `verifierLog`; failures always keep the log. */
  logLevel?: 0 | 1 | 2;
}

/** @internal */
export const programInternal = Symbol("programInternal");

const MAX_LOG_SIZE = 1 << 30;

/**
 * A loaded BPF program, from an object (`obj.program(name)`) or built with the instruction
 * builder ({@linkcode Program.load}).
 *
 * @example Attach by section name
 * ```ts ignore
 * import { BpfObject } from "@triad/ebpf";
 *
 * using obj = BpfObject.open("prog.bpf.o");
 * await obj.load();
 * using link = obj.program("handle_exec").attach(); // SEC("tp/sched/sched_process_exec")
 * ```
 */
export class Program implements Disposable {
  /** The program name. */
  readonly name: string;
  /** The ELF section (`tp/sched/sched_process_exec`), `""` for built programs. */
  readonly section: string;
  /** The program type. */
  readonly type: ProgramType | `prog_type_${number}`;
  /** The verifier log of a successful load with `logLevel` > 0. */
  readonly verifierLog: string;
  readonly #pointer: Deno.PointerObject | null;
  #fd: number;
  readonly #owner: ProgramOwner;
  readonly #ownsFd: boolean;

  /** @internal Use `BpfObject.program()` or {@linkcode Program.load}. */
  constructor(
    token: unknown,
    pointer: Deno.PointerObject | null,
    fd: number,
    owner: unknown,
    verifierLog = "",
    type: ProgramType | `prog_type_${number}` = "unspec",
  ) {
    if (token !== programInternal) throw new TypeError("Use BpfObject.program() or Program.load()");
    this.#pointer = pointer;
    this.#fd = fd;
    this.#owner = owner as ProgramOwner;
    this.#ownsFd = pointer === null;
    this.verifierLog = verifierLog;
    if (pointer !== null) {
      const lib = libbpf();
      this.name = cString(lib.bpf_program__name(pointer));
      this.section = cString(lib.bpf_program__section_name(pointer));
      this.type = programTypeName(lib.bpf_program__type(pointer));
    } else {
      this.name = (owner as ProgramOwner).name;
      this.section = "";
      this.type = type;
    }
  }

  /**
   * Loads a program built with the instruction builder (or encoded bytes).
   *
   * @param options Type, instructions, license and optional name, attach type, log level.
   * @returns The program; close it (or `using`) to unload it.
   * @throws {VerifierError} With the whole verifier log when the verifier rejects it.
   */
  static load(options: ProgramLoadOptions): Program {
    const type = PROGRAM_TYPES.indexOf(options.type);
    if (type <= 0) {
      throw new BpfError(`Unknown program type ${options.type}`, { code: "bad_program_type" });
    }
    const code = options.instructions instanceof Uint8Array
      ? options.instructions
      : assemble(options.instructions);
    const name = options.name ?? "";
    const license = toCString(options.license);
    const nameBytes = name === "" ? null : toCString(name.slice(0, 15));
    let logSize = options.logLevel ? 1 << 16 : 0;
    let logLevel: number = options.logLevel ?? 0;
    for (let attempt = 0; attempt < 16; attempt++) {
      const log = logSize > 0 ? new Uint8Array(logSize) : null;
      const opts = new Uint8Array(104);
      const view = new DataView(opts.buffer);
      view.setBigUint64(0, 104n, true);
      if (options.expectedAttachType !== undefined) {
        view.setUint32(12, ATTACH_TYPES[options.expectedAttachType], true);
      }
      view.setUint32(32, options.attachBtfId ?? 0, true);
      view.setUint32(88, logLevel, true);
      view.setUint32(92, logSize, true);
      view.setBigUint64(96, addressOf(log), true);
      const fd = libbpf().bpf_prog_load(
        type,
        nameBytes,
        license,
        code,
        BigInt(code.length / 8),
        opts,
      );
      const text = log === null ? "" : cString(Deno.UnsafePointer.of(log));
      if (fd >= 0) {
        return new Program(
          programInternal,
          null,
          fd,
          { name, closed: false, links: new Set() },
          text,
          options.type,
        );
      }
      if (fd === -28 && logSize > 0 && logSize < MAX_LOG_SIZE) {
        logSize *= 4; // The log did not fit: grow it and load again.
        continue;
      }
      if (fd === -1 || fd === -13 || fd === -22) {
        if (logLevel === 0) {
          // Load again with the verifier log on, to say why.
          logLevel = 1;
          logSize = 1 << 16;
          continue;
        }
        if (text !== "") throw new VerifierError(name || options.type, text, fd);
      }
      throw BpfError.fromErrno(`Load ${options.type} program ${name || "(unnamed)"}`, fd);
    }
    throw new BpfError(`Load program ${name}: the verifier log does not fit 1 GiB`, {
      code: "verifier",
    });
  }

  /**
   * Opens a program pinned in bpffs (for `testRun`, `attachCgroup`, `attachXdp`, `attachTc` and
   * its `id`; closing it leaves the pin).
   *
   * @param path The pin path, such as `/sys/fs/bpf/my_prog`.
   * @returns The program.
   */
  static fromPin(path: string): Program {
    const fd = libbpf().bpf_obj_get(toCString(path));
    if (fd < 0) throw BpfError.fromErrno(`Open pinned program ${path}`, fd);
    const info = new Uint8Array(256);
    const length = new Uint32Array([info.length]);
    const rc = libbpf().bpf_obj_get_info_by_fd(fd, info, new Uint8Array(length.buffer));
    if (rc < 0) {
      libc().close(fd);
      throw BpfError.fromErrno(`Get info of pinned program ${path}`, rc);
    }
    const view = new DataView(info.buffer);
    // struct bpf_prog_info: type at 0, name[16] at 64.
    const nameBytes = info.subarray(64, 80);
    const end = nameBytes.indexOf(0);
    const name = new TextDecoder().decode(nameBytes.subarray(0, end === -1 ? 16 : end));
    const owner = { name: name || path, closed: false, links: new Set<Link>() };
    return new Program(
      programInternal,
      null,
      fd,
      owner,
      "",
      programTypeName(view.getUint32(0, true)),
    );
  }

  /** The program's file descriptor. */
  get fd(): number {
    this.#checkOpen();
    if (this.#pointer === null) return this.#fd;
    const fd = libbpf().bpf_program__fd(this.#pointer);
    if (fd < 0) {
      throw new BpfError(`Program ${this.name} was not loaded (autoload is off for it)`, {
        code: "not_loaded",
      });
    }
    return fd;
  }

  /** Whether the program is in the kernel (`false` for object programs with autoload off). */
  get loaded(): boolean {
    if (this.#owner.closed) return false;
    return this.#pointer === null ? this.#fd >= 0 : libbpf().bpf_program__fd(this.#pointer) >= 0;
  }

  /** The kernel's id of this program (as `bpftool prog list` shows). */
  get id(): number {
    const info = new Uint8Array(256);
    const length = new Uint32Array([info.length]);
    const rc = libbpf().bpf_obj_get_info_by_fd(this.fd, info, new Uint8Array(length.buffer));
    if (rc < 0) throw BpfError.fromErrno(`Get info of program ${this.name}`, rc);
    return new DataView(info.buffer).getUint32(4, true);
  }

  /**
   * Attaches the program as its section name says (`tp/...`, `raw_tp/...`, `fentry/...`,
   * `kprobe/...`, `uprobe/...`, `cgroup_skb/...` needs `attachCgroup`).
   *
   * @returns The link.
   */
  attach(): Link {
    return this.#libbpfAttach(`section ${this.section}`, (p) => libbpf().bpf_program__attach(p));
  }

  /**
   * Attaches to a tracepoint.
   *
   * @param category The category, such as `sched` or `syscalls`.
   * @param name The tracepoint, such as `sched_process_exec`.
   * @returns The link.
   */
  attachTracepoint(category: string, name: string): Link {
    return this.#libbpfAttach(
      `tracepoint ${category}/${name}`,
      (p) => libbpf().bpf_program__attach_tracepoint(p, toCString(category), toCString(name)),
    );
  }

  /**
   * Attaches to a raw tracepoint.
   *
   * @param name The tracepoint, such as `sched_switch`.
   * @returns The link.
   */
  attachRawTracepoint(name: string): Link {
    return this.#libbpfAttach(
      `raw tracepoint ${name}`,
      (p) => libbpf().bpf_program__attach_raw_tracepoint(p, toCString(name)),
    );
  }

  /**
   * Attaches an iterator program (`SEC("iter/task")`, `iter/tcp`, `iter/bpf_map_elem`, ...);
   * read what it writes with {@linkcode readIterator}. An iterator over a map's elements needs
   * that map.
   *
   * @example List processes with an `iter/task` program
   * ```ts ignore
   * import { BpfObject, readIterator } from "@triad/ebpf";
   *
   * using obj = BpfObject.open("tasks.bpf.o");
   * await obj.load();
   * using link = obj.program("dump_task").attachIter();
   * for await (const line of readIterator(link).lines()) console.log(line);
   * ```
   *
   * @param options `map`: the map an `iter/bpf_map_elem` (or `iter/sockmap`) program walks.
   * @returns The link; each {@linkcode readIterator} runs the program over the objects anew.
   */
  attachIter(options: { map?: BpfMap<unknown, unknown> } = {}): Link {
    // struct bpf_iter_attach_opts { size_t sz; union bpf_iter_link_info *link_info; __u32 len; }
    const opts = new Uint8Array(24);
    const view = new DataView(opts.buffer);
    view.setBigUint64(0, 24n, true);
    const linkInfo = new Uint8Array(16); // union bpf_iter_link_info; map.map_fd first
    if (options.map !== undefined) {
      new DataView(linkInfo.buffer).setUint32(0, options.map.fd, true);
      view.setBigUint64(8, addressOf(linkInfo), true);
      view.setUint32(16, linkInfo.length, true);
    }
    return this.#libbpfAttach(
      options.map === undefined
        ? `iterator ${this.section}`
        : `iterator over map ${options.map.name}`,
      (p) => libbpf().bpf_program__attach_iter(p, opts),
      [linkInfo],
    );
  }

  /**
   * Attaches a tracing program (fentry/fexit/fmod_ret, `tp_btf`) to the target named in its
   * section; lsm programs attach to their LSM hook.
   *
   * @returns The link.
   */
  attachTrace(): Link {
    if (this.type === "lsm") {
      return this.#libbpfAttach(
        `LSM hook ${this.section}`,
        (p) => libbpf().bpf_program__attach_lsm(p),
      );
    }
    return this.#libbpfAttach(
      `trace target ${this.section}`,
      (p) => libbpf().bpf_program__attach_trace(p),
    );
  }

  /**
   * Attaches to a kernel function through a kprobe (or kretprobe).
   *
   * @param fn The kernel function, such as `tcp_connect`.
   * @param options `retprobe` for the return.
   * @returns The link.
   * @throws {UnsupportedFeatureError} When the kernel has no kprobes (CONFIG_KPROBE_EVENTS).
   */
  attachKprobe(fn: string, options: KprobeOptions = {}): Link {
    try {
      return this.#libbpfAttach(
        `${options.retprobe ? "kretprobe" : "kprobe"} ${fn}`,
        (p) => libbpf().bpf_program__attach_kprobe(p, options.retprobe ?? false, toCString(fn)),
      );
    } catch (error) {
      if (error instanceof BpfError && !kprobesAvailable()) {
        throw new UnsupportedFeatureError(
          "kprobes (CONFIG_KPROBES, CONFIG_KPROBE_EVENTS)",
          "4.1",
          "this kernel was built without them; use a tracepoint, raw_tp or fentry instead",
        );
      }
      throw error;
    }
  }

  /**
   * Attaches to a user-space function through a uprobe (or uretprobe).
   *
   * @param binary The executable or library path, such as `/usr/lib/x86_64-linux-gnu/libc.so.6`.
   * @param options The function name or offset, the pid, `retprobe`, a cookie.
   * @returns The link.
   */
  attachUprobe(binary: string, options: UprobeOptions = {}): Link {
    const opts = new Uint8Array(40);
    const view = new DataView(opts.buffer);
    view.setBigUint64(0, 40n, true);
    view.setBigUint64(16, options.cookie ?? 0n, true);
    view.setUint8(24, options.retprobe ? 1 : 0);
    const fnName = options.function === undefined ? null : toCString(options.function);
    view.setBigUint64(32, addressOf(fnName), true);
    const where = `${options.retprobe ? "uretprobe" : "uprobe"} ${binary}:` +
      `${options.function ?? ""}${options.offset ? `+0x${options.offset.toString(16)}` : ""}`;
    return this.#libbpfAttach(where, (p) =>
      libbpf().bpf_program__attach_uprobe_opts(
        p,
        options.pid ?? -1,
        toCString(binary),
        BigInt(options.offset ?? 0),
        opts,
      ), [fnName]);
  }

  /**
   * Attaches a `SEC("uprobe.multi")` program to several functions of a binary with one link
   * (`BPF_TRACE_UPROBE_MULTI`, kernel 6.6+). Where the kernel refuses that link, it falls back to
   * one uprobe per function and says why through `onFallback`. Function `i` gets cookie
   * `cookies[i]` (default `i`), read with `bpf_get_attach_cookie`.
   *
   * @example Count calls to two functions
   * ```ts ignore
   * import { BpfObject } from "@triad/ebpf";
   *
   * using obj = BpfObject.open("count.bpf.o");
   * await obj.load();
   * using link = obj.program("count_calls").attachUprobeMulti("/usr/bin/app", ["parse", "emit"], {
   *   onFallback: (reason) => console.error(reason),
   * });
   * ```
   *
   * @param binary The executable or library path.
   * @param functions The function symbols.
   * @param options `pid`, `retprobe`, `cookies`, and `onFallback` (told the reason when one link
   *   per function is used instead).
   * @returns One link (closing it detaches every target, whichever way they were attached).
   */
  attachUprobeMulti(
    binary: string,
    functions: readonly string[],
    options: UprobeMultiOptions = {},
  ): Link {
    this.#checkOpen();
    if (functions.length === 0) {
      throw new BpfError(`Attach program ${this.name} to ${binary}: no functions given`, {
        code: "bad_value",
      });
    }
    const offsets = elfFunctionOffsets(Deno.readFileSync(binary), functions, binary);
    const cookies = functions.map((_, i) => options.cookies?.[i] ?? BigInt(i));
    const where = `${options.retprobe ? "uretprobe" : "uprobe"}.multi ${binary}:` +
      `{${functions.join(",")}}`;
    const path = toCString(binary);
    const offsetArray = new BigUint64Array(offsets.map(BigInt));
    const cookieArray = new BigUint64Array(cookies);
    const attr = new Uint8Array(64);
    const view = new DataView(attr.buffer);
    view.setUint32(0, this.fd, true);
    view.setUint32(8, ATTACH_TYPES.trace_uprobe_multi, true);
    view.setBigUint64(16, addressOf(path), true);
    view.setBigUint64(24, addressOf(new Uint8Array(offsetArray.buffer)), true);
    view.setBigUint64(40, addressOf(new Uint8Array(cookieArray.buffer)), true);
    view.setUint32(48, functions.length, true);
    view.setUint32(52, options.retprobe ? 1 : 0, true); // BPF_F_UPROBE_MULTI_RETURN
    view.setUint32(56, options.pid ?? 0, true);
    let code: number;
    try {
      return this.#linkCreate(where, attr);
    } catch (error) {
      if (!(error instanceof BpfError)) throw error;
      code = error.errno;
    }
    const reason = `${where}: the kernel refused a uprobe_multi link (${errnoName(code)}` +
      `${code === 22 ? "; they need Linux 6.6+ and a uprobe.multi program" : ""}); attaching ` +
      `${functions.length} uprobes instead`;
    (options.onFallback ?? warnFallback)(reason);
    const links: Link[] = [];
    try {
      functions.forEach((fn, i) =>
        links.push(this.attachUprobe(binary, {
          function: fn,
          cookie: cookies[i]!,
          ...(options.pid !== undefined && { pid: options.pid }),
          ...(options.retprobe !== undefined && { retprobe: options.retprobe }),
        }))
      );
    } catch (error) {
      for (const link of links) link.close();
      throw error;
    }
    return this.#makeLink(`${where} (one uprobe each)`, {
      kind: "custom",
      detach: () => links.forEach((link) => link.close()),
    });
  }

  /**
   * Attaches a `SEC("netfilter")` program to a netfilter hook of this process's network
   * namespace with a BPF link (kernel 6.4+; made with raw `bpf()`, libbpf 1.1 has no API for it).
   * The program returns `NF_ACCEPT` (1) or `NF_DROP` (0).
   *
   * @example Run a program on every IPv4 packet for this host
   * ```ts ignore
   * import { BpfObject } from "@triad/ebpf";
   *
   * using obj = BpfObject.open("filter.bpf.o");
   * await obj.load();
   * using link = obj.program("block_port").attachNetfilter({ family: 4, hook: "local_in" });
   * ```
   *
   * @param options `family` 4 or 6, `hook`, `priority` (default 0; lower runs first, and
   *   `INT_MIN`/`INT_MAX` are reserved), `defrag` (reassemble fragments first).
   * @returns The link.
   */
  attachNetfilter(options: NetfilterOptions): Link {
    this.#checkOpen();
    const hooks = ["prerouting", "local_in", "forward", "local_out", "postrouting"];
    const hook = hooks.indexOf(options.hook);
    if (hook < 0 || (options.family !== 4 && options.family !== 6)) {
      throw new BpfError(
        `Attach program ${this.name} to netfilter: expected family 4 or 6 and a hook of ` +
          `${hooks.join(", ")}, got family ${options.family} hook ${options.hook}`,
        { code: "bad_value" },
      );
    }
    const where = `netfilter IPv${options.family} ${options.hook} priority ${
      options.priority ?? 0
    }`;
    const attr = new Uint8Array(48);
    const view = new DataView(attr.buffer);
    view.setUint32(0, this.fd, true);
    view.setUint32(8, ATTACH_TYPES.netfilter, true);
    view.setUint32(16, options.family === 4 ? 2 : 10, true); // NFPROTO_IPV4, NFPROTO_IPV6
    view.setUint32(20, hook, true);
    view.setInt32(24, options.priority ?? 0, true);
    view.setUint32(28, options.defrag ? 1 : 0, true); // BPF_F_NETFILTER_IP_DEFRAG
    return this.#linkCreate(where, attr);
  }

  /**
   * Attaches a `sched_cls` program to a netkit device (kernel 6.7+) with a BPF link: on the
   * primary device or its peer.
   *
   * @param iface The netkit device (name or index).
   * @param options `peer: true` for the peer side.
   * @returns The link.
   */
  attachNetkit(iface: string | number, options: { peer?: boolean } = {}): Link {
    this.#checkOpen();
    const ifindex = interfaceIndex(iface);
    const attr = new Uint8Array(48);
    const view = new DataView(attr.buffer);
    view.setUint32(0, this.fd, true);
    view.setUint32(4, ifindex, true);
    view.setUint32(8, options.peer ? ATTACH_TYPES.netkit_peer : ATTACH_TYPES.netkit_primary, true);
    return this.#linkCreate(`netkit ${options.peer ? "peer" : "primary"} on ${iface}`, attr);
  }

  /** Makes a BPF link with raw `bpf(BPF_LINK_CREATE)`, for kinds libbpf 1.1 does not know. */
  #linkCreate(where: string, attr: Uint8Array<ArrayBuffer>): Link {
    const fd = Number(libc().bpf(BigInt(SYS_BPF), BigInt(BPF_LINK_CREATE), attr, attr.length));
    if (fd < 0) throw BpfError.fromErrno(`Attach program ${this.name} to ${where}`, -errno());
    return this.#makeLink(where, { kind: "fd", fd });
  }

  /**
   * Attaches a USDT program (`SEC("usdt")`, including `ebpf/bpf/usdt.bpf.h`) to every site of a
   * probe compiled into a binary with `DTRACE_PROBE` (`<sys/sdt.h>`): reads the ELF notes,
   * writes each site's argument specs for `triad_usdt_arg()`, increments the probe's semaphore
   * while attached, and makes one uprobe per site. x86-64 argument specs only.
   *
   * @example Sum the first argument of a probe
   * ```ts ignore
   * import { BpfObject } from "@triad/ebpf";
   *
   * using obj = BpfObject.open("usdt.bpf.o");
   * await obj.load();
   * using link = obj.program("on_step").attachUsdt("/usr/bin/app", "app", "step");
   * ```
   *
   * @param binary The executable or library path.
   * @param provider The probe's provider (first argument of `DTRACE_PROBE`).
   * @param name The probe's name.
   * @param options `pid`: only this process.
   * @returns One link for every site.
   */
  attachUsdt(binary: string, provider: string, name: string, options: { pid?: number } = {}): Link {
    this.#checkOpen();
    const where = `USDT ${provider}:${name} in ${binary}`;
    const specs = this.#owner.map?.("triad_usdt_specs");
    if (specs === undefined) {
      throw new BpfError(
        `Attach program ${this.name} to ${where}: its object has no triad_usdt_specs map ` +
          `(include ebpf/bpf/usdt.bpf.h)`,
        { code: "unsupported" },
      );
    }
    const sites = elfUsdtNotes(Deno.readFileSync(binary), binary).filter((note) =>
      note.provider === provider && note.name === name
    );
    if (sites.length === 0) {
      throw new BpfError(`Attach program ${this.name} to ${where}: no such probe in the binary`, {
        code: "no_such_probe",
      });
    }
    const links: Link[] = [];
    try {
      for (const site of sites) {
        const id = usdtNextSpec.get(specs) ?? 0;
        if (id >= specs.maxEntries) {
          throw new BpfError(`Attach ${where}: all ${specs.maxEntries} USDT spec slots are used`, {
            code: "full",
          });
        }
        usdtNextSpec.set(specs, id + 1);
        specs.withCodecs(Uint32Codec, Bytes(USDT_SPEC_SIZE)).update(
          id,
          encodeUsdtSpec(site.args, `${where} at 0x${site.offset.toString(16)}`),
        );
        links.push(this.#attachUprobeAt(binary, site.offset, site.semaphoreOffset, BigInt(id), {
          ...options,
          where: `${where} at 0x${site.offset.toString(16)}`,
        }));
      }
    } catch (error) {
      for (const link of links) link.close();
      throw error;
    }
    return this.#makeLink(`${where} (${sites.length} sites)`, {
      kind: "custom",
      detach: () => links.forEach((link) => link.close()),
    });
  }

  #attachUprobeAt(
    binary: string,
    offset: number,
    semaphoreOffset: number,
    cookie: bigint,
    options: { pid?: number; where: string },
  ): Link {
    // struct bpf_uprobe_opts { sz; ref_ctr_offset; bpf_cookie; retprobe; func_name }
    const opts = new Uint8Array(40);
    const view = new DataView(opts.buffer);
    view.setBigUint64(0, 40n, true);
    view.setBigUint64(8, BigInt(semaphoreOffset), true);
    view.setBigUint64(16, cookie, true);
    return this.#libbpfAttach(
      options.where,
      (p) =>
        libbpf().bpf_program__attach_uprobe_opts(
          p,
          options.pid ?? -1,
          toCString(binary),
          BigInt(offset),
          opts,
        ),
      [opts],
    );
  }

  /**
   * Attaches a `SEC("kprobe.multi")` program to many kernel functions with one link (kernel
   * 5.18+), by glob pattern (`tcp_*`) or by names; falls back to one kprobe per named function
   * where the kernel refuses the multi link, telling `onFallback` why.
   *
   * @param target A glob pattern, or the function names.
   * @param options `retprobe`, and `onFallback` (told the reason for the fallback; default: a
   *   `console.warn`).
   * @returns One link.
   */
  attachKprobeMulti(
    target: string | readonly string[],
    options: { retprobe?: boolean; onFallback?: (reason: string) => void } = {},
  ): Link {
    this.#checkOpen();
    if (!kprobesAvailable()) {
      throw new UnsupportedFeatureError(
        "kprobe.multi attachment",
        "5.18",
        "the kernel was built without CONFIG_KPROBE_EVENTS (kprobes are compiled out)",
      );
    }
    const names = typeof target === "string" ? [] : target.map((name) => toCString(name));
    const symbols = new BigUint64Array(names.map(addressOf));
    // struct bpf_kprobe_multi_opts { sz; const char **syms; const unsigned long *addrs;
    //   const __u64 *cookies; size_t cnt; bool retprobe; }
    const opts = new Uint8Array(48);
    const view = new DataView(opts.buffer);
    view.setBigUint64(0, 48n, true);
    if (names.length > 0) {
      view.setBigUint64(8, addressOf(new Uint8Array(symbols.buffer)), true);
      view.setBigUint64(32, BigInt(names.length), true);
    }
    view.setUint8(40, options.retprobe ? 1 : 0);
    const pattern = typeof target === "string" ? toCString(target) : null;
    const where = `kprobe.multi ${typeof target === "string" ? target : target.join(",")}`;
    try {
      return this.#libbpfAttach(
        where,
        (p) => libbpf().bpf_program__attach_kprobe_multi_opts(p, pattern, opts),
        [names, symbols],
      );
    } catch (error) {
      if (typeof target === "string" || !(error instanceof BpfError)) throw error;
      (options.onFallback ?? warnFallback)(
        `${where}: the kernel refused a kprobe_multi link (${error.message}); attaching ` +
          `${target.length} kprobes instead`,
      );
      const links: Link[] = [];
      try {
        for (const fn of target) {
          links.push(this.attachKprobe(fn, { retprobe: options.retprobe ?? false }));
        }
      } catch (inner) {
        for (const link of links) link.close();
        throw inner;
      }
      return this.#makeLink(`${where} (one kprobe each)`, {
        kind: "custom",
        detach: () => links.forEach((link) => link.close()),
      });
    }
  }

  /**
   * Attaches a cgroup program (cgroup_skb, cgroup_sock, cgroup_sock_addr, sock_ops...) to a
   * cgroup, with the attach type from its section (`cgroup_skb/ingress`).
   *
   * @param cgroup The cgroup directory, such as `/sys/fs/cgroup/my.slice`.
   * @returns The link.
   */
  attachCgroup(cgroup: string): Link {
    const fd = libc().open(toCString(cgroup), 0o200000, /* O_DIRECTORY */ 0);
    if (fd < 0) throw BpfError.fromErrno(`Open cgroup ${cgroup}`, -errno());
    try {
      return this.#libbpfAttach(
        `cgroup ${cgroup}`,
        (p) => libbpf().bpf_program__attach_cgroup(p, fd),
      );
    } catch (error) {
      if (error instanceof BpfError && error.errno === 9) {
        const mounts = cgroup2Mounts();
        throw new BpfError(
          `Attach program ${this.name} to cgroup ${cgroup}: not a cgroup v2 directory (cgroup2 ` +
            `is mounted at ${
              mounts.join(", ") || "no place: mount -t cgroup2 none /sys/fs/cgroup"
            })`,
          { errno: 9, cause: error },
        );
      }
      throw error;
    } finally {
      libc().close(fd);
    }
  }

  /**
   * Attaches a socket map program (`sk_msg`, `sk_skb/stream_verdict`, `sk_skb/stream_parser`,
   * `sk_skb/verdict`) to a `sockmap` or `sockhash`: it then runs for every socket in that map.
   * The attach type comes from the section; `close()` detaches it.
   *
   * @example Redirect what sockets send
   * ```ts ignore
   * import { BpfObject } from "@triad/ebpf";
   *
   * using obj = BpfObject.open("redirect.bpf.o");
   * await obj.load();
   * using link = obj.program("redirect").attachToMap(obj.map("redirect_hash"));
   * const socketFd = 7; // a connected TCP socket of this process
   * obj.map("redirect_hash").update(1, BigInt(socketFd));
   * ```
   *
   * @param map The socket map.
   * @returns The link.
   */
  attachToMap(map: BpfMap<unknown, unknown>): Link {
    this.#checkOpen();
    if (map.type !== "sockmap" && map.type !== "sockhash") {
      throw new BpfError(
        `Attach program ${this.name} to map ${map.name}: it is ${map.type}, not sockmap or ` +
          `sockhash`,
        { code: "bad_map_type" },
      );
    }
    const attachType =
      SOCKET_MAP_ATTACH[this.section.replace(/\/.*$/, "") === "sk_msg" ? "sk_msg" : this.section];
    if (attachType === undefined) {
      throw new BpfError(
        `Attach program ${this.name} (section ${this.section}) to map ${map.name}: only ` +
          `sk_msg, sk_skb/stream_verdict, sk_skb/stream_parser and sk_skb/verdict attach to ` +
          `socket maps`,
        { code: "unsupported" },
      );
    }
    const programFd = this.fd;
    const mapFd = map.fd;
    const rc = libbpf().bpf_prog_attach(programFd, mapFd, ATTACH_TYPES[attachType], 0);
    if (rc < 0) {
      throw BpfError.fromErrno(`Attach program ${this.name} to ${map.type} ${map.name}`, rc);
    }
    return this.#makeLink(`${map.type} ${map.name} (${attachType})`, {
      kind: "custom",
      detach: () => {
        libbpf().bpf_prog_detach2(programFd, mapFd, ATTACH_TYPES[attachType]);
      },
    });
  }

  /**
   * Attaches a program to a network namespace: `sk_lookup` (kernel 5.9+) and `flow_dissector`.
   *
   * @param netns The namespace: a path such as `/proc/self/ns/net` or `/run/netns/test`.
   * @returns The link (a BPF link: detached on close or when the namespace goes).
   */
  attachNetns(netns: string): Link {
    const fd = libc().open(toCString(netns), 0, 0);
    if (fd < 0) throw BpfError.fromErrno(`Open network namespace ${netns}`, -errno());
    try {
      return this.#libbpfAttach(
        `network namespace ${netns}`,
        (p) => libbpf().bpf_program__attach_netns(p, fd),
      );
    } finally {
      libc().close(fd);
    }
  }

  /**
   * Attaches an XDP program to a network interface (a BPF link, Linux 5.9+).
   *
   * @param iface The interface name (`eth0`) or index.
   * @param options `mode`: `auto` (the driver's native XDP where it has it, else generic),
   *   `native` or `generic` (skb mode, works on every interface).
   * @returns The link.
   */
  attachXdp(iface: string | number, options: XdpOptions = {}): Link {
    const ifindex = interfaceIndex(iface);
    const mode = options.mode ?? "auto";
    if (mode === "auto") {
      return this.#libbpfAttach(
        `XDP on ${iface}`,
        (p) => libbpf().bpf_program__attach_xdp(p, ifindex),
      );
    }
    // struct bpf_link_create_opts: size_t sz; __u32 flags; ...
    const opts = new Uint8Array(16);
    const view = new DataView(opts.buffer);
    view.setBigUint64(0, 16n, true);
    view.setUint32(8, mode === "generic" ? XDP_FLAGS_SKB_MODE : XDP_FLAGS_DRV_MODE, true);
    const fd = libbpf().bpf_link_create(this.fd, ifindex, ATTACH_TYPES.xdp, opts);
    if (fd < 0) {
      throw BpfError.fromErrno(`Attach program ${this.name} to ${mode} XDP on ${iface}`, fd);
    }
    return this.#makeLink(`${mode} XDP on ${iface}`, { kind: "fd", fd });
  }

  /**
   * Attaches a `sched_cls` program to a network interface's ingress or egress: through tcx links
   * where the kernel has them (Linux 6.6+), otherwise through a netlink clsact qdisc filter that
   * the link removes again on close.
   *
   * @param iface The interface name or index.
   * @param options The direction.
   * @returns The link.
   */
  attachTc(iface: string | number, options: TcOptions = {}): Link {
    const direction = options.direction ?? "ingress";
    const ifindex = interfaceIndex(iface);
    const where = `tc ${direction} on ${iface}`;
    const attachType = direction === "ingress" ? ATTACH_TYPES.tcx_ingress : ATTACH_TYPES.tcx_egress;
    const mode = options.mode ?? "auto";
    if (mode !== "netlink") {
      const linkFd = libbpf().bpf_link_create(this.fd, ifindex, attachType, null);
      if (linkFd >= 0) {
        return this.#makeLink(`tcx ${direction} on ${iface}`, { kind: "fd", fd: linkFd });
      }
      if (mode === "tcx") {
        throw BpfError.fromErrno(
          `Attach program ${this.name} to tcx ${direction} on ${iface}`,
          linkFd,
        );
      }
    }
    // No tcx (before 6.6): a clsact qdisc and a direct-action filter over netlink.
    const hook = new Uint8Array(24);
    const hookView = new DataView(hook.buffer);
    hookView.setBigUint64(0, 24n, true);
    hookView.setInt32(8, ifindex, true);
    hookView.setUint32(12, direction === "ingress" ? 1 : 2, true);
    const created = libbpf().bpf_tc_hook_create(hook);
    if (created < 0 && created !== -17) {
      throw BpfError.fromErrno(`Create clsact qdisc for ${where}`, created);
    }
    const opts = new Uint8Array(32);
    const optsView = new DataView(opts.buffer);
    optsView.setBigUint64(0, 32n, true);
    optsView.setInt32(8, this.fd, true);
    const rc = libbpf().bpf_tc_attach(hook, opts);
    if (rc < 0) {
      if (created === 0) libbpf().bpf_tc_hook_destroy(hook);
      throw BpfError.fromErrno(`Attach program ${this.name} to ${where}`, rc);
    }
    const handle = optsView.getUint32(20, true);
    const priority = optsView.getUint32(24, true);
    return this.#makeLink(`${where} (netlink)`, {
      kind: "custom",
      detach: () => {
        const detach = new Uint8Array(32);
        const detachView = new DataView(detach.buffer);
        detachView.setBigUint64(0, 32n, true);
        detachView.setUint32(20, handle, true);
        detachView.setUint32(24, priority, true);
        libbpf().bpf_tc_detach(hook, detach);
        if (created === 0) libbpf().bpf_tc_hook_destroy(hook);
      },
    });
  }

  /**
   * Pins the program to bpffs.
   *
   * @param path The pin path, such as `/sys/fs/bpf/my_prog`.
   */
  pin(path: string): void {
    const rc = libbpf().bpf_obj_pin(this.fd, toCString(path));
    if (rc < 0) throw BpfError.fromErrno(`Pin program ${this.name} at ${path}`, rc);
  }

  /**
   * Runs the program once (or `repeat` times) on given data through `BPF_PROG_TEST_RUN`
   * (socket filter, xdp, sched_cls, cgroup_skb, raw tracepoint, syscall programs).
   *
   * @param input The data and/or context, or just the data.
   * @returns The return value, output data and average duration.
   */
  testRun(input: TestRunInput | Uint8Array): TestRunResult {
    const options: TestRunInput = input instanceof Uint8Array ? { data: input } : input;
    const dataIn = options.data === undefined ? null : new Uint8Array(options.data);
    const dataOut = dataIn === null
      ? null
      : new Uint8Array(options.dataOutSize ?? dataIn.length + 256);
    const ctxIn = options.context === undefined ? null : new Uint8Array(options.context);
    const ctxOut = ctxIn === null ? null : new Uint8Array(ctxIn.length);
    const opts = new Uint8Array(80);
    const view = new DataView(opts.buffer);
    view.setBigUint64(0, 80n, true);
    view.setBigUint64(8, addressOf(dataIn), true);
    view.setBigUint64(16, addressOf(dataOut), true);
    view.setUint32(24, dataIn?.length ?? 0, true);
    view.setUint32(28, dataOut?.length ?? 0, true);
    view.setBigUint64(32, addressOf(ctxIn), true);
    view.setBigUint64(40, addressOf(ctxOut), true);
    view.setUint32(48, ctxIn?.length ?? 0, true);
    view.setUint32(52, ctxOut?.length ?? 0, true);
    view.setInt32(60, options.repeat ?? 1, true);
    view.setUint32(68, options.flags ?? 0, true);
    view.setUint32(72, options.cpu ?? 0, true);
    const rc = libbpf().bpf_prog_test_run_opts(this.fd, opts);
    if (rc < 0) throw BpfError.fromErrno(`Test run of program ${this.name} (${this.type})`, rc);
    const result: TestRunResult = {
      retval: view.getUint32(56, true),
      data: dataOut === null ? new Uint8Array(0) : dataOut.slice(0, view.getUint32(28, true)),
      durationNs: view.getUint32(64, true),
    };
    if (ctxOut !== null) result.context = ctxOut.slice(0, view.getUint32(52, true));
    return result;
  }

  /** Unloads a built program (programs of an object unload with their object). */
  close(): void {
    if (this.#ownsFd && this.#fd >= 0) {
      for (const link of [...this.#owner.links]) link.close();
      libc().close(this.#fd);
      this.#fd = -1;
      this.#owner.closed = true;
    }
  }

  /** Same as {@linkcode Program.close}. */
  [Symbol.dispose](): void {
    this.close();
  }

  #checkOpen(): void {
    if (this.#owner.closed || (this.#ownsFd && this.#fd < 0)) {
      throw new BpfError(`Program ${this.name} is closed (object ${this.#owner.name})`, {
        code: "closed",
      });
    }
  }

  #makeLink(where: string, backend: LinkBackend): Link {
    const owner = this.#owner;
    const link: Link = createLink(
      `${this.name} → ${where}`,
      backend,
      () => owner.links.delete(link),
    );
    owner.links.add(link);
    return link;
  }

  #libbpfAttach(
    where: string,
    attach: (pointer: Deno.PointerObject) => Deno.PointerValue,
    keepAlive: unknown[] = [],
  ): Link {
    this.#checkOpen();
    if (this.#pointer === null) {
      throw new BpfError(
        `Program ${this.name} was built with Program.load: attach ${where} needs a program from ` +
          `a BpfObject (or use attachCgroup/attachXdp/attachTc/testRun)`,
        { code: "unsupported" },
      );
    }
    const pointer = attach(this.#pointer);
    keepAlive.length = 0;
    if (pointer === null) {
      throw BpfError.fromErrno(`Attach program ${this.name} to ${where}`, errno());
    }
    return this.#makeLink(where, { kind: "libbpf", pointer });
  }
}

/** Returns the index of a network interface. */
function interfaceIndex(iface: string | number): number {
  if (typeof iface === "number") return iface;
  const index = libc().if_nametoindex(toCString(iface));
  if (index === 0) {
    throw new BpfError(`Network interface ${iface} does not exist`, { errno: errno() || 19 });
  }
  return index;
}

/** Returns whether the kernel has kprobe events. */
export function kprobesAvailable(): boolean {
  return [
    "/sys/kernel/tracing/kprobe_events",
    "/sys/kernel/debug/tracing/kprobe_events",
    "/sys/bus/event_source/devices/kprobe",
  ].some(exists);
}

/** Returns where cgroup v2 is mounted (`/sys/fs/cgroup`, or `/sys/fs/cgroup/unified` on hybrid systems). */
export function cgroup2Mounts(): string[] {
  try {
    return Deno.readTextFileSync("/proc/self/mounts").split("\n")
      .map((line) => line.split(" "))
      .filter((fields) => fields[2] === "cgroup2")
      .map((fields) => fields[1]!);
  } catch {
    return [];
  }
}
