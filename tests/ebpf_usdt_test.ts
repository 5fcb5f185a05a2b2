/**
 * Privileged tests of USDT probes on the real kernel: `fixtures/multi_target.c` compiled here
 * with a `DTRACE_PROBE2` (`<sys/sdt.h>` from systemtap-sdt-dev), its ELF notes read, uprobes
 * attached at the probe site with the argument specs, and both arguments summed by
 * `ebpf_bpf/usdt.bpf.c`.
 *
 * @module
 */
import assert from "node:assert/strict";
import { BpfError } from "@triad/ebpf";
import { anyPath, bpfTest, command, type Requirement, testWith, uprobes } from "./requirements.ts";
import { LeakTracker } from "./ebpf_leak_check.ts";
import { compileWithClang } from "./support.ts";
import { UsdtObject } from "./ebpf_bpf/usdt.gen.ts";

const SOURCE = new URL("./fixtures/multi_target.c", import.meta.url).pathname;

const sdt = anyPath(
  "sys/sdt.h",
  ["/usr/include/x86_64-linux-gnu/sys/sdt.h", "/usr/include/sys/sdt.h"],
  "needs <sys/sdt.h> for DTRACE_PROBE: apt-get install systemtap-sdt-dev",
);
const x86: Requirement = {
  name: "x86-64",
  check: () =>
    Deno.build.arch === "x86_64" ? undefined : `USDT argument specs are x86-64 only here`,
};

testWith("Program.attachUsdt() reads a DTRACE_PROBE's arguments", [
  ...bpfTest,
  command("clang"),
  sdt,
  x86,
  uprobes,
], async (t) => {
  const tracker = new LeakTracker();
  const directory = await Deno.makeTempDir({ prefix: "triad-usdt-" });
  try {
    const binary = `${directory}/usdt_target`;
    await compileWithClang(SOURCE, binary, ["-O2", "-DWITH_SDT"]);
    using obj = UsdtObject.open();
    await obj.load();
    tracker.addObject(obj.object);

    await t.step("both arguments of every firing, and nothing after close", async () => {
      {
        using link = obj.programs.on_step.attachUsdt(binary, "triad", "step");
        assert.match(link.description, /USDT triad:step in .*usdt_target \(1 sites\)/);
        const run = await new Deno.Command(binary, { args: ["2", "5"] }).output();
        assert.ok(run.success);
      }
      assert.equal(obj.readGlobal("bad_args"), 0n);
      assert.equal(obj.readGlobal("hits"), 5n);
      // triad_target_b(i) for i = 0..4 fires step(i, i * 10).
      assert.equal(obj.readGlobal("first_sum"), 10n);
      assert.equal(obj.readGlobal("second_sum"), 100n);
      await new Deno.Command(binary, { args: ["0", "3"] }).output();
      assert.equal(obj.readGlobal("hits"), 5n);
    });

    await t.step("a probe with a semaphore fires only while attached", async () => {
      const gated = `${directory}/usdt_semaphore_target`;
      const built = await new Deno.Command("clang", {
        args: ["-O2", "-DWITH_SDT", "-DWITH_SDT_SEMAPHORE", "-o", gated, SOURCE],
        stderr: "piped",
      }).output();
      assert.ok(built.success, new TextDecoder().decode(built.stderr));
      const before = obj.readGlobal("hits");
      {
        using _link = obj.programs.on_step.attachUsdt(gated, "triad", "step");
        // The kernel raised the semaphore in the new process: the probe fires.
        assert.ok((await new Deno.Command(gated, { args: ["0", "3"] }).output()).success);
        assert.equal(obj.readGlobal("hits") - before, 3n);
        assert.equal(obj.readGlobal("bad_args"), 0n);
      }
    });

    await t.step("a probe the binary lacks is named", () => {
      assert.throws(
        () => obj.programs.on_step.attachUsdt(binary, "triad", "nope"),
        (error: unknown) =>
          error instanceof BpfError && /USDT triad:nope in .*: no such probe/.test(error.message),
      );
    });
  } finally {
    await Deno.remove(directory, { recursive: true });
  }
  await tracker.assertReleased();
});
