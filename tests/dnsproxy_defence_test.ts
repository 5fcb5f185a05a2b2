/**
 * The proxy defending itself in the kernel, end to end: `runDnsProxy` with `--xdp` on the host
 * end of a veth pair into a client namespace the test creates. Clients flood from addresses that
 * trip each rule; blocked traffic is dropped in XDP (the kernel counters move, the proxy's own
 * query counters do not), a legitimate client keeps its answers, blocks expire, a configuration
 * change adds and removes static blocks live, and the maps and links are gone after stop.
 *
 * @module
 */
import assert from "node:assert/strict";
import { createLogger } from "@triad/core";
import { runDnsProxy } from "@triad/dnsproxy/main";
import { buildErrorResponse } from "../dnsproxy/wire/builders.ts";
import { parseMessage } from "../dnsproxy/wire/message.ts";
import { bpfCapabilities, bpfTest, command, netAdmin, testWith } from "./requirements.ts";
import { startFakeUpstream } from "./dnsproxy_fake_upstream.ts";
import { bpftoolIds } from "./ebpf_leak_check.ts";
import { pollUntil } from "./wait_for.ts";

const needs = [
  ...bpfTest,
  netAdmin,
  command("ip", "iproute2"),
];
const FLOOD = new URL("./dnsproxy_defence_flood.ts", import.meta.url).pathname;

