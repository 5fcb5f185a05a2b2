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
export * from "./errors.ts";
export * from "./btf.ts";
export * from "./codec.ts";
export * from "./types.ts";
export * from "./asm.ts";
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
export * from "./object.ts";
export * from "./skeleton.ts";
export * from "./record_reader.ts";
export * from "./ringbuf.ts";
export * from "./perf.ts";
export * from "./user_ringbuf.ts";
export * from "./features.ts";
export * from "./iter.ts";
