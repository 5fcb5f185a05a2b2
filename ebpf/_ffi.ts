/**
 * The one place that dlopens the system libbpf (`libbpf.so.1`) and libc. Symbols are declared with
 * their C signatures; symbols newer than libbpf 1.1 (Debian 12) are `optional`, so older libraries
 * load and newer ones light up more.
 *
 * @module
 */
import { TriadError } from "@triad/core";

const P = "pointer" as const;
const S = "buffer" as const;

const LIBBPF_SYMBOLS = {
  libbpf_major_version: { parameters: [], result: "u32" },
  libbpf_minor_version: { parameters: [], result: "u32" },
  libbpf_version_string: { parameters: [], result: P },
  libbpf_set_print: { parameters: ["function"], result: P },
  libbpf_num_possible_cpus: { parameters: [], result: "i32" },
  libbpf_bpf_prog_type_str: { parameters: ["u32"], result: P },
  libbpf_bpf_map_type_str: { parameters: ["u32"], result: P },
  libbpf_bpf_attach_type_str: { parameters: ["u32"], result: P },
  libbpf_probe_bpf_prog_type: { parameters: ["u32", P], result: "i32" },
  libbpf_probe_bpf_map_type: { parameters: ["u32", P], result: "i32" },
  libbpf_probe_bpf_helper: { parameters: ["u32", "u32", P], result: "i32" },

  bpf_object__open_file: { parameters: [S, S], result: P },
  bpf_object__open_mem: { parameters: [S, "usize", S], result: P },
  bpf_object__load: { parameters: [P], result: "i32" },
  bpf_object__close: { parameters: [P], result: "void" },
  bpf_object__name: { parameters: [P], result: P },
  bpf_object__next_program: { parameters: [P, P], result: P },
  bpf_object__next_map: { parameters: [P, P], result: P },
  bpf_object__btf: { parameters: [P], result: P },

  bpf_program__name: { parameters: [P], result: P },
  bpf_program__section_name: { parameters: [P], result: P },
  bpf_program__type: { parameters: [P], result: "u32" },
  bpf_program__expected_attach_type: { parameters: [P], result: "u32" },
  bpf_program__fd: { parameters: [P], result: "i32" },
  bpf_program__set_log_buf: { parameters: [P, S, "usize"], result: "i32" },
  bpf_program__set_log_level: { parameters: [P, "u32"], result: "i32" },
  bpf_program__autoload: { parameters: [P], result: "bool" },
  bpf_program__set_autoload: { parameters: [P, "bool"], result: "i32" },
  bpf_program__set_type: { parameters: [P, "u32"], result: "i32" },
  bpf_program__set_expected_attach_type: { parameters: [P, "u32"], result: "i32" },
  bpf_program__attach_kprobe_multi_opts: { parameters: [P, S, S], result: P },
  bpf_program__pin: { parameters: [P, S], result: "i32" },
  bpf_program__unpin: { parameters: [P, S], result: "i32" },
  bpf_program__attach: { parameters: [P], result: P },
  bpf_program__attach_tracepoint: { parameters: [P, S, S], result: P },
  bpf_program__attach_raw_tracepoint: { parameters: [P, S], result: P },
  bpf_program__attach_trace: { parameters: [P], result: P },
  bpf_program__attach_lsm: { parameters: [P], result: P },
  bpf_program__attach_kprobe: { parameters: [P, "bool", S], result: P },
  bpf_program__attach_uprobe_opts: { parameters: [P, "i32", S, "usize", S], result: P },
  bpf_program__attach_cgroup: { parameters: [P, "i32"], result: P },
  bpf_program__attach_xdp: { parameters: [P, "i32"], result: P },
  bpf_program__attach_netns: { parameters: [P, "i32"], result: P },
  bpf_program__attach_iter: { parameters: [P, S], result: P },
  bpf_iter_create: { parameters: ["i32"], result: "i32" },
  // libbpf 1.3+: tcx links (kernel 6.6+). Older libbpf falls back to netlink tc.
  bpf_program__attach_tcx: { parameters: [P, "i32", S], result: P, optional: true },

  bpf_link__destroy: { parameters: [P], result: "i32" },
  bpf_link__fd: { parameters: [P], result: "i32" },
  bpf_link__pin: { parameters: [P, S], result: "i32" },
  bpf_link__unpin: { parameters: [P], result: "i32" },
  bpf_link__open: { parameters: [S], result: P },
  bpf_link__pin_path: { parameters: [P], result: P },

  bpf_map__name: { parameters: [P], result: P },
  bpf_map__type: { parameters: [P], result: "u32" },
  bpf_map__key_size: { parameters: [P], result: "u32" },
  bpf_map__value_size: { parameters: [P], result: "u32" },
  bpf_map__max_entries: { parameters: [P], result: "u32" },
  bpf_map__map_flags: { parameters: [P], result: "u32" },
  bpf_map__set_max_entries: { parameters: [P, "u32"], result: "i32" },
  bpf_map__fd: { parameters: [P], result: "i32" },
  bpf_map__initial_value: { parameters: [P, S], result: P },
  bpf_map__btf_key_type_id: { parameters: [P], result: "u32" },
  bpf_map__btf_value_type_id: { parameters: [P], result: "u32" },
  bpf_map__set_pin_path: { parameters: [P, S], result: "i32" },

  bpf_map_create: { parameters: ["u32", S, "u32", "u32", "u32", S], result: "i32" },
  bpf_map_lookup_elem: { parameters: ["i32", S, S], result: "i32" },
  bpf_map_lookup_elem_flags: { parameters: ["i32", S, S, "u64"], result: "i32" },
  bpf_map_update_elem: { parameters: ["i32", S, S, "u64"], result: "i32" },
  bpf_map_delete_elem: { parameters: ["i32", S], result: "i32" },
  bpf_map_get_next_key: { parameters: ["i32", S, S], result: "i32" },
  bpf_map_lookup_batch: { parameters: ["i32", S, S, S, S, S, S], result: "i32" },
  bpf_map_lookup_and_delete_batch: { parameters: ["i32", S, S, S, S, S, S], result: "i32" },
  bpf_map_update_batch: { parameters: ["i32", S, S, S, S], result: "i32" },
  bpf_map_delete_batch: { parameters: ["i32", S, S, S], result: "i32" },
  bpf_obj_pin: { parameters: ["i32", S], result: "i32" },
  bpf_obj_get: { parameters: [S], result: "i32" },
  bpf_map_get_fd_by_id: { parameters: ["u32"], result: "i32" },
  bpf_obj_get_info_by_fd: { parameters: ["i32", S, S], result: "i32" },
  bpf_prog_load: { parameters: ["u32", S, S, S, "usize", S], result: "i32" },
  bpf_prog_test_run_opts: { parameters: ["i32", S], result: "i32" },
  bpf_prog_attach: { parameters: ["i32", "i32", "u32", "u32"], result: "i32" },
  bpf_prog_detach2: { parameters: ["i32", "i32", "u32"], result: "i32" },
  bpf_link_create: { parameters: ["i32", "i32", "u32", S], result: "i32" },

  bpf_tc_hook_create: { parameters: [S], result: "i32" },
  bpf_tc_hook_destroy: { parameters: [S], result: "i32" },
  bpf_tc_attach: { parameters: [S, S], result: "i32" },
  bpf_tc_detach: { parameters: [S, S], result: "i32" },

  btf__raw_data: { parameters: [P, S], result: P },

  // libbpf 1.1+: user ring buffers (kernel 6.1+).
  user_ring_buffer__new: { parameters: ["i32", S], result: P, optional: true },
  user_ring_buffer__reserve: { parameters: [P, "u32"], result: P, optional: true },
  user_ring_buffer__submit: { parameters: [P, P], result: "void", optional: true },
  user_ring_buffer__discard: { parameters: [P, P], result: "void", optional: true },
  user_ring_buffer__free: { parameters: [P], result: "void", optional: true },
} as const satisfies Deno.ForeignLibraryInterface;

