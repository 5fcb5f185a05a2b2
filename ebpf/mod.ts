/**
 * `@triad/ebpf`: an eBPF loader over Deno FFI to the system libbpf (`libbpf.so.1`) — objects,
 * programs, maps, links, ring and perf buffers, BTF, feature probes, an instruction builder, and
 * bpf2ts code generation (`deno task gen`).
 *
 * @example Assemble a socket filter (loading it needs root)
 * ```ts
 * import { asm, assemble, R0 } from "@triad/ebpf";
 * import assert from "node:assert/strict";
 *
 * const code = assemble([asm.mov64(R0, 0), asm.exit()]);
 * assert.equal(code.length, 16);
 * ```
 *
 * @module
 */
export { TriadError } from "@triad/core";
export {
  BpfError,
  type BpfErrorOptions,
  errnoName,
  LibbpfMissingError,
  parseVerifierLog,
  UnsupportedFeatureError,
  VerifierError,
  type VerifierFailure,
} from "./errors.ts";
export {
  BTF,
  type BtfArray,
  type BtfBase,
  type BtfComposite,
  type BtfDatasec,
  type BtfDeclTag,
  type BtfEnum,
  type BtfEnumValue,
  BtfError,
  type BtfFloat,
  type BtfFunc,
  type BtfFuncProto,
  type BtfFwd,
  type BtfInt,
  type BtfKind,
  type BtfMember,
  type BtfParseOptions,
  type BtfRef,
  type BtfType,
  type BtfTypeOfKind,
  type BtfVar,
  type BtfVarSecInfo,
  type BtfVoid,
} from "./btf.ts";
export {
  Bytes,
  type Codec,
  type CodecValue,
  CString,
  Int32,
  Int64,
  isCharType,
  readBits,
  readCString,
  structCodec,
  Uint16,
  Uint32,
  Uint64,
  Uint8,
} from "./codec.ts";
export {
  ATTACH_TYPES,
  type AttachType,
  isPerCpu,
  MAP_TYPES,
  type MapType,
  mapTypeName,
  PROGRAM_TYPES,
  type ProgramType,
  programTypeName,
} from "./types.ts";
export {
  type AluOp,
  asm,
  assemble,
  type HelperName,
  HELPERS,
  type Instruction,
  type JumpOp,
  R0,
  R1,
  R10,
  R2,
  R3,
  R4,
  R5,
  R6,
  R7,
  R8,
  R9,
  reg,
  type Register,
  type RegisterOperand,
  type Size,
} from "./asm.ts";
export { Link } from "./link.ts";
export {
  BpfMap,
  type CreateMapOptions,
  type MapCodecs,
  type MapInfo,
  type UpdateFlag,
} from "./map.ts";
export {
  cgroup2Mounts,
  type KprobeOptions,
  type NetfilterOptions,
  Program,
  type ProgramLoadOptions,
  type TcOptions,
  type TestRunInput,
  type TestRunResult,
  type UprobeMultiOptions,
  type UprobeOptions,
  type XdpOptions,
} from "./program.ts";
export { BpfObject, type OpenOptions } from "./object.ts";
export { decodeObjectBytes, Skeleton } from "./skeleton.ts";
export { RecordReader } from "./record_reader.ts";
export { type RingBufferOptions, RingBufferReader } from "./ringbuf.ts";
export { type PerfBufferOptions, PerfBufferReader } from "./perf.ts";
export {
  ATTACH_SINCE,
  type AttachKind,
  type Features,
  features,
  MAP_TYPE_SINCE,
  PROGRAM_TYPE_SINCE,
} from "./features.ts";
export { UserRingBuffer } from "./user_ringbuf.ts";
export { type IteratorOutput, readIterator, type ReadIteratorOptions } from "./iter.ts";
