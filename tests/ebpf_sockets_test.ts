/**
 * Privileged tests of socket programs on the real kernel, in a network namespace the test creates:
 * sk_lookup steers connections to a port nobody listens on to a listener in a SOCKMAP, an sk_skb
 * stream verdict forwards one connection's data out of another (SOCKMAP), and an sk_msg verdict
 * redirects what a socket sends into another socket (SOCKHASH). The programs run in a child
 * process inside the namespace (`ebpf_sockets_child.ts`), so nothing touches this namespace.
 *
 * @module
 */
import assert from "node:assert/strict";
import { bpfTest, command, kernelAtLeast, netAdmin, testWith } from "./requirements.ts";
import { LeakTracker } from "./ebpf_leak_check.ts";

const CHILD = new URL("./ebpf_sockets_child.ts", import.meta.url).pathname;

const needs = [
  ...bpfTest,
  netAdmin,
  command("ip", "iproute2"),
  // sk_lookup came in 5.9 (SOCKMAP with sk_skb in 4.14, SOCKHASH and sk_msg in 4.17).
  kernelAtLeast(5, 9, "sk_lookup programs (and SOCKMAP/SOCKHASH with sk_msg/sk_skb)"),
];

async function ip(...args: string[]): Promise<void> {
  const output = await new Deno.Command("ip", { args, stdout: "null", stderr: "piped" }).output();
  if (!output.success) {
    throw new Error(`ip ${args.join(" ")}: ${new TextDecoder().decode(output.stderr).trim()}`);
  }
}

interface ChildResult {
  skLookup?: { received: string; steered: number };
  afterDetach?: string;
  skSkb?: { clientB: string; forwarded: number };
  skMsg?: { serverD: string; redirected: number };
  open?: string;
  blocked?: string;
  dropped?: number;
  seen?: number;
  seenAfterDetach?: number;
  error?: string;
  ids: { prog: number[]; map: number[]; link: number[] };
}

/** Runs the child in a fresh network namespace and returns its result line. */
async function runInNamespace(args: string[]): Promise<ChildResult> {
  const namespace = `triadsk${Deno.pid % 100000}`;
  await ip("netns", "add", namespace);
  try {
    await ip("-n", namespace, "link", "set", "lo", "up");
    const output = await new Deno.Command("ip", {
      args: ["netns", "exec", namespace, Deno.execPath(), "run", "-A", CHILD, ...args],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stdout = new TextDecoder().decode(output.stdout);
    const stderr = new TextDecoder().decode(output.stderr);
    assert.ok(output.success, `child failed: ${stderr}`);
    return JSON.parse(stdout.trim().split("\n").at(-1)!) as ChildResult;
  } finally {
    await ip("netns", "del", namespace);
  }
}

testWith("Socket programs redirect real traffic in a network namespace", needs, async (t) => {
  const tracker = new LeakTracker();
  const result = await runInNamespace([]);
  for (const kind of ["prog", "map", "link"] as const) tracker.add(kind, ...result.ids[kind]);
  assert.equal(result.error, undefined);

  await t.step("sk_lookup: a connection to an unused port reaches the steered listener", () => {
    assert.deepEqual(result.skLookup, { received: "steered", steered: 1 });
  });
  await t.step("closing the sk_lookup link stops the steering (connection refused)", () => {
    assert.equal(result.afterDetach, "refused");
  });
  await t.step("sk_skb stream verdict: one connection's data arrives on another", () => {
    assert.equal(result.skSkb?.clientB, "forwarded");
    assert.ok(result.skSkb!.forwarded >= 1);
  });
  await t.step("sk_msg verdict: what one socket sends lands in another's queue", () => {
    assert.equal(result.skMsg?.serverD, "redirected");
    assert.ok(result.skMsg!.redirected >= 1);
  });
  await t.step("nothing left behind (bpftool)", async () => {
    assert.equal(result.ids.link.length, 3);
    await tracker.assertReleased();
  });
});

testWith("Program.attachNetfilter() drops real traffic in a network namespace", [
  ...needs.filter((requirement) => !requirement.name.startsWith("Linux")),
  kernelAtLeast(6, 4, "netfilter BPF links"),
], async (t) => {
  const tracker = new LeakTracker();
  const result = await runInNamespace(["netfilter"]);
  for (const kind of ["prog", "map", "link"] as const) tracker.add(kind, ...result.ids[kind]);
  assert.equal(result.error, undefined);
  await t.step("a connection to another port goes through", () => {
    assert.equal(result.open, "connected");
  });
  await t.step("SYNs to the blocked port are dropped (the connect times out), and counted", () => {
    assert.equal(result.blocked, "failed");
    assert.ok(result.dropped! >= 1, `dropped ${result.dropped}`);
  });
  await t.step("after close the program no longer runs (refused, not dropped)", () => {
    assert.equal(result.afterDetach, "failed");
    assert.equal(result.seenAfterDetach, 0);
  });
  await t.step("nothing left behind (bpftool)", async () => {
    await tracker.assertReleased();
  });
});