const LIBC_SYMBOLS = {
  __errno_location: { parameters: [], result: P },
  close: { parameters: ["i32"], result: "i32" },
  open: { parameters: [S, "i32", "u32"], result: "i32" },
  read: { parameters: ["i32", S, "usize"], result: "isize" },
  write: { parameters: ["i32", S, "usize"], result: "isize" },
  mmap: { parameters: [P, "usize", "i32", "i32", "i32", "i64"], result: P },
  munmap: { parameters: [P, "usize"], result: "i32" },
  getpagesize: { parameters: [], result: "i32" },
  epoll_create1: { parameters: ["i32"], result: "i32" },
  epoll_ctl: { parameters: ["i32", "i32", "i32", S], result: "i32" },
  epoll_wait: { parameters: ["i32", S, "i32", "i32"], result: "i32" },
  // The same call that may block, run on a worker thread so Deno's event loop stays free.
  epoll_wait_blocking: {
    name: "epoll_wait",
    parameters: ["i32", S, "i32", "i32"],
    result: "i32",
    nonblocking: true,
  },
  eventfd: { parameters: ["u32", "i32"], result: "i32" },
  ioctl: { parameters: ["i32", "u64", "u64"], result: "i32" },
  syscall: { parameters: ["i64", S, "i64", "i64", "i64", "u64"], result: "i64" },
  // bpf(2) itself, for link kinds newer than libbpf 1.1 (uprobe_multi, netfilter, tcx).
  bpf: { name: "syscall", parameters: ["i64", "i64", S, "u32"], result: "i64" },
  if_nametoindex: { parameters: [S], result: "u32" },
  vsnprintf: { parameters: [S, "usize", P, P], result: "i32" },
  getpid: { parameters: [], result: "i32" },
} as const satisfies Deno.ForeignLibraryInterface;

