/**
 * A BTF (BPF Type Format) parser in TypeScript: the kernel's own types
 * (`/sys/kernel/btf/vmlinux`, module BTF split on top of it) and the `.BTF` section of a compiled
 * BPF object. Types by id, by name and kind; struct and union members with bit offsets; enums;
 * typedef resolution; sizes.
 *
 * @example Read a kernel struct
 * ```ts ignore
 * import { BTF } from "@triad/ebpf";
 *
 * const btf = BTF.kernel();
 * const task = btf.typeByName("task_struct", "struct");
 * console.log(task.size, task.members.find((m) => m.name === "pid")?.bitOffset);
 * ```
 *
 * @module
 */
import { TriadError } from "@triad/core";
import { elfSections } from "./_elf.ts";

/** Every BTF kind by its name. */
export type BtfKind =
  | "void"
  | "int"
  | "ptr"
  | "array"
  | "struct"
  | "union"
  | "enum"
  | "fwd"
  | "typedef"
  | "volatile"
  | "const"
  | "restrict"
  | "func"
  | "func_proto"
  | "var"
  | "datasec"
  | "float"
  | "decl_tag"
  | "type_tag"
  | "enum64";

const KINDS: readonly BtfKind[] = [
  "void",
  "int",
  "ptr",
  "array",
  "struct",
  "union",
  "enum",
  "fwd",
  "typedef",
  "volatile",
  "const",
  "restrict",
  "func",
  "func_proto",
  "var",
  "datasec",
  "float",
  "decl_tag",
  "type_tag",
  "enum64",
];

/** Fields every BTF type has. */
export interface BtfBase<K extends BtfKind> {
  /** The type id. */
  id: number;
  /** The kind. */
  kind: K;
  /** The name, `""` for anonymous types. */
  name: string;
}

/** `void` (type id 0). */
export type BtfVoid = BtfBase<"void">;
/** An integer type. */
export interface BtfInt extends BtfBase<"int"> {
  /** Size in bytes. */
  size: number;
  /** Signed integer. */
  signed: boolean;
  /** A `char`. */
  char: boolean;
  /** A `bool`. */
  bool: boolean;
  /** Bit offset of the value inside the storage (almost always 0). */
  bitOffset: number;
  /** Number of value bits. */
  bits: number;
}
/** A pointer, typedef or modifier (const, volatile, restrict, type tag): refers to `type`. */
export interface BtfRef<K extends BtfKind> extends BtfBase<K> {
  /** The referred type id. */
  type: number;
}
/** An array. */
export interface BtfArray extends BtfBase<"array"> {
  /** The element type id. */
  type: number;
  /** The index type id. */
  indexType: number;
  /** The number of elements. */
  length: number;
}
/** A member of a struct or union. */
export interface BtfMember {
  /** The member name, `""` for an anonymous struct/union member. */
  name: string;
  /** The member type id. */
  type: number;
  /** Offset from the start of the struct, in bits. */
  bitOffset: number;
  /** Bit-field width, 0 when the member is not a bit-field. */
  bitSize: number;
}
/** A struct or union. */
export interface BtfComposite<K extends "struct" | "union"> extends BtfBase<K> {
  /** Size in bytes. */
  size: number;
  /** Members in declaration order. */
  members: BtfMember[];
}
/** One enumerator. */
export interface BtfEnumValue {
  /** The enumerator name. */
  name: string;
  /** Its value (a bigint for 64-bit enums). */
  value: number | bigint;
}
/** An enum (32-bit or 64-bit). */
export interface BtfEnum<K extends "enum" | "enum64"> extends BtfBase<K> {
  /** Size in bytes. */
  size: number;
  /** Signed values. */
  signed: boolean;
  /** The enumerators. */
  values: BtfEnumValue[];
}
/** A forward declaration. */
export interface BtfFwd extends BtfBase<"fwd"> {
  /** Declares a union rather than a struct. */
  union: boolean;
}
/** A function (its `type` is a `func_proto`). */
export interface BtfFunc extends BtfRef<"func"> {
  /** 0 static, 1 global, 2 extern. */
  linkage: number;
}
/** A function prototype. */
export interface BtfFuncProto extends BtfBase<"func_proto"> {
  /** The return type id. */
  returnType: number;
  /** The parameters (a last parameter with type 0 means `...`). */
  params: { name: string; type: number }[];
}
/** A global variable. */
export interface BtfVar extends BtfRef<"var"> {
  /** 0 static, 1 global, 2 extern. */
  linkage: number;
}
/** A variable inside a data section. */
export interface BtfVarSecInfo {
  /** The `var` type id. */
  type: number;
  /** Offset inside the section. */
  offset: number;
  /** Size in bytes. */
  size: number;
}
/** A data section (`.rodata`, `.bss`, `.data`, `.maps`). */
export interface BtfDatasec extends BtfBase<"datasec"> {
  /** Size in bytes. */
  size: number;
  /** The variables in it. */
  vars: BtfVarSecInfo[];
}
/** A floating-point type. */
export interface BtfFloat extends BtfBase<"float"> {
  /** Size in bytes. */
  size: number;
}
/** A declaration tag. */
export interface BtfDeclTag extends BtfRef<"decl_tag"> {
  /** The member or parameter index, -1 for the declaration itself. */
  componentIdx: number;
}

