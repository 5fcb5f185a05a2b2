/**
 * A tiny suite the VM end-to-end test (`tests/vm_e2e_test.ts`) runs inside the guest in place of
 * the whole privileged suite: it checks the guest is what the box builder promised, and one test
 * fails on purpose so the test can see a failure travel back through the exit code and JUnit.
 * Not a `*_test.ts` file: `deno test tests/` never picks it up by itself.
 *
 * @module
 */
import assert from "node:assert/strict";
import {
  bpffs,
  btf,
  command,
  kernelAtLeast,
  kernelVersion,
  libbpf,
  missing,
  root,
  testWith,
  tracefs,
} from "../requirements.ts";

Deno.test("guest runs Debian 12's 6.1 kernel with BTF", () => {
  assert.deepEqual(kernelVersion(), [6, 1]);
  assert.equal(missing([btf]), undefined);
});

Deno.test("guest has tracefs and bpffs mounted at boot", () => {
  assert.equal(missing([tracefs, bpffs]), undefined);
});

Deno.test("guest runs the suite as root", () => {
  assert.equal(missing([root]), undefined);
  assert.equal(Deno.env.get("TRIAD_VM_GUEST"), "1");
});

Deno.test("guest has the provisioned tools", () => {
  const tools = [
    libbpf,
    command("bpftool"),
    command("clang"),
    command("llvm-strip", "llvm"),
    command("etcd", "etcd-server"),
    command("unbound"),
    command("dig", "bind9-dnsutils"),
  ];
  for (const tool of tools) assert.equal(tool.check(), undefined, tool.name);
});

testWith(
  "a feature from a future kernel is skipped with the reason",
  [kernelAtLeast(99, 0, "a feature from the future")],
  () => {
    throw new Error("runs only on Linux 99.0+");
  },
);

Deno.test("deliberate failure travels back to the host", () => {
  assert.fail("deliberate failure: the end-to-end test expects exactly this one");
});
