/**
 * {@linkcode BpfObject}: a compiled BPF object (ELF) opened by libbpf — set global variables
 * (filters such as a target pid) before load, load it with the verifier's whole log kept on
 * failure, then reach its programs and maps.
 *
 * @module
 */
import {
  addressOf,
  cString,
  eachMap,
  eachProgram,
  errno,
  libbpf,
  takeLibbpfMessages,
  toCString,
} from "./_ffi.ts";
import { BTF, type BtfDatasec } from "./btf.ts";
import { Bytes, type Codec, structCodec } from "./codec.ts";
import { BpfError, VerifierError } from "./errors.ts";
import type { Link } from "./link.ts";
import { BpfMap, closeObjectMapHandle, mapInternal, objectMapHandle } from "./map.ts";
import { Program, programInternal, type ProgramOwner } from "./program.ts";
import { ATTACH_TYPES, mapTypeName, PROGRAM_TYPES } from "./types.ts";

const INITIAL_LOG_SIZE = 256 * 1024;
const MAX_LOG_SIZE = 1 << 30;

/** Options for {@linkcode BpfObject.open}. */
export interface OpenOptions {
  /** The object name (default: from the file name, or `bpf_object` for bytes). */
  name?: string;
  /** A BTF file for CO-RE relocations instead of the kernel's (`/sys/kernel/btf/vmlinux`). */
  btfPath?: string;
  /**
   * Values for global variables (`const volatile` in `.rodata`, or `.data`/`.bss`), written
   * before load: this is how a filter such as a target pid reaches the kernel program.
   */
  globals?: Record<string, unknown>;
  /** Resize maps before load, by name (a ring buffer's size in bytes, a hash map's entries). */
  maxEntries?: Record<string, number>;
  /** Skip loading some programs, by name (`{ handle_fentry: false }`). */
  autoload?: Record<string, boolean>;
  /** The bpffs directory for maps declared with `LIBBPF_PIN_BY_NAME`. */
  pinRoot?: string;
  /**
   * First size of each program's verifier log buffer, in bytes; a log that does not fit is
   * retried with a buffer 8 times larger, until it fits.
   * @default {262144}
   */
  logSize?: number;
  /**
   * The verifier log level of every program on a successful load too (1, 2, or 4 for
   * `BPF_LOG_STATS`: instructions processed, peak states, verification time), read from each
   * program's `verifierLog`. @default {0}
   */
  logLevel?: number;
}

interface GlobalSlot {
  map: Deno.PointerObject;
  offset: number;
  size: number;
  type: number;
  section: string;
}

/**
 * A BPF object: its programs and maps, loaded into the kernel by `load()`.
 *
 * @example Load, set a filter, attach, read a map
 * ```ts ignore
 * import { BpfObject, Uint32, Uint64 } from "@triad/ebpf";
 *
 * using obj = BpfObject.open("prog.bpf.o", { globals: { target_pid: Deno.pid } });
 * await obj.load();
 * using link = obj.program("count_exec").attach();
 * const counts = obj.map("counts").withCodecs(Uint32, Uint64);
 * console.log([...counts.entries()]);
 * ```
 */
export class BpfObject implements Disposable {
  /** The object name. */
  readonly name: string;
  /** The object's own BTF (types of its maps, globals and emitted structs). */
  readonly btf: BTF | undefined = undefined;
  #pointer: Deno.PointerObject | null;
  #loaded = false;
  readonly #source: string | Uint8Array<ArrayBuffer>;
  readonly #options: OpenOptions;
  readonly #globalValues = new Map<string, unknown>();
  #keepAlive: unknown[] = [];
  readonly #owner: ProgramOwner;
  readonly #programs = new Map<string, Program>();
  readonly #maps = new Map<string, BpfMap<unknown, unknown>>();
  readonly #mapHandles: unknown[] = [];
  readonly #globals = new Map<string, GlobalSlot>();