/** Any BTF type. */
export type BtfType =
  | BtfVoid
  | BtfInt
  | BtfRef<"ptr">
  | BtfRef<"typedef">
  | BtfRef<"volatile">
  | BtfRef<"const">
  | BtfRef<"restrict">
  | BtfRef<"type_tag">
  | BtfArray
  | BtfComposite<"struct">
  | BtfComposite<"union">
  | BtfEnum<"enum">
  | BtfEnum<"enum64">
  | BtfFwd
  | BtfFunc
  | BtfFuncProto
  | BtfVar
  | BtfDatasec
  | BtfFloat
  | BtfDeclTag;

/** The type of a kind, for `typeByName`. */
export type BtfTypeOfKind<K extends BtfKind> = Extract<BtfType, { kind: K }>;

/** Raised for malformed BTF or a type that cannot be found. */
export class BtfError extends TriadError {
  /**
   * Creates the error.
   *
   * @param message What is wrong and where.
   * @param code `bad_btf` or `btf_not_found`.
   */
  constructor(message: string, code = "bad_btf") {
    super(message, { code });
  }
}

const MAGIC = 0xeb9f;
const HEADER_LEN = 24;

/** Options for {@linkcode BTF.parse}. */
export interface BtfParseOptions {
  /** The base BTF of split BTF (kernel module BTF is split on top of vmlinux). */
  base?: BTF;
  /** A name for the BTF in error messages, such as its path. */
  source?: string;
}

/**
 * Parsed BTF. Types are decoded lazily (the kernel has ~150k), names are indexed on first lookup.
 *
 * @example Parse the BTF of a compiled object
 * ```ts ignore
 * import { BTF } from "@triad/ebpf";
 *
 * const btf = BTF.fromElf(await Deno.readFile("prog.bpf.o"));
 * const event = btf.typeByName("event", "struct");
 * for (const member of event.members) console.log(member.name, member.bitOffset / 8);
 * ```
 */
export class BTF {
  /** Where the BTF came from (path or description). */
  readonly source: string;
  /** The base BTF when this is split BTF. */
  readonly base: BTF | undefined;
  readonly #view: DataView;
  readonly #bytes: Uint8Array;
  readonly #typeStart: number;
  readonly #strStart: number;
  readonly #strLen: number;
  readonly #firstId: number;
  readonly #firstStr: number;
  readonly #offsets: Uint32Array;
  readonly #cache = new Map<number, BtfType>();
  #names: Map<string, number[]> | undefined;
  readonly #decoder = new TextDecoder();

