/**
 * `deno task verify` on the running kernel: every shipped program loads within its committed
 * verifier budget, and a budget the program outgrows fails naming it.
 *
 * @module
 */
import assert from "node:assert/strict";
import { bpfTest, type Requirement, testWith } from "./requirements.ts";

/** ebpf/verify/budget.json has figures for the running kernel (`deno task verify --update`). */
const budgetForThisKernel: Requirement = {
  name: "a verifier budget for this kernel",
  check: () => {
    const key = Deno.osRelease().split(".").slice(0, 2).join(".");
    const budget = JSON.parse(
      Deno.readTextFileSync(new URL("../ebpf/verify/budget.json", import.meta.url)),
    ) as { programs: Record<string, Record<string, unknown>> };
    return Object.values(budget.programs).some((kernels) => key in kernels)
      ? undefined
      : `ebpf/verify/budget.json has no figures for kernel ${key}: run deno task verify --update ` +
        "on it and commit the budget";
  },
};
const needs = [...bpfTest, budgetForThisKernel];
const root = new URL("..", import.meta.url).pathname;

async function verify(...args: string[]) {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["task", "verify", ...args],
    cwd: root,
    stdout: "piped",
    stderr: "piped",
  }).output();
  return {
    code: output.code,
    out: new TextDecoder().decode(output.stdout),
    err: new TextDecoder().decode(output.stderr),
  };
}

testWith("deno task verify: every shipped program is within its budget", needs, async () => {
  const { code, out, err } = await verify();
  assert.equal(code, 0, `${out}\n${err}`);
  for (
    const program of [
      "tcptrace/inet_sock_set_state",
      "ringbench/produce",
      "dnsfilter/dnsfilter_xdp",
      "dnsfilter/dnsfilter_tc",
    ]
  ) {
    const line = out.split("\n").find((l) => l.startsWith(`${program} `));
    assert.ok(line !== undefined, `${program} listed:\n${out}`);
    // insns, budget, peak states, budget, time, the kernel's verified_insns: all numbers.
    const cells = line.trim().split(/\s+/);
    assert.match(cells.slice(1, 7).join(" "), /^\d+ \d+ \d+ \d+ \d+ \d+\*?$/, line);
    assert.equal(cells[1], cells[6]!.replace("*", ""), "the log and the kernel agree");
    assert.match(line, /\bok\b/);
  }
});

testWith("deno task verify fails when a program outgrows its budget", needs, async () => {
  const budget = await Deno.makeTempFile({ suffix: ".json" });
  try {
    const committed = JSON.parse(await Deno.readTextFile(`${root}ebpf/verify/budget.json`));
    const kernels = committed.programs["dnsfilter/dnsfilter_xdp"];
    for (const key of Object.keys(kernels)) kernels[key] = { insns: 100, peakStates: 5 };
    await Deno.writeTextFile(budget, JSON.stringify(committed));
    const { code, out, err } = await verify("--budget", budget);
    assert.equal(code, 1, out);
    assert.match(out, /^dnsfilter\/dnsfilter_xdp .*FAIL: insns \d+ > 100 \+ 25%/m);
    assert.match(err, /1 program\(s\) over budget or not loading/);
    assert.match(out, /^dnsfilter\/dnsfilter_tc .* ok$/m, "the others pass");
  } finally {
    await Deno.remove(budget);
  }
});