  private constructor(
    source: string | Uint8Array<ArrayBuffer>,
    options: OpenOptions,
    name: string,
  ) {
    this.name = name;
    this.#source = source;
    this.#options = options;
    this.#owner = {
      name,
      closed: false,
      links: new Set<Link>(),
      map: (mapName) => this.#maps.get(mapName),
    };
    this.#pointer = this.#openRaw();
    const lib = libbpf();
    const btfPointer = lib.bpf_object__btf(this.#pointer);
    if (btfPointer !== null) {
      const size = new Uint32Array(1);
      const raw = lib.btf__raw_data(btfPointer, new Uint8Array(size.buffer));
      if (raw !== null) {
        const bytes = new Uint8Array(Deno.UnsafePointerView.getArrayBuffer(raw, size[0]!)).slice();
        this.btf = BTF.parse(bytes, { source: `BPF object ${name}` });
      }
    }
  }

  /**
   * Opens a BPF object from a file or from bytes (`bpf_object__open_mem`), without loading it.
   *
   * @param pathOrBytes The `.o` path, or the object bytes (as embedded by bpf2ts).
   * @param options Name, custom BTF, globals, map sizes, autoload.
   * @returns The object; close it (or `using`) to release everything.
   */
  static open(pathOrBytes: string | URL | Uint8Array, options: OpenOptions = {}): BpfObject {
    const isBytes = pathOrBytes instanceof Uint8Array;
    const path = isBytes ? "" : pathOrBytes instanceof URL ? pathOrBytes.pathname : pathOrBytes;
    const name = options.name ??
      (isBytes ? "bpf_object" : (path.split("/").pop() ?? path).replace(/(\.bpf)?\.o$/, ""));
    const object = new BpfObject(isBytes ? new Uint8Array(pathOrBytes) : path, options, name);
    try {
      object.#applyOptions();
    } catch (error) {
      object.close();
      throw error;
    }
    return object;
  }