/** The libbpf symbols, with their C signatures. */
type Libbpf = Deno.DynamicLibrary<typeof LIBBPF_SYMBOLS>["symbols"];
/** The libc symbols, with their C signatures. */
export type Libc = Deno.DynamicLibrary<typeof LIBC_SYMBOLS>["symbols"];

/** Raised when the system libbpf cannot be loaded; the message names the package to install. */
export class LibbpfMissingError extends TriadError {
  /**
   * Creates the error.
   *
   * @param tried The paths tried.
   * @param cause The last loader error.
   */
  constructor(tried: readonly string[], cause: unknown) {
    super(
      `Cannot load libbpf (tried ${tried.join(", ")}): install it with "apt-get install libbpf1" ` +
        `(Debian/Ubuntu) or "dnf install libbpf" (Fedora)`,
      { code: "libbpf_missing", cause },
    );
  }
}

// TRIAD_LIBBPF names the one library to load (a newer libbpf built elsewhere, say).
const LIBBPF_PATHS = Deno.env.get("TRIAD_LIBBPF")?.split(":") ?? [
  "libbpf.so.1",
  "/usr/lib/x86_64-linux-gnu/libbpf.so.1",
  "/usr/lib/aarch64-linux-gnu/libbpf.so.1",
  "/usr/lib64/libbpf.so.1",
  "/usr/lib/libbpf.so.1",
];

let libbpfLib: Deno.DynamicLibrary<typeof LIBBPF_SYMBOLS> | undefined;
let libcLib: Deno.DynamicLibrary<typeof LIBC_SYMBOLS> | undefined;

/** Returns libbpf's symbols, loading the library on first use. */
export function libbpf(): Libbpf {
  if (libbpfLib === undefined) {
    let lastError: unknown;
    for (const path of LIBBPF_PATHS) {
      try {
        libbpfLib = Deno.dlopen(path, LIBBPF_SYMBOLS);
        break;
      } catch (error) {
        lastError = error;
      }
    }
    if (libbpfLib === undefined) throw new LibbpfMissingError(LIBBPF_PATHS, lastError);
    // libbpf's print callback is process-wide and must outlive every caller: only the main
    // isolate (which lives as long as the process) installs one. In Workers libbpf keeps its own.
    if (!inWorker()) installPrintCallback(libbpfLib.symbols);
  }
  return libbpfLib.symbols;
}

function inWorker(): boolean {
  const scope =
    (globalThis as { WorkerGlobalScope?: abstract new () => unknown }).WorkerGlobalScope;
  return scope !== undefined && globalThis instanceof scope;
}

/** Returns libc's symbols, loading the library on first use. */
export function libc(): Libc {
  libcLib ??= Deno.dlopen("libc.so.6", LIBC_SYMBOLS);
  return libcLib.symbols;
}

/** Returns the calling thread's `errno`, read right after a failed call. */
export function errno(): number {
  const pointer = libc().__errno_location();
  return pointer === null ? 0 : new Deno.UnsafePointerView(pointer).getInt32();
}