  private constructor(bytes: Uint8Array, options: BtfParseOptions) {
    this.source = options.source ?? "BTF";
    this.base = options.base;
    this.#bytes = bytes;
    this.#view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const fail = (what: string) => new BtfError(`${this.source}: ${what}`);
    if (bytes.length < HEADER_LEN) {
      throw fail(`${bytes.length} bytes is too short for a BTF header`);
    }
    const magic = this.#view.getUint16(0, true);
    if (magic !== MAGIC) {
      throw fail(
        magic === 0x9feb
          ? "big-endian BTF is not supported"
          : `bad magic 0x${magic.toString(16)} (expected 0xeb9f)`,
      );
    }
    const version = bytes[2];
    if (version !== 1) throw fail(`unsupported BTF version ${version}`);
    const hdrLen = this.#view.getUint32(4, true);
    const typeOff = this.#view.getUint32(8, true);
    const typeLen = this.#view.getUint32(12, true);
    const strOff = this.#view.getUint32(16, true);
    const strLen = this.#view.getUint32(20, true);
    this.#typeStart = hdrLen + typeOff;
    this.#strStart = hdrLen + strOff;
    this.#strLen = strLen;
    if (this.#typeStart + typeLen > bytes.length || this.#strStart + strLen > bytes.length) {
      throw fail(
        `type section (${typeOff}+${typeLen}) or string section (${strOff}+${strLen}) runs ` +
          `past the end (${bytes.length} bytes)`,
      );
    }
    this.#firstId = options.base === undefined ? 1 : options.base.count;
    this.#firstStr = options.base === undefined ? 0 : options.base.#strLen;
    const offsets: number[] = [];
    let at = this.#typeStart;
    const end = this.#typeStart + typeLen;
    while (at < end) {
      offsets.push(at);
      if (at + 12 > end) throw fail(`type ${this.#firstId + offsets.length - 1} is truncated`);
      const info = this.#view.getUint32(at + 4, true);
      const kind = (info >>> 24) & 0x1f;
      const vlen = info & 0xffff;
      at += 12 +
        extraSize(
          kind,
          vlen,
          () =>
            fail(
              `type ${this.#firstId + offsets.length - 1} has unknown kind ${kind} at offset ${at}`,
            ),
        );
    }
    if (at !== end) throw fail(`the type section ends inside a type`);
    this.#offsets = Uint32Array.from(offsets);
  }

  /**
   * Parses raw BTF (as in `/sys/kernel/btf/vmlinux` or an object's `.BTF` section).
   *
   * @param bytes The BTF.
   * @param options A base for split BTF and a name for errors.
   * @returns The parsed BTF.
   */
  static parse(bytes: Uint8Array, options: BtfParseOptions = {}): BTF {
    return new BTF(bytes, options);
  }

  /**
   * Parses the `.BTF` section of a compiled BPF object (ELF).
   *
   * @param bytes The object file.
   * @param source A name for errors.
   * @returns The parsed BTF.
   */
  static fromElf(bytes: Uint8Array, source = "BPF object"): BTF {
    const section = elfSections(bytes, source).find((s) => s.name === ".BTF");
    if (section === undefined) {
      throw new BtfError(`${source}: has no .BTF section (compile with clang -g)`, "btf_not_found");
    }
    return new BTF(section.data, { source: `${source} .BTF` });
  }

  /**
   * Loads the running kernel's BTF, or a module's BTF split on top of it.
   *
   * @param module A kernel module name such as `nf_conntrack`; omitted for vmlinux.
   * @returns The parsed BTF.
   */
  static kernel(module?: string): BTF {
    kernelBtf ??= BTF.#readKernel("/sys/kernel/btf/vmlinux");
    if (module === undefined) return kernelBtf;
    return BTF.#readKernel(`/sys/kernel/btf/${module}`, kernelBtf);
  }

