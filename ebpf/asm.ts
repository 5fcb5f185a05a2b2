/**
 * A BPF instruction builder: enough ops for real filters (mov, ALU, memory loads and stores,
 * conditional jumps to labels, 64-bit immediates, map fd loads, helper calls, exit), and
 * {@linkcode assemble} to encode them for `Program.load`.
 *
 * @example Return the packet length (a socket filter accepting every packet)
 * ```ts
 * import { asm, assemble, R0, R1 } from "@triad/ebpf";
 * import assert from "node:assert/strict";
 *
 * const bytes = assemble([
 *   asm.ldx("w", R0, R1, 0), // r0 = skb->len
 *   asm.jmp("jeq", R0, 0, "drop"),
 *   asm.exit(),
 *   asm.label("drop"),
 *   asm.mov64(R0, 0),
 *   asm.exit(),
 * ]);
 * assert.equal(bytes.length, 5 * 8);
 * assert.deepEqual([...bytes.subarray(0, 8)], [0x61, 0x10, 0, 0, 0, 0, 0, 0]);
 * ```
 *
 * @module
 */
import { TriadError } from "@triad/core";

/** A register number, `R0`..`R10`. */
export type Register = 0 | 1 | 2 | 3 | 4 | 5 | 6 | 7 | 8 | 9 | 10;
/** Return value, and helper results. */
export const R0: Register = 0;
/** First argument (the context on entry). */
export const R1: Register = 1;
/** Second argument. */
export const R2: Register = 2;
/** Third argument. */
export const R3: Register = 3;
/** Fourth argument. */
export const R4: Register = 4;
/** Fifth argument. */
export const R5: Register = 5;
/** Callee-saved. */
export const R6: Register = 6;
/** Callee-saved. */
export const R7: Register = 7;
/** Callee-saved. */
export const R8: Register = 8;
/** Callee-saved. */
export const R9: Register = 9;
/** The read-only frame pointer (stack grows down from it, 512 bytes). */
export const R10: Register = 10;

/** One instruction before encoding; jumps may name a label instead of an offset. */
export interface Instruction {
  /** The opcode byte. */
  opcode: number;
  /** Destination register. */
  dst: number;
  /** Source register (or pseudo source, such as 1 for a map fd). */
  src: number;
  /** Offset (jumps: relative instruction count, memory: byte offset). */
  offset: number;
  /** Immediate (a bigint only for 64-bit immediates). */
  imm: number | bigint;
  /** For jumps: the label to jump to, resolved by `assemble`. */
  target?: string;
  /** A pseudo instruction marking a label (encodes to nothing). */
  label?: string;
}

/** ALU operations. */
export type AluOp =
  | "add"
  | "sub"
  | "mul"
  | "div"
  | "or"
  | "and"
  | "lsh"
  | "rsh"
  | "mod"
  | "xor"
  | "mov"
  | "arsh";
/** Conditional jump operations (`j*`: unsigned, `js*`: signed). */
export type JumpOp =
  | "jeq"
  | "jgt"
  | "jge"
  | "jset"
  | "jne"
  | "jsgt"
  | "jsge"
  | "jlt"
  | "jle"
  | "jslt"
  | "jsle";
/** Memory access sizes: byte, half word, word, double word. */
export type Size = "b" | "h" | "w" | "dw";

const ALU_OPS: Record<AluOp, number> = {
  add: 0x00,
  sub: 0x10,
  mul: 0x20,
  div: 0x30,
  or: 0x40,
  and: 0x50,
  lsh: 0x60,
  rsh: 0x70,
  mod: 0x90,
  xor: 0xa0,
  mov: 0xb0,
  arsh: 0xc0,
};
const JUMP_OPS: Record<JumpOp, number> = {
  jeq: 0x10,
  jgt: 0x20,
  jge: 0x30,
  jset: 0x40,
  jne: 0x50,
  jsgt: 0x60,
  jsge: 0x70,
  jlt: 0xa0,
  jle: 0xb0,
  jslt: 0xc0,
  jsle: 0xd0,
};
const SIZES: Record<Size, number> = { w: 0x00, h: 0x08, b: 0x10, dw: 0x18 };
const CLASS = { ld: 0x00, ldx: 0x01, st: 0x02, stx: 0x03, alu: 0x04, jmp: 0x05, alu64: 0x07 };
const SRC_X = 0x08;
const MODE_MEM = 0x60;
const MODE_IMM = 0x00;

/** Helper function ids by name (`bpf_` prefix dropped), for `asm.call("map_lookup_elem")`. */
export const HELPERS = {
  map_lookup_elem: 1,
  map_update_elem: 2,
  map_delete_elem: 3,
  probe_read: 4,
  ktime_get_ns: 5,
  trace_printk: 6,
  get_prandom_u32: 7,
  get_smp_processor_id: 8,
  skb_store_bytes: 9,
  tail_call: 12,
  get_current_pid_tgid: 14,
  get_current_uid_gid: 15,
  get_current_comm: 16,
  perf_event_output: 25,
  skb_load_bytes: 26,
  get_socket_cookie: 46,
  ktime_get_boot_ns: 125,
  ringbuf_output: 130,
  ringbuf_reserve: 131,
  ringbuf_submit: 132,
  ringbuf_discard: 133,
} as const;

