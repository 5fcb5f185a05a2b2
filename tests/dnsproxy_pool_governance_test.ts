/**
 * Governance of the TCP/TLS upstream pools: connections idle past `idleTimeout` are reclaimed, and
 * an upstream whose last `slowAfter` round trips each took longer than `slowRtt` is deprioritised
 * (tried after the others) until it answers fast again (its probes do). The slow upstream is a real
 * TCP relay in front of unbound that holds every reply for a configurable delay.
 *
 * @module
 */
import assert from "node:assert/strict";
import { buildQuery, DnsProxy, parseMessage, Rcode } from "@triad/dnsproxy";
import { createLogger, formatPrometheus } from "@triad/core";
import { command, testWith } from "./requirements.ts";
import { startUnbound } from "./servers/unbound.ts";
import { openSockets, settledSockets } from "./dnsproxy_client.ts";
import { pollUntil } from "./wait_for.ts";

/**
 * A TCP relay on loopback to `target`: client bytes go through at once, replies after `delay` ms
 * (in order). Counts the connections it accepted and the bytes it forwarded upstream.
 */
function delayingRelay(target: { hostname: string; port: number }, scheme: "tcp" | "tls") {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const state = { delay: 0, accepted: 0, open: 0, forwarded: 0 };
  const conns = new Set<Deno.Conn>();
  const pipes: Promise<void>[] = [];
  const accepting = (async () => {
    for await (const client of listener) {
      state.accepted++;
      state.open++;
      const upstream = await Deno.connect(target);
      conns.add(client);
      conns.add(upstream);
      const closeBoth = () => {
        for (const conn of [client, upstream]) {
          if (conns.delete(conn)) {
            try {
              conn.close();
            } catch { /* closed */ }
          }
        }
      };
      pipes.push((async () => {
        const buffer = new Uint8Array(65536);
        try {
          for (;;) {
            const n = await client.read(buffer);
            if (n === null) break;
            state.forwarded += n;
            await upstream.write(buffer.slice(0, n));
          }
        } catch { /* closed */ }
        state.open--;
        closeBoth();
      })());
      pipes.push((async () => {
        const buffer = new Uint8Array(65536);
        let chain = Promise.resolve();
        try {
          for (;;) {
            const n = await upstream.read(buffer);
            if (n === null) break;
            const chunk = buffer.slice(0, n);
            const due = performance.now() + state.delay;
            chain = chain.then(async () => {
              const wait = due - performance.now();
              if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
              await client.write(chunk);
            }).catch(() => {});
          }
        } catch { /* closed */ }
        await chain;
        closeBoth();
      })());
    }
  })();
  return {
    address: `${scheme}://127.0.0.1:${(listener.addr as Deno.NetAddr).port}`,
    state,
    async close() {
      listener.close();
      for (const conn of conns) {
        try {
          conn.close();
        } catch { /* closed */ }
      }
      conns.clear();
      await accepting.catch(() => {});
      await Promise.all(pipes);
    },
  };
}

const client = { address: "127.0.0.1", port: 1000, transport: "udp" } as const;

for (const scheme of ["tcp", "tls"] as const) {
  testWith(
    `${scheme.toUpperCase()} upstream pools: idle connections reclaimed, a slow upstream deprioritised`,
    [command("unbound"), ...(scheme === "tls" ? [command("openssl")] : [])],
    async (t) => {
      const socketsBefore = openSockets();
      {
        await using unbound = await startUnbound({ tls: scheme === "tls" });
        const port = scheme === "tls" ? Number(unbound.tlsAddress!.split(":")[1]) : unbound.port;
        const relay = delayingRelay({ hostname: "127.0.0.1", port }, scheme);
        const direct = `${scheme}://127.0.0.1:${port}`;
        const tls = scheme === "tls" ? { caCerts: [unbound.tlsCert!] } : {};
        const lines: string[] = [];
        const logger = createLogger({ level: "info", write: (line) => lines.push(line) });
        const proxy = new DnsProxy({
          upstream: {
            // The relay first: `sequential` asks it first while it is not deprioritised.
            upstreams: [{ address: relay.address, ...tls }, { address: direct, ...tls }],
            policy: "sequential",
            healthCheck: 20,
            timeout: 2000,
            attempts: 2,
            idleTimeout: 150,
            slowRtt: 100,
            slowAfter: 3,
          },
          cache: { maxEntries: 0 },
          queryLog: true,
          logger,
        });
        const metric = (name: string, upstream: string) => {
          const text = formatPrometheus(proxy.metrics.registry.snapshot());
          const escaped = upstream.replace(/[.:/]/g, "\\$&");
          const match = new RegExp(`^${name}\\{upstream="${escaped}"\\} (\\d+)`, "m").exec(text);
          return Number(match?.[1] ?? NaN);
        };
        let n = 0;
        const ask = async () => {
          const query = buildQuery({ id: ++n, name: "a.test", type: 1 });
          const answer = await proxy.handle(query, client);
          assert.equal(parseMessage(answer!).rcode, Rcode.NOERROR);
        };
        try {
          await t.step("connections idle past idleTimeout are closed", async () => {
            await ask();
            assert.equal(relay.state.open, 1);
            assert.equal(metric("dns_upstream_connections", relay.address), 1);
            const idleSince = performance.now();
            await pollUntil(() => relay.state.open === 0, "the relay's connection closed");
            const waited = performance.now() - idleSince;
            assert.ok(waited >= 140, `closed after ${waited.toFixed(0)} ms idle, before 150 ms`);
            assert.equal(metric("dns_upstream_idle_closed_total", relay.address), 1);
            assert.equal(metric("dns_upstream_connections", relay.address), 0);
          });

          await t.step("three slow round trips deprioritise the upstream", async () => {
            relay.state.delay = 150;
            for (let i = 0; i < 3; i++) {
              const before = relay.state.forwarded;
              await ask();
              assert.ok(relay.state.forwarded > before, `query ${i} went through the relay`);
            }
            assert.equal(metric("dns_upstream_slow", relay.address), 1);
            assert.equal(metric("dns_upstream_slow_total", relay.address), 1);
            assert.ok(lines.some((l) => l.includes('"upstream slow"')), "logged");
            // Now the fast upstream answers; only probes (`. NS`, every 20 ms) reach the relay.
            lines.length = 0;
            await ask();
            const logged = lines.map((l) => JSON.parse(l)).find((r) => r.msg === "query");
            assert.equal(logged?.upstream, direct);
            assert.equal(logged?.deprioritized, relay.address);
          });

          await t.step("it is preferred again once it answers fast", async () => {
            relay.state.delay = 0;
            await pollUntil(
              () => metric("dns_upstream_slow", relay.address) === 0,
              "a fast probe bringing it back",
            );
            assert.ok(lines.some((l) => l.includes('"upstream fast again"')), "logged");
            lines.length = 0;
            await ask();
            const logged = lines.map((l) => JSON.parse(l)).find((r) => r.msg === "query");
            assert.equal(logged?.upstream, relay.address);
            assert.equal(logged?.deprioritized, undefined);
          });
        } finally {
          proxy.close();
          await relay.close();
        }
      }
      assert.equal(await settledSockets(socketsBefore), socketsBefore, "no socket left open");
    },
  );
}
