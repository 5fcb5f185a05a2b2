import assert from "node:assert/strict";
import { NetworkNamespace } from "./_network_namespace.ts";
import { hasProgram, runCommand } from "./_command.ts";
import { VmError } from "./errors.ts";
import { pollUntil } from "../tests/wait_for.ts";

const reason = Deno.uid() !== 0
  ? `needs root to create network namespaces, running as uid ${Deno.uid()}`
  : !hasProgram("ip")
  ? "needs ip: apt-get install iproute2"
  : undefined;
if (reason) console.error(`SKIP NetworkNamespace: ${reason}`);

Deno.test("NetworkNamespace.create() rejects a bad name", async () => {
  await assert.rejects(NetworkNamespace.create("bad name/x"), (error: unknown) => {
    assert.ok(error instanceof VmError);
    assert.equal(error.code, "bad_argument");
    return true;
  });
});

Deno.test({
  name: "NetworkNamespace removes itself and kills what runs inside",
  ignore: reason !== undefined,
  fn: async () => {
    const name = `triad-vm-test-${Deno.pid}`;
    const before = (await runCommand("ip", ["netns", "list"])).stdout;
    assert.doesNotMatch(before, new RegExp(`^${name}\\b`, "m"));
    {
      await using ns = await NetworkNamespace.create(name);
      const links = await runCommand("ip", ["-o", "link"], { netns: ns.name });
      assert.deepEqual(links.stdout.trim().split("\n").map((line) => line.split(":")[1]?.trim()), [
        "lo",
      ]);
      assert.deepEqual(await ns.pids(), []);
      const child = new Deno.Command("ip", {
        args: ["netns", "exec", ns.name, "sleep", "60"],
        stdout: "null",
        stderr: "null",
      }).spawn();
      await pollUntil(async () => (await ns.pids()).length > 0, "the child in the namespace", 5000);
      assert.deepEqual(await ns.pids(), [child.pid]);
      // the child is still running when the namespace is disposed
      child.status.then(() => {});
    }
    const after = (await runCommand("ip", ["netns", "list"])).stdout;
    assert.doesNotMatch(after, new RegExp(`^${name}\\b`, "m"));
  },
});