/** A helper name known to {@linkcode HELPERS}. */
export type HelperName = keyof typeof HELPERS;

function isRegister(value: unknown): value is RegisterOperand {
  return typeof value === "object" && value !== null && "register" in value;
}

/** Marks a number as a register operand where an immediate would also be accepted. */
export interface RegisterOperand {
  /** The register. */
  register: Register;
}

/**
 * Wraps a register so ALU and jump builders read it as a register, not an immediate.
 *
 * @param register The register.
 * @returns The operand.
 */
export function reg(register: Register): RegisterOperand {
  return { register };
}

function checkRegister(register: number, what: string): void {
  if (!Number.isInteger(register) || register < 0 || register > 10) {
    throw new TriadError(`${what}: register r${register} does not exist (r0..r10)`, {
      code: "bad_instruction",
    });
  }
}

function checkImm32(value: number, what: string): void {
  if (!Number.isInteger(value) || value < -(2 ** 31) || value >= 2 ** 32) {
    throw new TriadError(`${what}: immediate ${value} does not fit 32 bits`, {
      code: "bad_instruction",
    });
  }
}

function alu(
  cls: number,
  op: AluOp,
  dst: Register,
  source: number | RegisterOperand,
): Instruction {
  checkRegister(dst, op);
  if (isRegister(source)) {
    checkRegister(source.register, op);
    return { opcode: cls | ALU_OPS[op] | SRC_X, dst, src: source.register, offset: 0, imm: 0 };
  }
  checkImm32(source, op);
  return { opcode: cls | ALU_OPS[op], dst, src: 0, offset: 0, imm: source };
}

/** Builders for each instruction. */
export const asm = {
  /**
   * 64-bit ALU operation: `dst op= src` (a number is an immediate; use `reg(Rn)` for a register).
   *
   * @param op The operation.
   * @param dst Destination register.
   * @param source Immediate or `reg(Rn)`.
   */
  alu64: (op: AluOp, dst: Register, source: number | RegisterOperand): Instruction =>
    alu(CLASS.alu64, op, dst, source),
  /**
   * 32-bit ALU operation (zero-extends the result).
   *
   * @param op The operation.
   * @param dst Destination register.
   * @param source Immediate or `reg(Rn)`.
   */
  alu32: (op: AluOp, dst: Register, source: number | RegisterOperand): Instruction =>
    alu(CLASS.alu, op, dst, source),
  /**
   * `dst = src` (64-bit): a number is an immediate, `reg(Rn)` a register.
   *
   * @param dst Destination register.
   * @param source Immediate, or a register given as `reg(Rn)`.
   */
  mov64: (dst: Register, source: number | RegisterOperand): Instruction =>
    alu(CLASS.alu64, "mov", dst, source),
  /**
   * `dst = src` (32-bit, zero-extended).
   *
   * @param dst Destination register.
   * @param source Immediate or `reg(Rn)`.
   */
  mov32: (dst: Register, source: number | RegisterOperand): Instruction =>
    alu(CLASS.alu, "mov", dst, source),
  /**
   * `dst = *(size *)(src + offset)`.
   *
   * @param size Access size.
   * @param dst Destination register.
   * @param src Base register.
   * @param offset Byte offset.
   */
  ldx: (size: Size, dst: Register, src: Register, offset: number): Instruction => {
    checkRegister(dst, "ldx");
    checkRegister(src, "ldx");
    return { opcode: CLASS.ldx | SIZES[size] | MODE_MEM, dst, src, offset, imm: 0 };
  },
  /**
   * `*(size *)(dst + offset) = src`.
   *
   * @param size Access size.
   * @param dst Base register.
   * @param offset Byte offset.
   * @param src Source register.
   */
  stx: (size: Size, dst: Register, offset: number, src: Register): Instruction => {
    checkRegister(dst, "stx");
    checkRegister(src, "stx");
    return { opcode: CLASS.stx | SIZES[size] | MODE_MEM, dst, src, offset, imm: 0 };
  },
  /**
   * `*(size *)(dst + offset) = imm`.
   *
   * @param size Access size.
   * @param dst Base register.
   * @param offset Byte offset.
   * @param imm The immediate.
   */
  st: (size: Size, dst: Register, offset: number, imm: number): Instruction => {
    checkRegister(dst, "st");
    checkImm32(imm, "st");
    return { opcode: CLASS.st | SIZES[size] | MODE_MEM, dst, src: 0, offset, imm };
  },
  /**
   * `dst = imm64` (two instruction slots).
   *
   * @param dst Destination register.
   * @param value The 64-bit value.
   */
  ldImm64: (dst: Register, value: bigint): Instruction => {
    checkRegister(dst, "ld_imm64");
    return { opcode: CLASS.ld | SIZES.dw | MODE_IMM, dst, src: 0, offset: 0, imm: value };
  },
  /**
   * `dst = map` (a map reference by file descriptor; two instruction slots).
   *
   * @param dst Destination register.
   * @param map The map, or its fd.
   */
  ldMapFd: (dst: Register, map: number | { fd: number }): Instruction => {
    checkRegister(dst, "ld_map_fd");
    const fd = typeof map === "number" ? map : map.fd;
    return { opcode: CLASS.ld | SIZES.dw | MODE_IMM, dst, src: 1, offset: 0, imm: BigInt(fd) };
  },
  /**
   * Conditional jump: `if dst op src goto target`.
   *
   * @param op The comparison.
   * @param dst Left register.
   * @param source Immediate or `reg(Rn)`.
   * @param target A label, or a relative instruction offset.
   */
  jmp: (
    op: JumpOp,
    dst: Register,
    source: number | RegisterOperand,
    target: string | number,
  ): Instruction => {
    const insn = alu(CLASS.jmp, "add", dst, source);
    insn.opcode = (insn.opcode & SRC_X) | CLASS.jmp | JUMP_OPS[op];
    if (typeof target === "string") insn.target = target;
    else insn.offset = target;
    return insn;
  },
  /**
   * Unconditional jump.
   *
   * @param target A label, or a relative instruction offset.
   */
  ja: (target: string | number): Instruction =>
    typeof target === "string"
      ? { opcode: CLASS.jmp, dst: 0, src: 0, offset: 0, imm: 0, target }
      : { opcode: CLASS.jmp, dst: 0, src: 0, offset: target, imm: 0 },
  /**
   * Calls a helper: arguments in r1..r5, result in r0.
   *
   * @param helper The helper id or name (`map_lookup_elem`).
   */
  call: (helper: number | HelperName): Instruction => ({
    opcode: CLASS.jmp | 0x80,
    dst: 0,
    src: 0,
    offset: 0,
    imm: typeof helper === "number" ? helper : HELPERS[helper],
  }),
  /** Returns r0. */
  exit: (): Instruction => ({ opcode: CLASS.jmp | 0x90, dst: 0, src: 0, offset: 0, imm: 0 }),
  /**
   * Marks the position of the next instruction as a jump target.
   *
   * @param name The label.
   */
  label: (name: string): Instruction => ({
    opcode: 0,
    dst: 0,
    src: 0,
    offset: 0,
    imm: 0,
    label: name,
  }),
};