/** Returns the version of the loaded libbpf, such as `[1, 1]`. */
export function libbpfVersion(): [number, number] {
  const lib = libbpf();
  return [lib.libbpf_major_version(), lib.libbpf_minor_version()];
}

/** libbpf's messages since the last {@linkcode takeLibbpfMessages}, newest last (bounded). */
const messages: string[] = [];
const MAX_MESSAGES = 200;
const PRINT_CALLBACK = { parameters: ["i32", "pointer", "pointer"], result: "i32" } as const;
// The callback must outlive every libbpf call: keep it reachable for the life of the process.
const printCallbacks = new Set<Deno.UnsafeCallback<typeof PRINT_CALLBACK>>();

function installPrintCallback(lib: Libbpf): void {
  let text = new Uint8Array(8192);
  // vsnprintf consumes its va_list, so each attempt gets its own copy of the va_list state (what
  // va_copy does: 24 bytes on x86-64, 32 on arm64).
  const vaFirst = new Uint8Array(32);
  const vaSecond = new Uint8Array(32);
  const callback = new Deno.UnsafeCallback(
    PRINT_CALLBACK,
    (level, format, args) => {
      // Level 2 is LIBBPF_DEBUG: too chatty to keep.
      if (level >= 2 || format === null || args === null) return 0;
      const state = new Uint8Array(Deno.UnsafePointerView.getArrayBuffer(args, 32));
      vaFirst.set(state);
      vaSecond.set(state);
      let length = libc().vsnprintf(
        text,
        BigInt(text.length),
        format,
        Deno.UnsafePointer.of(vaFirst),
      );
      if (length >= text.length) {
        // The verifier log arrives whole in one message: grow until it fits.
        text = new Uint8Array(length + 1);
        length = libc().vsnprintf(
          text,
          BigInt(text.length),
          format,
          Deno.UnsafePointer.of(vaSecond),
        );
      }
      if (length <= 0) return 0;
      const message = new TextDecoder().decode(text.subarray(0, length)).trimEnd();
      if (text.length > 1 << 20) text = new Uint8Array(8192);
      if (message !== "") {
        messages.push(message);
        if (messages.length > MAX_MESSAGES) messages.shift();
        if (Deno.env.get("TRIAD_LIBBPF_DEBUG")) console.error(message);
      }
      return 0;
    },
  );
  callback.unref();
  lib.libbpf_set_print(callback.pointer);
  printCallbacks.add(callback);
}

/** Returns and clears libbpf's recent warnings (they explain most failures). */
export function takeLibbpfMessages(): string[] {
  return messages.splice(0, messages.length);
}

/** Reads a NUL-terminated C string, or `""` for NULL. */
export function cString(pointer: Deno.PointerValue): string {
  return pointer === null ? "" : Deno.UnsafePointerView.getCString(pointer);
}

const encoder = new TextEncoder();

/** Encodes a string as a NUL-terminated C string buffer. */
export function toCString(text: string): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(encoder.encode(text).length + 1);
  encoder.encodeInto(text, bytes);
  return bytes;
}

/** Returns the address of a buffer as a bigint (for pointer fields inside option structs). */
export function addressOf(buffer: Uint8Array<ArrayBuffer> | null): bigint {
  return buffer === null ? 0n : BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(buffer)));
}

/** The page size. */
export function pageSize(): number {
  return libc().getpagesize();
}

/** The number of possible CPUs (the size of per-CPU values). */
export function possibleCpus(): number {
  return libbpf().libbpf_num_possible_cpus();
}

/** Iterates over the `bpf_program` pointers of a `bpf_object`. */
export function* eachProgram(object: Deno.PointerObject): Generator<Deno.PointerObject> {
  const lib = libbpf();
  for (
    let p = lib.bpf_object__next_program(object, null);
    p !== null;
    p = lib.bpf_object__next_program(object, p)
  ) {
    yield p;
  }
}

/** Iterates over the `bpf_map` pointers of a `bpf_object`. */
export function* eachMap(object: Deno.PointerObject): Generator<Deno.PointerObject> {
  const lib = libbpf();
  for (
    let m = lib.bpf_object__next_map(object, null);
    m !== null;
    m = lib.bpf_object__next_map(object, m)
  ) {
    yield m;
  }
}
