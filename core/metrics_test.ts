import assert from "node:assert/strict";
import { formatPrometheus, Metrics } from "./metrics.ts";

Deno.test("Metrics.expose() writes Prometheus text for every kind", () => {
  const metrics = new Metrics();
  const queries = metrics.counter({
    name: "dns_queries_total",
    help: "Queries by type.",
    labels: ["type"],
  });
  queries.inc({ type: "A" });
  queries.inc({ type: "A" }, 2);
  const bump = queries.bind({ type: "AAAA" });
  bump();
  const size = metrics.gauge({ name: "cache_entries", help: "Entries." });
  metrics.onCollect(() => size.set(42));
  const latency = metrics.histogram({
    name: "latency_seconds",
    help: "Latency.",
    buckets: [0.01, 0.1],
  });
  latency.observe(0.005);
  latency.observe(0.05);
  latency.observe(3);
  assert.equal(
    metrics.expose(),
    [
      "# HELP dns_queries_total Queries by type.",
      "# TYPE dns_queries_total counter",
      'dns_queries_total{type="A"} 3',
      'dns_queries_total{type="AAAA"} 1',
      "# HELP cache_entries Entries.",
      "# TYPE cache_entries gauge",
      "cache_entries 42",
      "# HELP latency_seconds Latency.",
      "# TYPE latency_seconds histogram",
      'latency_seconds_bucket{le="0.01"} 1',
      'latency_seconds_bucket{le="0.1"} 2',
      'latency_seconds_bucket{le="+Inf"} 3',
      "latency_seconds_sum 3.055",
      "latency_seconds_count 3",
      "",
    ].join("\n"),
  );
});

Deno.test("Metrics escapes label values and help text", () => {
  const metrics = new Metrics();
  metrics.counter({ name: "x_total", help: "a\\b\nc", labels: ["v"] }).inc({ v: 'q"\\\n' });
  assert.equal(
    metrics.expose(),
    '# HELP x_total a\\\\b\\nc\n# TYPE x_total counter\nx_total{v="q\\"\\\\\\n"} 1\n',
  );
});

Deno.test("Metrics rejects bad names, labels and uses", () => {
  const metrics = new Metrics();
  assert.throws(() => metrics.counter({ name: "9bad", help: "" }), /Invalid metric name "9bad"/);
  assert.throws(
    () => metrics.counter({ name: "ok", help: "", labels: ["__x"] }),
    /Invalid label name "__x"/,
  );
  const c = metrics.counter({ name: "c_total", help: "", labels: ["a"] });
  assert.throws(() => metrics.counter({ name: "c_total", help: "" }), /already registered/);
  assert.throws(() => c.inc(), /needs labels a/);
  assert.throws(() => c.inc({ b: "1" }), /missing label "a"/);
  assert.throws(() => c.inc({ a: "1" }, -1), /cannot go down/);
  assert.throws(
    () => metrics.histogram({ name: "h", help: "", buckets: [1, 1] }),
    /strictly ascending/,
  );
});

Deno.test("formatPrometheus() merges snapshots from several registries", () => {
  const registries = [new Metrics(), new Metrics()];
  registries.forEach((m, i) => {
    m.counter({ name: "q_total", help: "Q.", labels: ["loop"] }).inc({ loop: "all" }, i + 1);
    m.histogram({ name: "h", help: "H.", buckets: [1] }).observe(i);
  });
  const text = formatPrometheus(registries.flatMap((m) => m.snapshot()));
  assert.match(text, /^q_total\{loop="all"\} 3$/m);
  assert.match(text, /^h_bucket\{le="1"\} 2$/m);
  assert.match(text, /^h_count 2$/m);
  assert.match(text, /^h_sum 1$/m);
});

Deno.test("Metric.remove() drops one labelled series from the exposition", () => {
  const metrics = new Metrics();
  const up = metrics.gauge({ name: "up_now", help: "Up.", labels: ["target"] });
  up.set(1, { target: "a" });
  up.set(1, { target: "b" });
  assert.equal(up.remove({ target: "a" }), true);
  assert.equal(up.remove({ target: "a" }), false);
  assert.doesNotMatch(metrics.expose(), /target="a"/);
  assert.match(metrics.expose(), /^up_now\{target="b"\} 1$/m);
});
