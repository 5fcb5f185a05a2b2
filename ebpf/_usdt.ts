/**
 * USDT argument specs (`-4@-4(%rsp)`, `8@%rax`, `4@$5`) turned into the table a program reads
 * with `triad_usdt_arg()` from `ebpf/bpf/usdt.bpf.h`: one `struct triad_usdt_spec` per probe
 * site, found by the attach cookie. x86-64 register names only.
 *
 * @module
 */
import { TriadError } from "@triad/core";

/** Most arguments a probe site may have (SystemTap allows 12). */
const USDT_MAX_ARGS = 12;
/** Bytes of one `struct triad_usdt_spec`: a count, then 16 bytes per argument. */
export const USDT_SPEC_SIZE = 8 + 16 * USDT_MAX_ARGS;

const CONSTANT = 1;
const REGISTER = 2;
const MEMORY = 3;

/** Byte offsets in x86-64 `struct pt_regs`, by every name of each register. */
const PT_REGS: Record<string, number> = {};
for (
  const [offset, names] of [
    [0, "r15"],
    [8, "r14"],
    [16, "r13"],
    [24, "r12"],
    [32, "rbp ebp bp bpl"],
    [40, "rbx ebx bx bl"],
    [48, "r11"],
    [56, "r10"],
    [64, "r9"],
    [72, "r8"],
    [80, "rax eax ax al"],
    [88, "rcx ecx cx cl"],
    [96, "rdx edx dx dl"],
    [104, "rsi esi si sil"],
    [112, "rdi edi di dil"],
    [128, "rip eip"],
    [152, "rsp esp sp spl"],
  ] as const
) {
  for (const name of names.split(" ")) {
    PT_REGS[name] = offset;
    // r8..r15 also go by r8d, r8w, r8b.
    if (/^r\d+$/.test(name)) { for (const suffix of "dwb") PT_REGS[`${name}${suffix}`] = offset; }
  }
}

/**
 * Encodes a probe site's argument specs.
 *
 * @param args The specs, separated by spaces.
 * @param where The probe, for error messages.
 * @returns `USDT_SPEC_SIZE` bytes.
 */
export function encodeUsdtSpec(args: string, where: string): Uint8Array<ArrayBuffer> {
  const specs = args.trim() === "" ? [] : args.trim().split(/\s+/);
  if (specs.length > USDT_MAX_ARGS) {
    throw new TriadError(`${where}: ${specs.length} arguments, at most ${USDT_MAX_ARGS}`, {
      code: "bad_usdt",
    });
  }
  const bytes = new Uint8Array(USDT_SPEC_SIZE);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, specs.length, true);
  specs.forEach((spec, i) => {
    const at = 8 + 16 * i;
    const fail = (why: string) =>
      new TriadError(`${where}: argument ${i + 1} "${spec}": ${why}`, { code: "bad_usdt" });
    const match = /^(-?\d+)@(.+)$/.exec(spec);
    if (match === null) throw fail("expected SIZE@LOCATION");
    const size = Number(match[1]);
    if (![1, 2, 4, 8].includes(Math.abs(size))) throw fail("size must be 1, 2, 4 or 8");
    const location = match[2]!;
    const register = (name: string) => {
      const offset = PT_REGS[name];
      if (offset === undefined) throw fail(`unknown x86-64 register %${name}`);
      return offset;
    };
    let kind: number;
    let value = 0n;
    let reg = 0;
    let m: RegExpExecArray | null;
    if ((m = /^\$(-?\d+)$/.exec(location)) !== null) {
      kind = CONSTANT;
      value = BigInt(m[1]!);
    } else if ((m = /^%(\w+)$/.exec(location)) !== null) {
      kind = REGISTER;
      reg = register(m[1]!);
    } else if ((m = /^(-?\d*)\(%(\w+)\)$/.exec(location)) !== null) {
      kind = MEMORY;
      value = BigInt(m[1] === "" ? 0 : Number(m[1]));
      reg = register(m[2]!);
    } else {
      throw fail("only $CONSTANT, %REGISTER and OFFSET(%REGISTER) are understood");
    }
    view.setBigInt64(at, value, true);
    view.setUint32(at + 8, kind, true);
    view.setUint16(at + 12, reg, true);
    view.setInt8(at + 14, size);
  });
  return bytes;
}