  static #readKernel(path: string, base?: BTF): BTF {
    let bytes: Uint8Array;
    try {
      bytes = Deno.readFileSync(path);
    } catch (error) {
      throw new BtfError(
        `Cannot read kernel BTF at ${path}: ${(error as Error).message} (needs ` +
          `CONFIG_DEBUG_INFO_BTF, Linux 5.4+)`,
        "btf_not_found",
      );
    }
    return new BTF(bytes, base === undefined ? { source: path } : { source: path, base });
  }

  /** One past the highest type id (ids start at 1; 0 is void). */
  get count(): number {
    return this.#firstId + this.#offsets.length;
  }

  /**
   * Returns a type by id.
   *
   * @param id The type id.
   * @returns The type.
   */
  type(id: number): BtfType {
    if (id === 0) return { id: 0, kind: "void", name: "void" };
    if (id < this.#firstId) {
      if (this.base === undefined) {
        throw new BtfError(`${this.source}: no type ${id}`, "btf_not_found");
      }
      return this.base.type(id);
    }
    const cached = this.#cache.get(id);
    if (cached !== undefined) return cached;
    const offset = this.#offsets[id - this.#firstId];
    if (offset === undefined) {
      throw new BtfError(
        `${this.source}: no type ${id} (there are ${this.count - 1})`,
        "btf_not_found",
      );
    }
    const type = this.#decode(id, offset);
    this.#cache.set(id, type);
    return type;
  }

  /** Iterates over every type of this BTF (not its base), in id order. */
  *types(): IterableIterator<BtfType> {
    for (let id = this.#firstId; id < this.count; id++) yield this.type(id);
  }

  /**
   * Returns the ids of every type with a name (in this BTF and its base).
   *
   * @param name The name.
   * @returns The ids, possibly empty.
   */
  idsByName(name: string): number[] {
    if (this.#names === undefined) {
      this.#names = new Map();
      for (let id = this.#firstId; id < this.count; id++) {
        const offset = this.#offsets[id - this.#firstId]!;
        const typeName = this.#string(this.#view.getUint32(offset, true));
        if (typeName === "") continue;
        const ids = this.#names.get(typeName);
        if (ids === undefined) this.#names.set(typeName, [id]);
        else ids.push(id);
      }
    }
    return [...(this.base?.idsByName(name) ?? []), ...(this.#names.get(name) ?? [])];
  }

  /**
   * Returns the first type with a name and, optionally, a kind.
   *
   * @param name The type name.
   * @param kind The kind, such as `struct`.
   * @returns The type.
   * @throws {BtfError} When there is none.
   */
  typeByName<K extends BtfKind>(name: string, kind: K): BtfTypeOfKind<K>;
  /**
   * Returns the first type with a name.
   *
   * @param name The type name.
   * @returns The type.
   * @throws {BtfError} When there is none.
   */
  typeByName(name: string): BtfType;
  typeByName(name: string, kind?: BtfKind): BtfType {
    const type = this.findByName(name, kind);
    if (type === undefined) {
      throw new BtfError(
        `${this.source}: no ${kind ?? "type"} named ${JSON.stringify(name)}`,
        "btf_not_found",
      );
    }
    return type;
  }

  /**
   * Returns the first type with a name (and kind), or `undefined`.
   *
   * @param name The type name.
   * @param kind The kind.
   * @returns The type or `undefined`.
   */
  findByName(name: string, kind?: BtfKind): BtfType | undefined {
    for (const id of this.idsByName(name)) {
      const type = this.type(id);
      if (kind === undefined || type.kind === kind) return type;
    }
    return undefined;
  }

  /**
   * Follows typedefs and modifiers (const, volatile, restrict, type tags) to the underlying type.
   *
   * @param id The type id.
   * @returns The resolved type.
   */
  resolve(id: number): BtfType {
    let type = this.type(id);
    for (let depth = 0; depth < 64; depth++) {
      if (
        type.kind !== "typedef" && type.kind !== "const" && type.kind !== "volatile" &&
        type.kind !== "restrict" && type.kind !== "type_tag"
      ) return type;
      type = this.type(type.type);
    }
    throw new BtfError(`${this.source}: typedef chain from type ${id} is too deep`);
  }

  /**
   * Returns the size in bytes of a type.
   *
   * @param id The type id.
   * @returns The size.
   */
  sizeof(id: number): number {
    const type = this.resolve(id);
    switch (type.kind) {
      case "int":
      case "struct":
      case "union":
      case "enum":
      case "enum64":
      case "float":
      case "datasec":
        return type.size;
      case "ptr":
        return 8;
      case "array":
        return type.length * this.sizeof(type.type);
      default:
        throw new BtfError(`${this.source}: type ${id} (${type.kind}) has no size`);
    }
  }

  /**
   * Returns a C-like name for a type, such as `struct event`, `u32 *` or `char[16]`.
   *
   * @param id The type id.
   * @returns The name.
   */
  typeName(id: number): string {
    const type = this.type(id);
    switch (type.kind) {
      case "struct":
      case "union":
      case "enum":
        return `${type.kind} ${type.name || "(anon)"}`;
      case "enum64":
        return `enum ${type.name || "(anon)"}`;
      case "ptr":
        return `${this.typeName(type.type)} *`;
      case "const":
      case "volatile":
        return `${type.kind} ${this.typeName(type.type)}`;
      case "array":
        return `${this.typeName(type.type)}[${type.length}]`;
      default:
        return type.name || type.kind;
    }
  }

  #string(offset: number): string {
    if (offset < this.#firstStr) return this.base!.#string(offset);
    const start = this.#strStart + offset - this.#firstStr;
    if (start >= this.#strStart + this.#strLen) {
      throw new BtfError(`${this.source}: string offset ${offset} is out of range`);
    }
    let end = start;
    const bytes = this.#bytes;
    while (bytes[end] !== 0 && end < bytes.length) end++;
    return this.#decoder.decode(bytes.subarray(start, end));
  }

  #decode(id: number, at: number): BtfType {
    const view = this.#view;
    const name = this.#string(view.getUint32(at, true));
    const info = view.getUint32(at + 4, true);
    const kindIndex = (info >>> 24) & 0x1f;
    const vlen = info & 0xffff;
    const kindFlag = (info >>> 31) === 1;
    const sizeOrType = view.getUint32(at + 8, true);
    const data = at + 12;
    const kind = KINDS[kindIndex]!;
    switch (kind) {
      case "int": {
        const bits = view.getUint32(data, true);
        const encoding = (bits >>> 24) & 0xf;
        return {
          id,
          kind,
          name,
          size: sizeOrType,
          signed: (encoding & 1) !== 0,
          char: (encoding & 2) !== 0,
          bool: (encoding & 4) !== 0,
          bitOffset: (bits >>> 16) & 0xff,
          bits: bits & 0xff,
        };
      }
      case "ptr":
      case "typedef":
      case "volatile":
      case "const":
      case "restrict":
      case "type_tag":
        return { id, kind, name, type: sizeOrType };
      case "array":
        return {
          id,
          kind,
          name,
          type: view.getUint32(data, true),
          indexType: view.getUint32(data + 4, true),
          length: view.getUint32(data + 8, true),
        };
      case "struct":
      case "union": {
        const members: BtfMember[] = [];
        for (let i = 0; i < vlen; i++) {
          const m = data + i * 12;
          const offset = view.getUint32(m + 8, true);
          members.push({
            name: this.#string(view.getUint32(m, true)),
            type: view.getUint32(m + 4, true),
            bitOffset: kindFlag ? offset & 0xffffff : offset,
            bitSize: kindFlag ? offset >>> 24 : 0,
          });
        }
        return kind === "struct"
          ? { id, kind, name, size: sizeOrType, members }
          : { id, kind, name, size: sizeOrType, members };
      }
      case "enum": {
        const values: BtfEnumValue[] = [];
        for (let i = 0; i < vlen; i++) {
          const e = data + i * 8;
          values.push({
            name: this.#string(view.getUint32(e, true)),
            value: kindFlag ? view.getInt32(e + 4, true) : view.getUint32(e + 4, true),
          });
        }
        return { id, kind, name, size: sizeOrType, signed: kindFlag, values };
      }
      case "enum64": {
        const values: BtfEnumValue[] = [];
        for (let i = 0; i < vlen; i++) {
          const e = data + i * 12;
          const lo = BigInt(view.getUint32(e + 4, true));
          const hi = BigInt(view.getUint32(e + 8, true));
          const raw = (hi << 32n) | lo;
          values.push({
            name: this.#string(view.getUint32(e, true)),
            value: kindFlag ? BigInt.asIntN(64, raw) : raw,
          });
        }
        return { id, kind, name, size: sizeOrType, signed: kindFlag, values };
      }
      case "fwd":
        return { id, kind, name, union: kindFlag };
      case "func":
        return { id, kind, name, type: sizeOrType, linkage: vlen };
      case "func_proto": {
        const params = [];
        for (let i = 0; i < vlen; i++) {
          const p = data + i * 8;
          params.push({
            name: this.#string(view.getUint32(p, true)),
            type: view.getUint32(p + 4, true),
          });
        }
        return { id, kind, name, returnType: sizeOrType, params };
      }
      case "var":
        return { id, kind, name, type: sizeOrType, linkage: view.getUint32(data, true) };
      case "datasec": {
        const vars: BtfVarSecInfo[] = [];
        for (let i = 0; i < vlen; i++) {
          const v = data + i * 12;
          vars.push({
            type: view.getUint32(v, true),
            offset: view.getUint32(v + 4, true),
            size: view.getUint32(v + 8, true),
          });
        }
        return { id, kind, name, size: sizeOrType, vars };
      }
      case "float":
        return { id, kind, name, size: sizeOrType };
      case "decl_tag":
        return { id, kind, name, type: sizeOrType, componentIdx: view.getInt32(data, true) };
      default:
        throw new BtfError(`${this.source}: type ${id} has unknown kind ${kindIndex}`);
    }
  }
}

let kernelBtf: BTF | undefined;

function extraSize(kind: number, vlen: number, unknown: () => Error): number {
  switch (kind) {
    case 1: // int
    case 14: // var
    case 17: // decl_tag
      return 4;
    case 3: // array
      return 12;
    case 4: // struct
    case 5: // union
    case 15: // datasec
    case 19: // enum64
      return vlen * 12;
    case 6: // enum
    case 13: // func_proto
      return vlen * 8;
    case 2:
    case 7:
    case 8:
    case 9:
    case 10:
    case 11:
    case 12:
    case 16:
    case 18:
      return 0;
    default:
      throw unknown();
  }
}
