import assert from "node:assert/strict";
import { buildQuery, parseMessage, Rcode, RrType } from "@triad/dnsproxy";
import { command, testWith } from "./requirements.ts";
import { startUnbound } from "./servers/unbound.ts";
import { startDnsProxyProcess } from "./servers/dnsproxy_process.ts";
import { queryUdp } from "./dnsproxy_client.ts";

async function get(url: string): Promise<{ status: number; body: string }> {
  const response = await fetch(url);
  return { status: response.status, body: await response.text() };
}

/** Polls `check` until it returns a value, sending `nudge` between tries; bounded. */
async function until<T>(
  check: () => Promise<T | undefined>,
  what: string,
  nudge: () => Promise<unknown> = () => new Promise((r) => setTimeout(r, 50)),
  timeoutMs = 15_000,
): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (performance.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await nudge();
  }
}

const config = (upstream: string) =>
  `upstream:\n  servers: ["${upstream}"]\n  timeout: 300ms\n  max_fails: 2\n` +
  `  health_check: 100ms\ncache:\n  serve_stale: 0\nlog:\n  format: json\n`;

testWith(
  "deno task dns answers /health/live and /health/ready as its upstream goes and returns",
  [command("unbound")],
  async (t) => {
    const upstream = await startUnbound();
    let second: Awaited<ReturnType<typeof startUnbound>> | undefined;
    let replacement: Awaited<ReturnType<typeof startUnbound>> | undefined;
    try {
      await using proxy = await startDnsProxyProcess(config(upstream.address));
      let n = 0;
      // unique names: each one is a miss, so each one tries the upstream
      /** Polls /health/ready until it answers `status` (sending misses between polls when asked). */
      const readyAnswers = (status: number, nudge?: () => Promise<unknown>) =>
        until(
          async () => {
            const r = await get(`${proxy.http}/health/ready`);
            return r.status === status ? r : undefined;
          },
          `/health/ready to answer ${status}`,
          nudge,
        );
      const missQuery = () =>
        queryUdp(proxy.port, buildQuery({ id: ++n, name: `h${n}.bench`, type: RrType.A }), 1000);

      await t.step("ready with the upstream up, and answering", async () => {
        const ready = await get(`${proxy.http}/health/ready`);
        assert.deepEqual(ready, { status: 200, body: "1 of 1 upstreams up\n" });
        assert.deepEqual(await get(`${proxy.http}/health/live`), { status: 200, body: "live\n" });
        const reply = await queryUdp(proxy.port, buildQuery({ id: 1, name: "a.test", type: 1 }));
        assert.equal(parseMessage(reply!).rcode, Rcode.NOERROR);
        assert.equal((await get(`${proxy.http}/health/other`)).status, 404);
      });

      await t.step("503 naming the upstream once it is gone; still live", async () => {
        await upstream.stop();
        const ready = await readyAnswers(503, missQuery);
        // the UDP loop saw it fail; the TCP loop, which had no query, still trusts it
        assert.match(
          ready.body,
          new RegExp(`^no upstream up: ${upstream.address} down( in \\d of \\d loops)?\n$`),
        );
        assert.equal((await get(`${proxy.http}/health/live`)).status, 200);
        const metrics = (await get(`${proxy.http}/metrics`)).body;
        // summed over the loops: 2 would be "up in the UDP and the TCP loop"
        const value = new RegExp(
          `^dns_upstream_healthy\\{upstream="${upstream.address}"\\} (\\d+)$`,
          "m",
        )
          .exec(metrics)?.[1];
        assert.ok(value === "0" || value === "1", metrics);
      });

      await t.step("ready again when it comes back on its port (health probes)", async () => {
        replacement = await startUnbound({ port: upstream.port });
        const ready = await readyAnswers(200);
        assert.equal(ready.body, "1 of 1 upstreams up\n");
      });

      await t.step(
        "a ConfigMap update (..data swap) moves readiness to the new upstream",
        async () => {
          second = await startUnbound();
          await proxy.update(config(second.address));
          await until(async () => {
            const metrics = (await get(`${proxy.http}/metrics`)).body;
            return metrics.includes(`dns_upstream_healthy{upstream="${second!.address}"}`)
              ? true
              : undefined;
          }, "the reloaded upstream in /metrics");
          await second.stop();
          const ready = await readyAnswers(503, missQuery);
          assert.match(ready.body, new RegExp(`^no upstream up: ${second.address} down`));
        },
      );

      await t.step("SIGTERM: exits 0", async () => {
        const status = await proxy.stop();
        assert.equal(status.code, 0, proxy.log());
      });
    } finally {
      await upstream.stop();
      await replacement?.stop();
      await second?.stop();
    }
  },
);
