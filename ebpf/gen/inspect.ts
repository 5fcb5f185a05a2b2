/**
 * Reads what bpf2ts needs from a compiled object: its programs and maps (as libbpf sees them,
 * opened without loading, so no privileges are needed) and its BTF.
 *
 * @module
 */
import { addressOf, cString, eachMap, eachProgram, errno, libbpf, toCString } from "../_ffi.ts";
import { BTF } from "../btf.ts";
import { BpfError } from "../errors.ts";
import { mapTypeName, programTypeName } from "../types.ts";

/** A program of the object. */
interface ProgramSpec {
  /** The C function name. */
  name: string;
  /** The ELF section. */
  section: string;
  /** The program type. */
  type: string;
}

/** A map of the object. */
interface MapSpec {
  /** The map name. */
  name: string;
  /** The map type. */
  type: string;
  /** Key size. */
  keySize: number;
  /** Value size. */
  valueSize: number;
  /** BTF id of the key type (0 when untyped). */
  keyType: number;
  /** BTF id of the value type (0 when untyped). */
  valueType: number;
  /** Whether it is an internal map (`.rodata`, `.bss`, `.data`). */
  internal: boolean;
}

/** Everything bpf2ts reads from an object. */
export interface ObjectSpec {
  /** Programs in section order. */
  programs: ProgramSpec[];
  /** Maps in definition order. */
  maps: MapSpec[];
  /** The object's BTF after libbpf's fix-ups (data section sizes and offsets filled in). */
  btf: BTF;
}

/**
 * Opens an object with libbpf (no load, no privileges) and lists its programs and maps.
 *
 * @param bytes The compiled object.
 * @param name The object name.
 * @returns The spec.
 */
export function inspectObject(bytes: Uint8Array, name: string): ObjectSpec {
  const lib = libbpf();
  const copy = new Uint8Array(bytes);
  const nameBytes = toCString(name);
  const opts = new Uint8Array(80);
  const view = new DataView(opts.buffer);
  view.setBigUint64(0, 80n, true);
  view.setBigUint64(8, addressOf(nameBytes), true);
  const object = lib.bpf_object__open_mem(copy, BigInt(copy.length), opts);
  if (object === null) throw BpfError.fromErrno(`Open BPF object ${name}`, errno());
  try {
    const programs: ProgramSpec[] = [];
    for (const p of eachProgram(object)) {
      programs.push({
        name: cString(lib.bpf_program__name(p)),
        section: cString(lib.bpf_program__section_name(p)),
        type: programTypeName(lib.bpf_program__type(p)),
      });
    }
    const maps: MapSpec[] = [];
    for (const m of eachMap(object)) {
      const size = new BigUint64Array(1);
      const mapName = cString(lib.bpf_map__name(m));
      maps.push({
        name: mapName,
        type: mapTypeName(lib.bpf_map__type(m)),
        keySize: lib.bpf_map__key_size(m),
        valueSize: lib.bpf_map__value_size(m),
        keyType: lib.bpf_map__btf_key_type_id(m),
        valueType: lib.bpf_map__btf_value_type_id(m),
        internal: lib.bpf_map__initial_value(m, new Uint8Array(size.buffer)) !== null,
      });
    }
    const btfPointer = lib.bpf_object__btf(object);
    if (btfPointer === null) {
      throw new BpfError(`BPF object ${name} has no BTF (compile with clang -g)`, {
        code: "no_btf",
      });
    }
    const length = new Uint32Array(1);
    const raw = lib.btf__raw_data(btfPointer, new Uint8Array(length.buffer));
    if (raw === null) throw BpfError.fromErrno(`Read the BTF of ${name}`, errno());
    const btfBytes = new Uint8Array(Deno.UnsafePointerView.getArrayBuffer(raw, length[0]!)).slice();
    return { programs, maps, btf: BTF.parse(btfBytes, { source: `${name} .BTF` }) };
  } finally {
    lib.bpf_object__close(object);
  }
}