function slots(insn: Instruction): number {
  if (insn.label !== undefined) return 0;
  return insn.opcode === (CLASS.ld | SIZES.dw | MODE_IMM) ? 2 : 1;
}

/**
 * Encodes instructions, resolving jump labels.
 *
 * @param instructions The instructions (label pseudo instructions included).
 * @returns The encoded program (8 bytes per slot).
 * @throws {TriadError} On an unknown or duplicate label or an out-of-range jump.
 */
export function assemble(instructions: readonly Instruction[]): Uint8Array<ArrayBuffer> {
  const labels = new Map<string, number>();
  let position = 0;
  for (const insn of instructions) {
    if (insn.label !== undefined) {
      if (labels.has(insn.label)) {
        throw new TriadError(`Label ${insn.label} is defined twice`, { code: "bad_instruction" });
      }
      labels.set(insn.label, position);
    }
    position += slots(insn);
  }
  const bytes = new Uint8Array(position * 8);
  const view = new DataView(bytes.buffer);
  position = 0;
  for (const [index, insn] of instructions.entries()) {
    if (insn.label !== undefined) continue;
    let offset = insn.offset;
    if (insn.target !== undefined) {
      const at = labels.get(insn.target);
      if (at === undefined) {
        throw new TriadError(`Instruction ${index} jumps to unknown label ${insn.target}`, {
          code: "bad_instruction",
        });
      }
      offset = at - position - 1;
    }
    if (offset < -32768 || offset > 32767) {
      throw new TriadError(`Instruction ${index}: jump offset ${offset} does not fit 16 bits`, {
        code: "bad_instruction",
      });
    }
    const at = position * 8;
    view.setUint8(at, insn.opcode);
    view.setUint8(at + 1, (insn.src << 4) | insn.dst);
    view.setInt16(at + 2, offset, true);
    if (slots(insn) === 2) {
      const value = BigInt.asUintN(64, BigInt(insn.imm));
      view.setUint32(at + 4, Number(value & 0xffffffffn), true);
      view.setUint32(at + 12, Number(value >> 32n), true);
    } else {
      view.setInt32(at + 4, Number(insn.imm) | 0, true);
    }
    position += slots(insn);
  }
  return bytes;
}
