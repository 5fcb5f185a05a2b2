/**
 * The alert rules of both applications, checked by promtool (Debian's `prometheus` package):
 * `promtool check rules` (syntax, PromQL, templates) and `promtool test rules` (the unit tests
 * beside them, with input series and the alerts expected at each time).
 *
 * @module
 */
import assert from "node:assert/strict";
import { command, testWith } from "./requirements.ts";

const repository = new URL("../", import.meta.url).pathname;
const RULES = ["dnsproxy/monitoring", "ebpf/trace/monitoring"];

async function promtool(args: string[], cwd: string): Promise<{ code: number; output: string }> {
  const { code, stdout, stderr } = await new Deno.Command("promtool", {
    args,
    cwd,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  return { code, output: decoder.decode(stdout) + decoder.decode(stderr) };
}

for (const dir of RULES) {
  testWith(`${dir}/alerts.yaml passes promtool check rules and test rules`, [
    command("promtool", "prometheus"),
  ], async (t) => {
    const cwd = `${repository}${dir}`;
    await t.step("promtool check rules", async () => {
      const { code, output } = await promtool(["check", "rules", "alerts.yaml"], cwd);
      assert.equal(code, 0, output);
      assert.match(output, /SUCCESS: \d+ rules found/);
    });
    await t.step("promtool test rules alerts_test.yaml", async () => {
      const { code, output } = await promtool(["test", "rules", "alerts_test.yaml"], cwd);
      assert.equal(code, 0, output);
      assert.match(output, /SUCCESS/);
    });
  });
}

testWith("promtool test rules fails when a rule's threshold changes", [
  command("promtool", "prometheus"),
], async () => {
  const dir = await Deno.makeTempDir({ prefix: "triad-rules-" });
  try {
    const source = `${repository}dnsproxy/monitoring`;
    const rules = await Deno.readTextFile(`${source}/alerts.yaml`);
    const mutated = rules.replace("< 0.5", "< 0.2");
    assert.notEqual(mutated, rules);
    await Deno.writeTextFile(`${dir}/alerts.yaml`, mutated);
    await Deno.copyFile(`${source}/alerts_test.yaml`, `${dir}/alerts_test.yaml`);
    const { code, output } = await promtool(["test", "rules", "alerts_test.yaml"], dir);
    assert.notEqual(code, 0, output);
    assert.match(output, /DnsProxyCacheHitRatioLow/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
