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
