import assert from "node:assert/strict";
import { parseHarnessArgs } from "./options.ts";
import { VmError } from "./errors.ts";

Deno.test("parseHarnessArgs() fills in defaults", () => {
  const options = parseHarnessArgs([]);
  assert.equal(options.provider, "libvirt");
  assert.equal(options.box, "triad/debian12");
  assert.equal(options.keep, false);
  assert.equal(options.accel, "auto");
  assert.equal(options.bootTimeoutMs, 600_000);
  assert.equal(options.suiteTimeoutMs, 2_400_000);
  assert.equal(options.memoryMiB, 2048);
  assert.equal(options.cpus, 2);
  assert.equal(options.outDir, undefined);
  assert.deepEqual(options.testArgs, ["tests/"]);
});

Deno.test("parseHarnessArgs() reads every flag", async (t) => {
  await t.step("long flags with values", () => {
    const options = parseHarnessArgs([
      "--provider=virtualbox",
      "--box",
      "bento/debian-12",
      "--keep",
      "--accel",
      "tcg",
      "--boot-timeout",
      "90s",
      "--timeout",
      "1h",
      "--memory",
      "4096",
      "--cpus",
      "4",
      "--out",
      "/tmp/out",
    ]);
    assert.equal(options.provider, "virtualbox");
    assert.equal(options.box, "bento/debian-12");
    assert.equal(options.keep, true);
    assert.equal(options.accel, "tcg");
    assert.equal(options.bootTimeoutMs, 90_000);
    assert.equal(options.suiteTimeoutMs, 3_600_000);
    assert.equal(options.memoryMiB, 4096);
    assert.equal(options.cpus, 4);
    assert.equal(options.outDir, "/tmp/out");
  });
  await t.step("everything after -- goes to deno test in the guest", () => {
    const options = parseHarnessArgs(["--keep", "--", "tests/ebpf_maps_test.ts", "--filter", "x"]);
    assert.equal(options.keep, true);
    assert.deepEqual(options.testArgs, ["tests/ebpf_maps_test.ts", "--filter", "x"]);
  });
  await t.step("-h asks for help", () => {
    assert.equal(parseHarnessArgs(["-h"]).help, true);
  });
});

Deno.test("parseHarnessArgs() rejects bad input naming the flag and value", async (t) => {
  const cases: [string[], RegExp][] = [
    [["--provider", "docker"], /--provider: expected libvirt, qemu or virtualbox, got "docker"/],
    [["--accel", "hvf"], /--accel: expected auto, kvm or tcg, got "hvf"/],
    [["--memory", "2G"], /--memory: expected a positive integer, got "2G"/],
    [["--cpus", "0"], /--cpus: expected a positive integer, got "0"/],
    [["--timeout", "soon"], /--timeout: expected a duration/],
    [["--boot-timeout", "0s"], /--boot-timeout: expected a duration/],
    [["--box", "a box"], /--box: "a box" is not a box name/],
    [["--frobnicate"], /frobnicate/],
    [["stray"], /stray|positional/i],
  ];
  for (const [args, message] of cases) {
    await t.step(args.join(" "), () => {
      assert.throws(() => parseHarnessArgs(args), (error: unknown) => {
        assert.ok(error instanceof VmError);
        assert.equal(error.code, "bad_argument");
        assert.match(error.message, message);
        return true;
      });
    });
  }
});
