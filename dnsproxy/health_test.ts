import assert from "node:assert/strict";
import { DnsMetrics } from "./metrics.ts";
import { readinessOf } from "./health.ts";

Deno.test("readinessOf() reads dns_upstream_healthy as the proxy exposes it", async (t) => {
  await t.step("no upstream configured: not ready, saying why", () => {
    assert.deepEqual(readinessOf(new DnsMetrics().registry.expose()), {
      ready: false,
      reason: "no upstreams configured: every miss is answered SERVFAIL",
    });
  });
  await t.step("one up of two, in every loop", () => {
    const metrics = new DnsMetrics();
    metrics.upstreamHealthy.set(2, { upstream: "tls://9.9.9.9" });
    metrics.upstreamHealthy.set(0, { upstream: "10.0.0.2:53" });
    assert.deepEqual(readinessOf(metrics.registry.expose(), 2), {
      ready: true,
      reason: "1 of 2 upstreams up",
    });
  });
  await t.step("a label value with a quote is unescaped in the reason", () => {
    const metrics = new DnsMetrics();
    metrics.upstreamHealthy.set(0, { upstream: 'odd"name' });
    assert.equal(readinessOf(metrics.registry.expose()).reason, 'no upstream up: odd"name down');
  });
});