async function run(args: string[]): Promise<string> {
  const output = await new Deno.Command(args[0]!, {
    args: args.slice(1),
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(output.stdout);
  if (!output.success) {
    throw new Error(`${args.join(" ")} failed: ${new TextDecoder().decode(output.stderr)}`);
  }
  return text;
}

/** A namespace with a veth pair on a /24: the host end is .1, the peer holds the given hosts. */
async function clientNamespace(hosts: number[]) {
  const tag = `${Deno.pid % 100000}`;
  const namespace = `tdef${tag}`;
  const hostInterface = `td${tag}a`;
  const subnet = `10.252.${Deno.pid % 250}`;
  const cleanup = async () => {
    await run(["ip", "link", "del", hostInterface]).catch(() => {});
    await run(["ip", "netns", "del", namespace]).catch(() => {});
  };
  await cleanup();
  try {
    await run(["ip", "netns", "add", namespace]);
    await run(["ip", "link", "add", hostInterface, "type", "veth", "peer", "name", `td${tag}b`]);
    await run(["ip", "link", "set", `td${tag}b`, "netns", namespace]);
    await run(["ip", "addr", "add", `${subnet}.1/24`, "dev", hostInterface]);
    await run(["ip", "link", "set", hostInterface, "up"]);
    for (const host of hosts) {
      await run(["ip", "-n", namespace, "addr", "add", `${subnet}.${host}/24`, "dev", `td${tag}b`]);
    }
    await run(["ip", "-n", namespace, "link", "set", `td${tag}b`, "up"]);
    await run(["ip", "-n", namespace, "link", "set", "lo", "up"]);
  } catch (error) {
    await cleanup();
    throw error;
  }
  return { namespace, hostInterface, subnet, [Symbol.asyncDispose]: cleanup };
}

/** Adds a TXT answer of about `size` bytes to a response (for the response-bytes rule). */
function withTxt(response: Uint8Array, size: number): Uint8Array {
  const text = new Uint8Array(size).fill(0x61);
  const record = new Uint8Array(12 + 1 + size);
  const view = new DataView(record.buffer);
  view.setUint16(0, 0xc00c); // the question's name
  view.setUint16(2, 16); // TXT
  view.setUint16(4, 1);
  view.setUint32(6, 60);
  view.setUint16(10, 1 + size);
  record[12] = size;
  record.set(text, 13);
  const out = new Uint8Array(response.length + record.length);
  out.set(response);
  out.set(record, response.length);
  new DataView(out.buffer).setUint16(6, 1); // ANCOUNT
  return out;
}

function metric(text: string, name: string, labels: string): number {
  const escaped = labels.replace(/[{}]/g, "\\$&");
  const match = new RegExp(`^${name}${escaped} (\\d+)$`, "m").exec(text);
  return match === null ? 0 : Number(match[1]);
}

function queriesSeen(text: string): number {
  let sum = 0;
  for (const match of text.matchAll(/^dns_queries_total\{[^}]*\} (\d+)$/gm)) {
    sum += Number(match[1]);
  }
  return sum;
}

testWith(
  "--xdp: blocks from each rule are dropped in the kernel, expire, and reload live",
  needs,
  async (t) => {
    const mine: [kind: "prog" | "map" | "link", id: number][] = [];
    const dir = await Deno.makeTempDir({ prefix: "triad-defence-" });
    const logs: string[] = [];
    try {
      await using net = await clientNamespace([2, 10, 11, 12, 13, 14, 15]);
      const at = (host: number) => `${net.subnet}.${host}`;
      await using upstream = await startFakeUpstream((query, reply) => {
        const name = new TextDecoder().decode(query.subarray(13, 40));
        const info = parseMessage(query);
        const rcode = name.includes("nx") ? 3 : name.includes("sf") ? 2 : 0;
        // A big answer is sent without OPT, so that its record can simply be appended.
        reply(
          name.includes("big")
            ? withTxt(buildErrorResponse(query, 0, { ...info, edns: undefined }), 400)
            : buildErrorResponse(query, rcode, info),
        );
      });
      const file = `${dir}/dnsproxy.yaml`;
      const write = (clients: string[]) =>
        Deno.writeTextFile(
          `${file}.tmp`,
          `upstream:\n  servers: ["${upstream.address}"]\n` +
            `defence:\n  rules:\n` +
            `    - { name: qps, measure: queries, rate: 40, window: 1s, action: drop, ` +
            `duration: 1500ms }\n` +
            `    - { name: nx, measure: nxdomain, rate: 5, window: 1s, action: drop, ` +
            `duration: 60s }\n` +
            `    - { name: sf, measure: servfail, rate: 5, window: 1s, action: drop, ` +
            `duration: 60s }\n` +
            `    - { name: big, measure: bytes, rate: 4000, window: 1s, action: drop, ` +
            `duration: 60s }\n` +
            `  block:\n    clients: ${JSON.stringify(clients)}\n    names: ["blocked.test"]\n`,
        ).then(() => Deno.rename(`${file}.tmp`, file));
      await write([`${at(12)}/32`]);
      await using running = await runDnsProxy({
        argv: ["--config", file, "--listen", `${at(1)}:0`, "--xdp", net.hostInterface],
        env: {},
        logger: createLogger({ write: (line) => logs.push(line), level: "info" }),
      });
      const port = running.address.port;
      const filter = running.defence.filter;
      assert.ok(filter !== undefined, `the kernel filter runs (${running.defence.reason})`);
      assert.ok(logs.some((line) => /defence filter attached/.test(line)), logs.join("\n"));
      // veth has native XDP: probing picks it first.
      assert.deepEqual(filter.attachments, [{ iface: net.hostInterface, mode: "native" }]);
      const ids = filter.ids;
      for (const id of ids.progs) mine.push(["prog", id]);
      for (const id of ids.maps) mine.push(["map", id]);
      for (const id of ids.links) mine.push(["link", id]);
      assert.equal(ids.links.length, 1, "one XDP link");

      const flood = async (host: number, count: number, name: string, waitMs: number) =>
        JSON.parse(
          await run([
            "ip",
            "netns",
            "exec",
            net.namespace,
            Deno.execPath(),
            "run",
            "-A",
            FLOOD,
            at(host),
            at(1),
            String(port),
            String(count),
            name,
            String(waitMs),
          ]),
        ) as { sent: number; answered: number; rcodes: Record<string, number> };
      const kernel = async (rule: string) =>
        metric(
          await running.metrics(),
          "dns_defence_kernel_dropped_packets_total",
          `{rule="${rule}",action="drop"}`,
        );
      const legitAnswered = async () => {
        const result = await flood(2, 3, "legit.test", 5000);
        assert.equal(result.answered, 3, "the legitimate client keeps its answers");
      };

      await t.step("a legitimate client is answered", legitAnswered);

      await t.step("a query flood trips the rate rule; then XDP drops it", async () => {
        await flood(10, 200, "flood.test", 0);
        await pollUntil(() => filter.hasPrefix(`${at(10)}/32`), "the qps block in the map");
        const seenBefore = queriesSeen(await running.metrics());
        const droppedBefore = await kernel("qps");
        const result = await flood(10, 100, "flood.test", 0);
        assert.equal(result.sent, 100);
        await pollUntil(async () => (await kernel("qps")) >= droppedBefore + 100, "drops");
        await legitAnswered(); // a later query the proxy sees: the flood is behind it
        assert.equal(queriesSeen(await running.metrics()), seenBefore + 3, "proxy saw none");
        assert.ok(logs.some((line) => /block started/.test(line) && line.includes(at(10))));
      });

      await t.step("an NXDOMAIN flood trips the NXDOMAIN rule", async () => {
        await flood(11, 20, "nx.test", 3000);
        await pollUntil(() => filter.hasPrefix(`${at(11)}/32`), "the nx block in the map");
        const before = await kernel("nx");
        await flood(11, 30, "other.test", 0);
        await pollUntil(async () => (await kernel("nx")) >= before + 30, "nx drops");
        await legitAnswered();
      });

      for (const [host, rule, name] of [[14, "sf", "sf.test"], [15, "big", "big.test"]] as const) {
        await t.step(`a ${rule} flood trips the ${rule} rule`, async () => {
          await flood(host, 20, name, 3000);
          await pollUntil(() => filter.hasPrefix(`${at(host)}/32`), `the ${rule} block`);
          const before = await kernel(rule);
          await flood(host, 30, "other.test", 0);
          await pollUntil(async () => (await kernel(rule)) >= before + 30, `${rule} drops`);
        });
      }

      await t.step("static lists drop a prefix and a name in the kernel", async () => {
        await flood(12, 25, "static.test", 0);
        await pollUntil(async () => (await kernel("static_clients")) >= 25, "static drops");
        await flood(2, 5, "blocked.test", 0);
        await pollUntil(async () => (await kernel("static_names")) >= 5, "name drops");
        await legitAnswered();
      });

      await t.step("the rate block expires: the client is answered again", async () => {
        await pollUntil(
          async () => (await flood(10, 1, "again.test", 300)).answered === 1,
          "the qps block to end",
          10_000,
        );
        await pollUntil(() => !filter.hasPrefix(`${at(10)}/32`), "the map entry to go");
        assert.ok(logs.some((line) => /block ended/.test(line) && line.includes(at(10))));
      });

      await t.step("a configuration change swaps static blocks live", async () => {
        const applied = running.reloads.applied;
        await write([`${at(13)}/32`]);
        await pollUntil(() => running.reloads.applied > applied, "the reload");
        assert.ok(!filter.hasPrefix(`${at(12)}/32`));
        assert.ok(filter.hasPrefix(`${at(13)}/32`));
        // The loops' own copy of the lists follows by message: poll.
        await pollUntil(
          async () => (await flood(12, 1, "free.test", 1000)).answered === 1,
          "the unblocked client's answer",
          10_000,
        );
        const before = await kernel("static_clients");
        await flood(13, 10, "now-blocked.test", 0);
        await pollUntil(
          async () => (await kernel("static_clients")) >= before + 10,
          "drops of the new static block",
          5000,
        );
      });
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
    // The program, its maps and the XDP link are gone after stop (freed after an RCU grace
    // period: polled). File descriptors are not compared here: the proxy program's config
    // watcher and loops own descriptors of their own (see tests/dnsproxy_main_test.ts).
    assert.ok(mine.length >= 6);
    await pollUntil(
      () => mine.every(([kind, id]) => !bpftoolIds(kind).has(id)),
      `bpftool to list none of ${mine.map(([kind, id]) => `${kind} ${id}`).join(", ")}`,
      10_000,
    );
  },
);

testWith(
  "--xdp on an interface the filter cannot use: the proxy runs, saying why once",
  [bpfCapabilities],
  async () => {
    const logs: string[] = [];
    await using upstream = await startFakeUpstream((query, reply) => {
      reply(buildErrorResponse(query, 0, parseMessage(query)));
    });
    await using running = await runDnsProxy({
      argv: ["--listen", "127.0.0.1:0", "--xdp", "no-such-if0", "--upstream", upstream.address],
      env: {},
      logger: createLogger({ write: (line) => logs.push(line), level: "info" }),
    });
    assert.equal(running.defence.filter, undefined);
    assert.match(running.defence.reason, /no-such-if0/);
    const lines = logs.filter((line) => /kernel filter not loaded/.test(line));
    assert.equal(lines.length, 1, logs.join("\n"));
    // the kernel counters are there at 0 (dashboards and alerts have series), no attachment
    const text = await running.metrics();
    for (const rule of ["static_clients", "static_names"]) {
      for (const name of ["packets", "bytes"]) {
        assert.match(
          text,
          new RegExp(
            `^dns_defence_kernel_dropped_${name}_total\\{rule="${rule}",action="drop"\\} 0$`,
            "m",
          ),
        );
      }
    }
    assert.doesNotMatch(text, /^dns_defence_kernel_attached\{/m);
    const { queryUdp } = await import("./dnsproxy_client.ts");
    const { buildQuery } = await import("../dnsproxy/wire/builders.ts");
    const reply = await queryUdp(running.address.port, buildQuery({ id: 1, name: "a.", type: 1 }));
    assert.ok(reply !== null, "answered as before");
  },
);

testWith(
  "static blocks from an etcd key are added and removed live (user space, refused)",
  [command("etcd", "etcd-server")],
  async () => {
    const { startEtcd } = await import("./servers/etcd.ts");
    const { queryUdp } = await import("./dnsproxy_client.ts");
    const { buildQuery } = await import("../dnsproxy/wire/builders.ts");
    await using etcd = await startEtcd();
    await using upstream = await startFakeUpstream((query, reply) => {
      reply(buildErrorResponse(query, 0, parseMessage(query)));
    });
    const doc = (clients: string[]) =>
      `defence:\n  block:\n    clients: ${JSON.stringify(clients)}\n    action: refused\n`;
    await etcd.put("/triad/dnsproxy.yaml", doc(["127.0.0.0/8"]));
    await using running = await runDnsProxy({
      argv: ["--listen", "127.0.0.1:0", "--upstream", upstream.address, "--etcd", etcd.endpoint],
      env: {},
      logger: createLogger({ write: () => {}, level: "error" }),
    });
    const rcode = async () => {
      const reply = await queryUdp(
        running.address.port,
        buildQuery({ id: 2, name: "a.", type: 1 }),
      );
      return reply === null ? -1 : reply[3]! & 0xf;
    };
    assert.equal(await rcode(), 5, "REFUSED: blocked by the etcd document");
    const applied = running.reloads.applied;
    await etcd.put("/triad/dnsproxy.yaml", doc(["192.0.2.0/24"]));
    await pollUntil(() => running.reloads.applied > applied, "the etcd change", 10_000);
    // The loops get the new settings by message: poll until they apply them.
    await pollUntil(async () => (await rcode()) === 0, "an answer once the block is gone", 10_000);
    await etcd.put("/triad/dnsproxy.yaml", doc(["127.0.0.1/32"]));
    await pollUntil(async () => (await rcode()) === 5, "the block to come back", 10_000);
  },
);
