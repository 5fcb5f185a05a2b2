import assert from "node:assert/strict";
import { buildQuery, parseMessage, Rcode, RrType } from "@triad/dnsproxy";
import { runDnsProxy } from "@triad/dnsproxy/main";
import { createLogger } from "@triad/core";
import { command, testWith } from "./requirements.ts";
import { startUnbound } from "./servers/unbound.ts";
import { pollUntil } from "./wait_for.ts";
import { openSockets, queryUdp, settledSockets } from "./dnsproxy_client.ts";

const needs = [command("unbound")];

/** Upstream answers counted by the latency histogram, per upstream. */
function answeredBy(text: string, upstream: string): number {
  const line = text.split("\n").find((l) =>
    l.startsWith(`dns_upstream_latency_seconds_count{upstream="${upstream}"} `)
  );
  return line === undefined ? 0 : Number(line.split(" ")[1]);
}

for (const backend of ["builtin", "epoll"]) {
  testWith(
    `runDnsProxy() on the ${backend} backend reloads its file under load without losing a query`,
    needs,
    async (t) => {
      const socketsBefore = openSockets();
      const dir = await Deno.makeTempDir({ prefix: "triad-dnsproxy-" });
      const logs: string[] = [];
      try {
        await using first = await startUnbound();
        await using second = await startUnbound();
        const file = `${dir}/dnsproxy.yaml`;
        const write = (text: string) =>
          Deno.writeTextFile(`${file}.tmp`, text).then(() => Deno.rename(`${file}.tmp`, file));
        const yaml = (upstream: string, entries: number) =>
          `upstream:\n  servers: ["${upstream}"]\n  timeout: 1s\ncache:\n  max_entries: ${entries}\n`;
        await write(yaml(first.address, 1000));
        await using running = await runDnsProxy({
          argv: [
            "--config",
            file,
            "--listen",
            "127.0.0.1:0",
            "--metrics",
            "127.0.0.1:0",
            "--backend",
            backend,
          ],
          env: {},
          logger: createLogger({ write: (line) => logs.push(line), level: "info" }),
        });
        const port = running.address.port;

        await t.step("serves, with /metrics", async () => {
          const query = buildQuery({ id: 1, name: "a.test", type: RrType.A });
          assert.equal(parseMessage((await queryUdp(port, query))!).rcode, Rcode.NOERROR);
          const text = await (await fetch(`http://${running.metricsAddress}/metrics`)).text();
          assert.match(text, /^dns_queries_total\{type="A",transport="udp"\} 1$/m);
        });

        await t.step("a reload switching upstreams under load loses no query", async () => {
          let stop = false;
          let sent = 0;
          const failures: string[] = [];
          const worker = async (w: number) => {
            for (let i = 0; !stop && i < 5000; i++) {
              sent++;
              const name = `w${w}-q${i}.bench`; // unique: every query is a miss, sent upstream
              const query = buildQuery({ id: i & 0xffff, name, type: 1 });
              const reply = await queryUdp(port, query, 2000);
              if (reply === null) failures.push(`${name}: no answer`);
              else if (parseMessage(reply).rcode !== Rcode.NOERROR) failures.push(`${name}: rcode`);
            }
          };
          const load = Promise.all(Array.from({ length: 16 }, (_, w) => worker(w)));
          await pollUntil(() => sent >= 100, "queries under way before the reload");
          const before = running.reloads.applied;
          await write(yaml(second.address, 500));
          await pollUntil(() => running.reloads.applied > before, "the reload");
          await pollUntil(
            async () => answeredBy(await running.metrics(), second.address) > 0,
            "queries answered by the new upstream",
          );
          stop = true;
          await load;
          assert.deepEqual(failures, []);
          assert.ok(sent > 100, `${sent} queries sent`);
          const text = await running.metrics();
          assert.ok(answeredBy(text, first.address) > 0, "the first upstream served");
          const served = answeredBy(text, second.address);
          assert.ok(served > 0, "the second upstream served");
          await queryUdp(port, buildQuery({ id: 3, name: "after-reload.bench", type: 1 }));
          assert.equal(answeredBy(await running.metrics(), second.address), served + 1);
          const entries = /^dns_cache_entries (\d+)$/m.exec(text);
          assert.ok(
            entries !== null && Number(entries[1]) <= 1000,
            `cache entries ${entries?.[1]}`,
          );
          if (running.proxy !== undefined) {
            assert.deepEqual(running.proxy.upstreams.upstreams.map((u) => u.name), [
              second.address,
            ]);
            assert.ok(running.proxy.cache.size <= 500);
          }
        });

        await t.step("an invalid file keeps the running configuration and says why", async () => {
          const failedBefore = running.reloads.failed;
          await write(`upstream:\n  servers: ["${first.address}"]\n  policy: fastest-ish\n`);
          await pollUntil(() => running.reloads.failed > failedBefore, "the failed reload");
          assert.ok(
            logs.some((l) => /keeping the running one/.test(l) && /upstream\.policy/.test(l)),
          );
          await write("upstream: [unclosed\n");
          await pollUntil(() => running.reloads.failed > failedBefore + 1, "the second failure");
          assert.ok(logs.some((l) => /dnsproxy\.yaml:\d+:\d+/.test(l)), "names file:line:col");
          const served = answeredBy(await running.metrics(), second.address);
          const reply = await queryUdp(port, buildQuery({ id: 2, name: "still.bench", type: 1 }));
          assert.equal(parseMessage(reply!).rcode, Rcode.NOERROR);
          assert.equal(answeredBy(await running.metrics(), second.address), served + 1);
        });
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
      // Deno.watchFs keeps its inotify, epoll and eventfd descriptors after close() (a Deno
      // runtime behaviour, seen with a bare watchFs too), so only sockets and pipes are compared.
      assert.equal(
        await settledSockets(socketsBefore),
        socketsBefore,
        "no socket or pipe left open",
      );
    },
  );
}

Deno.test("runDnsProxy() works with no file: 127.0.0.1:5353 and resolv.conf upstreams", async () => {
  const dir = await Deno.makeTempDir({ prefix: "triad-dnsproxy-" });
  try {
    const resolvConf = `${dir}/resolv.conf`;
    await Deno.writeTextFile(resolvConf, "nameserver 127.0.0.1\nnameserver 10.9.8.7\n");
    // Port 0 instead of 5353 so tests never clash; the default is checked through the schema.
    await using running = await runDnsProxy({
      argv: ["--listen", "127.0.0.1:0", "--backend", "builtin"],
      env: {},
      resolvConf,
      logger: createLogger({ write: () => {} }),
    });
    // 127.0.0.1:53 is kept (the proxy is not on port 53); no query is sent to either.
    assert.deepEqual(running.proxy!.upstreams.upstreams.map((u) => u.name), [
      "127.0.0.1:53",
      "10.9.8.7:53",
    ]);
    const { parseDnsConfig, upstreamsFromResolvConf } = await import("@triad/dnsproxy");
    const defaults = parseDnsConfig({});
    assert.equal(defaults.listen, "127.0.0.1:5353");
    assert.equal(defaults.backend, "auto");
    assert.deepEqual(upstreamsFromResolvConf("nameserver 127.0.0.1\n", "127.0.0.1:53"), []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
