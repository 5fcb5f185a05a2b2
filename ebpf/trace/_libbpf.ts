/**
 * TEMPORARY: the few libbpf calls the tracer needs, until `@triad/ebpf` (issue 3) lands its
 * loader. Nothing outside `ebpf/trace/` uses this file; it goes away when the tracer moves onto
 * `BpfObject` and `RingBufferReader`.
 *
 * @module
 */

const LIBBPF_PATHS = ["libbpf.so.1", "libbpf.so"];

const symbols = {
  bpf_object__open_mem: { parameters: ["buffer", "usize", "pointer"], result: "pointer" },
  bpf_object__load: { parameters: ["pointer"], result: "i32" },
  bpf_object__close: { parameters: ["pointer"], result: "void" },
  bpf_object__btf: { parameters: ["pointer"], result: "pointer" },
  bpf_object__next_map: { parameters: ["pointer", "pointer"], result: "pointer" },
  bpf_object__next_program: { parameters: ["pointer", "pointer"], result: "pointer" },
  bpf_map__name: { parameters: ["pointer"], result: "pointer" },
  bpf_map__fd: { parameters: ["pointer"], result: "i32" },
  bpf_map__set_max_entries: { parameters: ["pointer", "u32"], result: "i32" },
  bpf_map__initial_value: { parameters: ["pointer", "buffer"], result: "pointer" },
  bpf_map__set_initial_value: { parameters: ["pointer", "buffer", "usize"], result: "i32" },
  bpf_program__name: { parameters: ["pointer"], result: "pointer" },
  bpf_program__set_autoload: { parameters: ["pointer", "bool"], result: "i32" },
  bpf_program__attach: { parameters: ["pointer"], result: "pointer" },
  bpf_link__destroy: { parameters: ["pointer"], result: "i32" },
  bpf_map_lookup_elem: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  btf__find_by_name_kind: { parameters: ["pointer", "buffer", "u32"], result: "i32" },
  btf__type_by_id: { parameters: ["pointer", "u32"], result: "pointer" },
  btf__name_by_offset: { parameters: ["pointer", "u32"], result: "pointer" },
  libbpf_num_possible_cpus: { parameters: [], result: "i32" },
  libbpf_set_print: { parameters: ["pointer"], result: "pointer" },
  ring_buffer__new: { parameters: ["i32", "function", "pointer", "pointer"], result: "pointer" },
  ring_buffer__consume: { parameters: ["pointer"], result: "i32" },
  ring_buffer__epoll_fd: { parameters: ["pointer"], result: "i32" },
  ring_buffer__free: { parameters: ["pointer"], result: "void" },
} as const;

const libcSymbols = {
  __errno_location: { parameters: [], result: "pointer" },
  epoll_wait: { parameters: ["i32", "buffer", "i32", "i32"], result: "i32", nonblocking: true },
  strerror: { parameters: ["i32"], result: "pointer" },
} as const;

type Libbpf = Deno.DynamicLibrary<typeof symbols>["symbols"];
type Libc = Deno.DynamicLibrary<typeof libcSymbols>["symbols"];

let loaded: { bpf: Libbpf; libc: Libc } | undefined;

/** Opens libbpf and libc once; throws a plain Error naming the package when libbpf is missing. */
export function libs(): { bpf: Libbpf; libc: Libc } {
  if (loaded) return loaded;
  let lastError: unknown;
  for (const path of LIBBPF_PATHS) {
    try {
      const bpf = Deno.dlopen(path, symbols).symbols;
      const libc = Deno.dlopen("libc.so.6", libcSymbols).symbols;
      loaded = { bpf, libc };
      return loaded;
    } catch (error) {
      lastError = error;
    }
  }
  throw new Error(`Cannot load libbpf.so.1: install it with apt-get install libbpf1`, {
    cause: lastError,
  });
}

/** The calling thread's errno. */
export function errno(): number {
  const pointer = libs().libc.__errno_location();
  return pointer ? new Deno.UnsafePointerView(pointer).getInt32() : 0;
}

/** A C string as a JS string. */
export function cString(pointer: Deno.PointerValue): string {
  return pointer ? Deno.UnsafePointerView.getCString(pointer) : "";
}

/** A JS string as a NUL-terminated buffer. */
export function toCString(text: string): Uint8Array<ArrayBuffer> {
  const bytes = new TextEncoder().encode(text);
  const out = new Uint8Array(bytes.length + 1);
  out.set(bytes);
  return out;
}

/** The C library's description of an errno. */
export function strerror(code: number): string {
  return cString(libs().libc.strerror(code));
}