  /** Opens the object with libbpf (again, when a load is retried with a larger log). */
  #openRaw(): Deno.PointerObject {
    const lib = libbpf();
    takeLibbpfMessages();
    const options = this.#options;
    const nameBytes = toCString(this.name);
    const btfPath = options.btfPath === undefined ? null : toCString(options.btfPath);
    const pinRoot = options.pinRoot === undefined ? null : toCString(options.pinRoot);
    const opts = new Uint8Array(80);
    const view = new DataView(opts.buffer);
    view.setBigUint64(0, 80n, true);
    view.setBigUint64(8, addressOf(nameBytes), true);
    view.setBigUint64(24, addressOf(pinRoot), true);
    view.setBigUint64(48, addressOf(btfPath), true);
    const source = this.#source;
    const pointer = typeof source === "string"
      ? lib.bpf_object__open_file(toCString(source), opts)
      : lib.bpf_object__open_mem(source, BigInt(source.length), opts);
    if (pointer === null) {
      const where = typeof source === "string" ? source : this.name;
      throw BpfError.fromErrno(
        `Open BPF object ${where}` + (options.btfPath ? ` with BTF ${options.btfPath}` : ""),
        errno(),
      );
    }
    // libbpf reads these while the object is open.
    this.#keepAlive = [nameBytes, btfPath, pinRoot, opts];
    return pointer;
  }

  /** Applies sizes, autoload flags and global values (after each open). */
  #applyOptions(): void {
    const lib = libbpf();
    this.#globals.clear();
    if (this.btf !== undefined) this.#indexGlobals();
    for (const [mapName, entries] of Object.entries(this.#options.maxEntries ?? {})) {
      const rc = lib.bpf_map__set_max_entries(this.#mapPointer(mapName), entries);
      if (rc < 0) throw BpfError.fromErrno(`Resize map ${mapName} to ${entries}`, rc);
    }
    for (const [programName, load] of Object.entries(this.#options.autoload ?? {})) {
      lib.bpf_program__set_autoload(this.#programPointer(programName), load);
    }
    for (const p of eachProgram(this.#pointer!)) {
      // Sections newer than libbpf 1.1 (which leaves their type unset): uprobe.multi (6.6+),
      // netfilter (6.4+).
      const section = cString(lib.bpf_program__section_name(p));
      if (lib.bpf_program__type(p) !== 0) continue;
      if (/^u(ret)?probe\.multi(\.s)?(\/|$)/.test(section)) {
        lib.bpf_program__set_type(p, PROGRAM_TYPES.indexOf("kprobe"));
        lib.bpf_program__set_expected_attach_type(p, ATTACH_TYPES.trace_uprobe_multi);
      } else if (section === "netfilter") {
        lib.bpf_program__set_type(p, PROGRAM_TYPES.indexOf("netfilter"));
        lib.bpf_program__set_expected_attach_type(p, ATTACH_TYPES.netfilter);
      }
    }
    const values = new Map([...Object.entries(this.#options.globals ?? {}), ...this.#globalValues]);
    for (const [variable, value] of values) this.setGlobal(variable, value);
  }

  /** Closes the libbpf object after a failed load and opens it again, as it was configured. */
  #reopen(): void {
    libbpf().bpf_object__close(this.#pointer!);
    this.#pointer = null;
    this.#pointer = this.#openRaw();
    this.#applyOptions();
  }

  /**
   * Names of the global variables the C program declares at file scope (`.rodata`, `.data`,
   * `.bss`), which `setGlobal`, `readGlobal` and `writeGlobal` take. A function's `static`
   * variables, which clang names `function.variable` in BTF (such as `bpf_printk`'s format string
   * `handle_tp.____fmt`), are left out; they are still reachable by that full name.
   */
  get globalNames(): string[] {
    return [...this.#globals.keys()].filter((name) => !name.includes("."));
  }

  /**
   * Sets a global variable before load (`const volatile` rodata, `.data`, `.bss`).
   *
   * @param name The variable name.
   * @param value The value, encoded by the variable's BTF type: a bigint for a 64-bit integer
   *   (`0n`, not `0`), a number for a smaller one, a string for a `char[]`, an object for a struct.
   */
  setGlobal(name: string, value: unknown): void {
    this.#checkOpen();
    if (this.#loaded) {
      throw new BpfError(
        `Object ${this.name}: set global ${name} before load() (or writeGlobal for .data/.bss)`,
        { code: "loaded" },
      );
    }
    const slot = this.#globalSlot(name);
    this.#globalValues.set(name, value);
    this.#initialValue(slot, name, (region) => this.#encodeGlobal(slot, name, value, region));
  }

  /** Encodes a global's value by its BTF type; a bad value's error names the global and type. */
  #encodeGlobal(slot: GlobalSlot, name: string, value: unknown, view: DataView): void {
    try {
      structCodec(this.btf!, slot.type).encode(value, view, slot.offset);
    } catch (error) {
      throw new BpfError(
        `Object ${this.name}: global ${name} (${this.btf!.typeName(slot.type)}): ` +
          `${(error as Error).message}`,
        { code: "bad_value", cause: error },
      );
    }
  }

  #globalSlot(name: string): GlobalSlot {
    this.#checkOpen();
    const slot = this.#globals.get(name);
    if (slot === undefined) {
      throw new BpfError(
        `Object ${this.name} has no global variable ${name} (it has: ` +
          `${this.globalNames.join(", ") || "none"})`,
        { code: "no_such_global" },
      );
    }
    return slot;
  }

  #initialValue<T>(slot: GlobalSlot, name: string, use: (view: DataView) => T): T {
    const size = new BigUint64Array(1);
    const data = libbpf().bpf_map__initial_value(slot.map, new Uint8Array(size.buffer));
    if (data === null) {
      throw new BpfError(
        `Object ${this.name}: global ${name} in ${slot.section} has no initial value`,
        {
          code: "no_such_global",
        },
      );
    }
    return use(new DataView(Deno.UnsafePointerView.getArrayBuffer(data, Number(size[0]))));
  }

  /**
   * Reads a global variable's current value from the kernel (after load), such as a `dropped`
   * counter the program increments; before load, the value it will start with.
   *
   * The value is decoded by the variable's BTF type: a bigint for a 64-bit integer, a number for a
   * smaller one, a string for a `char[]`, an object for a struct. `T` says which the caller
   * expects and is not checked (the skeletons bpf2ts generates type each global).
   *
   * @example A ring buffer reader counting the program's own drops
   * ```ts
   * import { BpfObject, RingBufferReader } from "@triad/ebpf";
   *
   * // The program declares `__u64 dropped = 0;` and counts failed bpf_ringbuf_reserve calls.
   * function readEvents(obj: BpfObject): RingBufferReader {
   *   return new RingBufferReader(obj.map("events"), {
   *     lost: () => obj.readGlobal("dropped"),
   *   });
   * }
   * ```
   *
   * @typeParam T The value's type, as decoded (see above).
   * @param name The variable name.
   * @returns The value, decoded by its BTF type.
   */
  readGlobal<T = unknown>(name: string): T {
    const slot = this.#globalSlot(name);
    if (!this.loaded) {
      return this.#initialValue(
        slot,
        name,
        (view) => structCodec(this.btf!, slot.type).decode(view, slot.offset) as T,
      );
    }
    const fd = libbpf().bpf_map__fd(slot.map);
    const value = new Uint8Array(libbpf().bpf_map__value_size(slot.map));
    const rc = libbpf().bpf_map_lookup_elem(fd, new Uint8Array(4), value);
    if (rc < 0) throw BpfError.fromErrno(`Object ${this.name}: read global ${name}`, rc);
    return structCodec(this.btf!, slot.type).decode(new DataView(value.buffer), slot.offset) as T;
  }

  /**
   * Writes a `.data`/`.bss` global variable in the kernel after load (`.rodata` is frozen).
   *
   * @param name The variable name.
   * @param value The value.
   */
  writeGlobal(name: string, value: unknown): void {
    const slot = this.#globalSlot(name);
    if (!this.loaded) return this.setGlobal(name, value);
    const fd = libbpf().bpf_map__fd(slot.map);
    const bytes = new Uint8Array(libbpf().bpf_map__value_size(slot.map));
    const key = new Uint8Array(4);
    let rc = libbpf().bpf_map_lookup_elem(fd, key, bytes);
    if (rc >= 0) {
      this.#encodeGlobal(slot, name, value, new DataView(bytes.buffer));
      rc = libbpf().bpf_map_update_elem(fd, key, bytes, 0n);
    }
    if (rc < 0) {
      throw BpfError.fromErrno(`Object ${this.name}: write global ${name} in ${slot.section}`, rc);
    }
  }

  /**
   * Loads the object's maps and programs into the kernel.
   *
   * @throws {VerifierError} With the whole verifier log when a program is rejected.
   * @throws {BpfError} For other failures, with the errno, the fix and libbpf's explanation.
   */
  // deno-lint-ignore require-await
  async load(): Promise<void> {
    this.#checkOpen();
    if (this.#loaded) {
      throw new BpfError(`Object ${this.name} is already loaded`, { code: "loaded" });
    }
    const lib = libbpf();
    // libbpf drops the key and value types of maps the kernel takes no BTF for (maps of maps,
    // socket maps) when it creates them: remember the declared ones, so they keep their codecs.
    const declared = new Map<string, [key: number, value: number]>();
    for (const m of eachMap(this.#pointer!)) {
      declared.set(cString(lib.bpf_map__name(m)), [
        lib.bpf_map__btf_key_type_id(m),
        lib.bpf_map__btf_value_type_id(m),
      ]);
    }
    // Each program gets its own log buffer: libbpf loads with the verifier log off and, when a
    // program is rejected, loads it again with the log on into that buffer. A log that does not
    // fit fails with ENOSPC: the object is then opened again and loaded with a larger buffer,
    // until the whole log fits.
    const successLogs = new Map<string, string>();
    for (let logSize = this.#options.logSize ?? INITIAL_LOG_SIZE;; logSize *= 8) {
      takeLibbpfMessages();
      const logs = new Map<string, Uint8Array<ArrayBuffer>>();
      for (const p of eachProgram(this.#pointer!)) {
        if (!lib.bpf_program__autoload(p)) continue;
        const buffer = new Uint8Array(logSize);
        lib.bpf_program__set_log_buf(p, buffer, BigInt(logSize));
        if (this.#options.logLevel) lib.bpf_program__set_log_level(p, this.#options.logLevel);
        logs.set(cString(lib.bpf_program__name(p)), buffer);
      }
      const rc = lib.bpf_object__load(this.#pointer!);
      for (const p of eachProgram(this.#pointer!)) lib.bpf_program__set_log_buf(p, null, 0n);
      if (rc >= 0) {
        if (this.#options.logLevel) {
          for (const [name, buffer] of logs) {
            successLogs.set(name, cString(Deno.UnsafePointer.of(buffer)));
          }
        }
        break;
      }
      const messages = takeLibbpfMessages();
      const failed = [...logs].find(([, buffer]) => buffer[0] !== 0);
      if (failed !== undefined) {
        if (rc === -28 && logSize < MAX_LOG_SIZE) {
          this.#reopen();
          continue;
        }
        this.#loaded = true;
        throw new VerifierError(failed[0], cString(Deno.UnsafePointer.of(failed[1])), rc);
      }
      this.#loaded = true;
      for (const message of messages) {
        // Where libbpf printed the log itself (its own buffer), it arrives in one message.
        const match =
          /^libbpf: prog '([^']+)': -- BEGIN PROG LOAD LOG --\n([\s\S]*?)-- END PROG LOAD LOG --/
            .exec(message);
        if (match !== null) throw new VerifierError(match[1]!, match[2]!, rc);
      }
      const btf = this.#options.btfPath === undefined ? "" : ` with BTF ${this.#options.btfPath}`;
      throw BpfError.fromErrno(`Load BPF object ${this.name}${btf}`, rc, messages);
    }
    this.#loaded = true;
    for (const p of eachProgram(this.#pointer!)) {
      const log = successLogs.get(cString(lib.bpf_program__name(p))) ?? "";
      const program = new Program(programInternal, p, -1, this.#owner, log);
      this.#programs.set(program.name, program);
    }
    for (const m of eachMap(this.#pointer!)) {
      const name = cString(lib.bpf_map__name(m));
      const handle = objectMapHandle(lib.bpf_map__fd(m), this.name);
      this.#mapHandles.push(handle);
      const info = {
        name,
        type: mapTypeName(lib.bpf_map__type(m)),
        keySize: lib.bpf_map__key_size(m),
        valueSize: lib.bpf_map__value_size(m),
        maxEntries: lib.bpf_map__max_entries(m),
        flags: lib.bpf_map__map_flags(m),
      };
      const [declaredKey, declaredValue] = declared.get(name) ?? [0, 0];
      const key = this.#codecFor(lib.bpf_map__btf_key_type_id(m) || declaredKey, info.keySize);
      const value = this.#codecFor(
        lib.bpf_map__btf_value_type_id(m) || declaredValue,
        info.valueSize,
      );
      this.#maps.set(name, new BpfMap(mapInternal, info, handle, key, value));
    }
  }

  /** Whether `load()` succeeded. */
  get loaded(): boolean {
    return this.#loaded && this.#programs.size + this.#maps.size > 0;
  }

  /**
   * The loaded programs, as an array; {@linkcode BpfObject.program} finds one by name. (A
   * generated skeleton's `programs` is keyed by name instead: `probe.programs.handle_exec`.)
   */
  get programs(): Program[] {
    this.#checkLoaded("programs");
    return [...this.#programs.values()];
  }

  /**
   * The loaded maps (internal `.rodata`/`.bss` maps included), as an array;
   * {@linkcode BpfObject.map} finds one by name. (A generated skeleton's `maps` is keyed by name
   * instead: `probe.maps.events`.)
   */
  get maps(): BpfMap<unknown, unknown>[] {
    this.#checkLoaded("maps");
    return [...this.#maps.values()];
  }

  /**
   * Returns a program by name (the C function name).
   *
   * @param name The program name.
   * @returns The program.
   */
  program(name: string): Program {
    this.#checkLoaded(`program(${JSON.stringify(name)})`);
    const program = this.#programs.get(name);
    if (program === undefined) {
      throw new BpfError(
        `Object ${this.name} has no program ${name} (it has: ${
          [...this.#programs.keys()].join(", ")
        })`,
        { code: "no_such_program" },
      );
    }
    return program;
  }

  /**
   * Returns a map by name; keys and values decode through the map's BTF types when it has them,
   * as raw bytes otherwise (use `withCodecs` to choose).
   *
   * @param name The map name.
   * @returns The map.
   */
  // deno-lint-ignore no-explicit-any
  map<K = any, V = any>(name: string): BpfMap<K, V> {
    this.#checkLoaded(`map(${JSON.stringify(name)})`);
    const map = this.#maps.get(name);
    if (map === undefined) {
      throw new BpfError(
        `Object ${this.name} has no map ${name} (it has: ${[...this.#maps.keys()].join(", ")})`,
        { code: "no_such_map" },
      );
    }
    return map as BpfMap<K, V>;
  }

  /**
   * Attaches every program that can attach by its section name (skipping those that need a
   * target, such as cgroup or XDP programs).
   *
   * @returns The links.
   */
  attachAll(): Link[] {
    const links: Link[] = [];
    try {
      for (const program of this.programs) {
        if (
          /^(cgroup|xdp|tc|classifier|socket|sk_|sockops|flow_dissector|struct_ops)/.test(
            program.section,
          )
        ) {
          continue;
        }
        links.push(program.attach());
      }
    } catch (error) {
      for (const link of links) link.close();
      throw error;
    }
    return links;
  }

  /** Detaches the object's links, unloads its programs and maps. Safe to call twice. */
  close(): void {
    const pointer = this.#pointer;
    if (pointer === null) return;
    this.#pointer = null;
    for (const link of [...this.#owner.links]) link.close();
    this.#owner.closed = true;
    for (const handle of this.#mapHandles) closeObjectMapHandle(handle);
    libbpf().bpf_object__close(pointer);
    this.#keepAlive.length = 0;
  }

  /** Same as {@linkcode BpfObject.close}. */
  [Symbol.dispose](): void {
    this.close();
  }

  #codecFor(typeId: number, size: number): Codec<unknown> {
    if (typeId !== 0 && this.btf !== undefined) {
      try {
        const codec = structCodec(this.btf, typeId);
        if (codec.size === size) return codec;
      } catch {
        // Types without a codec (pointers to functions...) fall back to raw bytes.
      }
    }
    return Bytes(size) as Codec<unknown>;
  }

  #indexGlobals(): void {
    const btf = this.btf!;
    const lib = libbpf();
    const datasecs = new Map<number, BtfDatasec>();
    for (const type of btf.types()) if (type.kind === "datasec") datasecs.set(type.id, type);
    for (const m of eachMap(this.#pointer!)) {
      const datasec = datasecs.get(lib.bpf_map__btf_value_type_id(m));
      if (datasec === undefined || datasec.name === ".maps") continue;
      for (const variable of datasec.vars) {
        const type = btf.type(variable.type);
        if (type.kind !== "var") continue;
        this.#globals.set(type.name, {
          map: m,
          offset: variable.offset,
          size: variable.size,
          type: type.type,
          section: datasec.name,
        });
      }
    }
  }

  #mapPointer(name: string): Deno.PointerObject {
    const lib = libbpf();
    const names = [];
    for (const m of eachMap(this.#pointer!)) {
      const mapName = cString(lib.bpf_map__name(m));
      if (mapName === name) return m;
      names.push(mapName);
    }
    throw new BpfError(`Object ${this.name} has no map ${name} (it has: ${names.join(", ")})`, {
      code: "no_such_map",
    });
  }

  #programPointer(name: string): Deno.PointerObject {
    const lib = libbpf();
    const names = [];
    for (const p of eachProgram(this.#pointer!)) {
      const programName = cString(lib.bpf_program__name(p));
      if (programName === name) return p;
      names.push(programName);
    }
    throw new BpfError(`Object ${this.name} has no program ${name} (it has: ${names.join(", ")})`, {
      code: "no_such_program",
    });
  }

  #checkOpen(): void {
    if (this.#pointer === null) {
      throw new BpfError(`Object ${this.name} is closed`, { code: "closed" });
    }
  }

  #checkLoaded(what: string): void {
    this.#checkOpen();
    if (this.#programs.size + this.#maps.size === 0) {
      throw new BpfError(`Object ${this.name}: call load() before ${what}`, { code: "not_loaded" });
    }
  }
}
