/**
 * A real Prometheus scrapes a running `deno task dns` and a running `deno task trace`, loads
 * their alert rules, and answers every query of their Grafana dashboards (read out of the
 * dashboard JSON) with data; every metric the alerts use has data too.
 *
 * @module
 */
import assert from "node:assert/strict";
import { parse as parseYaml } from "yaml";
import { buildQuery, RrType } from "@triad/dnsproxy";
import { bpfCapabilities, btf, command, libbpf, root, testWith, tracefs } from "./requirements.ts";
import { startUnbound } from "./servers/unbound.ts";
import { startDnsProxyProcess } from "./servers/dnsproxy_process.ts";
import { startTraceProcess } from "./servers/trace_process.ts";
import { freePort } from "./servers/free_port.ts";
import { type PrometheusServer, startPrometheus } from "./servers/prometheus.ts";
import { queryUdp } from "./dnsproxy_client.ts";

const repository = new URL("../", import.meta.url).pathname;

interface Panel {
  title: string;
  targets?: { expr: string }[];
  panels?: Panel[];
}

/** Every query of a Grafana dashboard, in panel order (rows' panels included). */
async function dashboardQueries(path: string): Promise<string[]> {
  const dashboard = JSON.parse(await Deno.readTextFile(`${repository}${path}`));
  const walk = (panels: Panel[]): string[] =>
    panels.flatMap((panel) => [
      ...(panel.targets ?? []).map((target) => target.expr),
      ...walk(panel.panels ?? []),
    ]);
  return walk(dashboard.panels);
}

/** Every alert or recording rule expression of a rule file. */
async function ruleExpressions(path: string): Promise<string[]> {
  const file = parseYaml(await Deno.readTextFile(`${repository}${path}`));
  return file.groups.flatMap((group: { rules: { expr: string }[] }) =>
    group.rules.map((rule) => rule.expr)
  );
}

/** The application's metric names a PromQL expression uses. */
function metricNames(expr: string): string[] {
  return [...new Set(expr.match(/\b(?:dns|trace)_[a-z0-9_]+\b/g) ?? [])];
}

async function checkApplication(
  t: Deno.TestContext,
  prometheus: PrometheusServer,
  dashboard: string,
  rules: string,
): Promise<void> {
  const queries = await dashboardQueries(dashboard);
  await t.step(`every query of ${dashboard} returns data`, async () => {
    assert.ok(queries.length > 0);
    const empty: string[] = [];
    for (const query of queries) {
      if ((await prometheus.query(query)).length === 0) empty.push(query);
    }
    assert.deepEqual(empty, [], "dashboard queries without data");
  });
  const used = [...new Set((await ruleExpressions(rules)).flatMap(metricNames))];
  await t.step(`every metric ${rules} uses has data`, async () => {
    assert.ok(used.length > 0);
    const empty: string[] = [];
    for (const metric of used) {
      if ((await prometheus.query(`group(${metric})`)).length === 0) empty.push(metric);
    }
    assert.deepEqual(empty, [], "metrics without data");
  });
  await t.step(`Prometheus loads and evaluates every rule of ${rules}`, async () => {
    const deadline = performance.now() + 15_000;
    for (;;) {
      const loaded = await prometheus.rules();
      const evaluated = loaded.filter((rule) => rule.health !== "unknown");
      if (loaded.length > 0 && evaluated.length === loaded.length) {
        assert.deepEqual(
          loaded.filter((rule) => rule.health !== "ok").map((r) => `${r.query}: ${r.lastError}`),
          [],
        );
        return;
      }
      assert.ok(performance.now() < deadline, `rules not evaluated: ${JSON.stringify(loaded)}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  });
}

testWith(
  "a real Prometheus scraping deno task dns has data for its dashboard and alerts",
  [command("prometheus"), command("unbound")],
  async (t) => {
    await using upstream = await startUnbound();
    const nothing = `127.0.0.1:${await freePort()}`; // no server: its tries fail
    await using proxy = await startDnsProxyProcess(
      `upstream:\n  servers: ["${upstream.address}", "${nothing}"]\n  policy: round_robin\n` +
        `  timeout: 500ms\n  attempts: 2\n` +
        // a defence rule no test client comes near: its block gauge is exported (at 0); the
        // kernel drop counters are exported at 0 without --xdp (tests/dnsproxy_defence_test.ts
        // runs the kernel filter itself)
        `defence:\n  rules: [{ name: qps, measure: queries, rate: 100000 }]\n`,
    );
    // a miss and a hit, then misses spread over both upstreams: each labelled series appears
    for (const name of ["a.test", "a.test", "p1.bench", "p2.bench", "p3.bench", "p4.bench"]) {
      await queryUdp(proxy.port, buildQuery({ id: 1, name, type: RrType.A }), 2000);
    }
    await using prometheus = await startPrometheus(
      { dnsproxy: [proxy.httpAddress] },
      [`${repository}dnsproxy/monitoring/alerts.yaml`],
    );
    // rate() needs two samples in its range
    await prometheus.waitForScrapes("dnsproxy", 3);
    await checkApplication(
      t,
      prometheus,
      "dnsproxy/monitoring/dashboard.json",
      "dnsproxy/monitoring/alerts.yaml",
    );
  },
);

testWith(
  "a real Prometheus scraping deno task trace has data for its dashboard and alerts",
  [command("prometheus"), root, bpfCapabilities, btf, tracefs, libbpf],
  async (t) => {
    await using tracer = await startTraceProcess();
    await using prometheus = await startPrometheus(
      { "tcp-trace": [tracer.httpAddress] },
      [`${repository}ebpf/trace/monitoring/alerts.yaml`],
    );
    await prometheus.waitForScrapes("tcp-trace", 3);
    await checkApplication(
      t,
      prometheus,
      "ebpf/trace/monitoring/dashboard.json",
      "ebpf/trace/monitoring/alerts.yaml",
    );
  },
);
