import assert from "node:assert/strict";
import {
  BpfError,
  errnoName,
  parseVerifierLog,
  UnsupportedFeatureError,
  VerifierError,
} from "./errors.ts";

const LOG = `func#0 @0
0: R1=ctx() R10=fp0
; __u32 zero = 0; @ prog.bpf.c:18
0: (b7) r1 = 0                        ; R1_w=0
1: (63) *(u32 *)(r10 -4) = r1
; return *value == 42; @ prog.bpf.c:20
7: (79) r1 = *(u64 *)(r0 +0)
R0 invalid mem access 'map_value_or_null'
processed 7 insns (limit 1000000) max_states_per_insn 0 total_states 0 peak_states 0 mark_read 0
`;

Deno.test("parseVerifierLog() finds the failing instruction, its source and the reason", () => {
  assert.deepEqual(parseVerifierLog(LOG), {
    instruction: 7,
    instructionText: "(79) r1 = *(u64 *)(r0 +0)",
    source: "return *value == 42; @ prog.bpf.c:20",
    reason: "R0 invalid mem access 'map_value_or_null'",
  });
  assert.deepEqual(parseVerifierLog(""), { reason: "no verifier log" });
});

// Captured from Linux 6.18 rejecting tests/ebpf_bpf/rejected_midline.bpf.c: the verifier prints a
// source line only where the line changes, so the failing instruction 9 follows instruction 8 of the
// same line, not the line's "; " annotation.
const MIDLINE_LOG = `arg#0 reference type('UNKNOWN ') size cannot be determined: -22
0: R1=ctx() R10=fp0
; int unchecked_after_call(void *ctx) @ rejected_midline.bpf.c:17
0: (b7) r1 = 0                        ; R1=0
; __u32 zero = 0; @ rejected_midline.bpf.c:19
1: (63) *(u32 *)(r10 -4) = r1         ; R1=0 R10=fp0 fp-8=0000????
2: (bf) r2 = r10                      ; R2=fp0 R10=fp0
;  @ rejected_midline.bpf.c:0
3: (07) r2 += -4                      ; R2=fp-4
; __u64 *value = bpf_map_lookup_elem(&values, &zero); @ rejected_midline.bpf.c:20
4: (18) r1 = 0xffff888109409c00       ; R1=map_ptr(map=values,ks=4,vs=8)
6: (85) call bpf_map_lookup_elem#1    ; R0=map_value_or_null(id=1,map=values,ks=4,vs=8)
7: (bf) r6 = r0                       ; R0=map_value_or_null(id=1,map=values,ks=4,vs=8) R6=map_value_or_null(id=1,map=values,ks=4,vs=8)
; return bpf_get_prandom_u32() + *value == 42; @ rejected_midline.bpf.c:21
8: (85) call bpf_get_prandom_u32#7    ; R0=scalar()
9: (79) r1 = *(u64 *)(r6 +0)
R6 invalid mem access 'map_value_or_null'
processed 9 insns (limit 1000000) max_states_per_insn 0 total_states 1 peak_states 1 mark_read 0
`;

Deno.test("parseVerifierLog() finds the source line of an instruction in the middle of it", async (t) => {
  await t.step("the line annotated instructions before the failing one", () => {
    assert.deepEqual(parseVerifierLog(MIDLINE_LOG), {
      instruction: 9,
      instructionText: "(79) r1 = *(u64 *)(r6 +0)",
      source: "return bpf_get_prandom_u32() + *value == 42; @ rejected_midline.bpf.c:21",
      reason: "R6 invalid mem access 'map_value_or_null'",
    });
    assert.match(
      new VerifierError("unchecked_after_call", MIDLINE_LOG, -13).message,
      /\n {2}source: return bpf_get_prandom_u32\(\) \+ \*value == 42; @ rejected_midline\.bpf\.c:21\n/,
    );
  });
  await t.step("far from its annotation (a long unrolled line)", () => {
    const body = Array.from({ length: 200 }, (_, i) => `${i + 1}: (07) r1 += 1 ; R1=scalar()`);
    const log = `; acc += x; @ long.bpf.c:7\n0: (b7) r1 = 0\n${body.join("\n")}\n` +
      "201: (79) r1 = *(u64 *)(r6 +0)\nR6 invalid mem access 'map_value_or_null'\n";
    assert.equal(parseVerifierLog(log).source, "acc += x; @ long.bpf.c:7");
  });
  await t.step("none where the compiler gave the instruction no line (@ file:0)", () => {
    const log = "; x = 1; @ a.bpf.c:3\n0: (b7) r1 = 0\n;  @ a.bpf.c:0\n" +
      "1: (79) r1 = *(u64 *)(r6 +0)\nR6 !read_ok\n";
    assert.equal(parseVerifierLog(log).source, undefined);
  });
  await t.step("none in a log without line info", () => {
    assert.equal(parseVerifierLog("0: (b7) r0 = 0\n1: (95) exit\nR0 !read_ok\n").source, undefined);
  });
});

Deno.test("VerifierError keeps the whole log and names the failure", () => {
  const error = new VerifierError("probe", LOG, -13);
  assert.equal(error.log, LOG);
  assert.equal(error.errno, 13);
  assert.equal(error.code, "verifier");
  assert.match(error.message, /^Verifier rejected program probe at instruction 7 \(79\)/);
  assert.match(error.message, /source: return \*value == 42; @ prog\.bpf\.c:20/);
});

Deno.test("BpfError.fromErrno() names the errno and the fix", () => {
  assert.equal(errnoName(-1), "EPERM");
  assert.equal(errnoName(999), "errno 999");
  const error = BpfError.fromErrno("Attach program p to tracepoint a/b", -2, [
    "libbpf: tracepoint a/b not found",
  ]);
  assert.equal(error.code, "enoent");
  assert.match(error.message, /^Attach program p to tracepoint a\/b: ENOENT \(it does not exist/);
  assert.match(error.message, /libbpf said:\n {2}libbpf: tracepoint a\/b not found/);
  assert.match(BpfError.fromErrno("Load", -1, []).message, /CAP_BPF and CAP_PERFMON/);
});

Deno.test("UnsupportedFeatureError names the kernel version", () => {
  const error = new UnsupportedFeatureError("BPF ring buffer", "5.8", "map type 27 rejected");
  assert.match(
    error.message,
    /BPF ring buffer is not available on this kernel \(.*\) although Linux 5\.8\+ has it: map type 27 rejected/,
  );
  assert.match(
    new UnsupportedFeatureError("X", "99.0").message,
    /^X is not supported by this kernel \(.*\): it needs Linux 99\.0 or newer$/,
  );
  assert.equal(error.minimumKernel, "5.8");
});
