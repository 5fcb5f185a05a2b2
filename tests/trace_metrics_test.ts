import assert from "node:assert/strict";
import { bpfCapabilities, btf, libbpf, root, testWith, tracefs } from "./requirements.ts";
import { startTraceProcess } from "./servers/trace_process.ts";

/** The value of one sample line in Prometheus text, or 0. */
function sample(text: string, series: string): number {
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  return line === undefined ? 0 : Number(line.slice(series.length + 1));
}

testWith(
  "deno task trace --metrics serves /health/live and counts events in /metrics",
  [root, bpfCapabilities, btf, tracefs, libbpf],
  async (t) => {
    await using tracer = await startTraceProcess();
    await t.step("live once attached; other paths 404", async () => {
      const live = await fetch(`${tracer.http}/health/live`);
      assert.deepEqual([live.status, await live.text()], [200, "live\n"]);
      const other = await fetch(`${tracer.http}/health/ready`);
      await other.body?.cancel();
      assert.equal(other.status, 404);
    });
    await t.step("a loopback connection shows in trace_events_total", async () => {
      using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      const deadline = performance.now() + 10_000;
      let text = "";
      // each round opens and closes one connection; the first may race the attach: bounded
      while (sample(text, 'trace_events_total{type="connect"}') < 1) {
        assert.ok(performance.now() < deadline, `no connect counted: ${text}`);
        const client = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
        const server = await listener.accept();
        client.close();
        server.close();
        text = await (await fetch(`${tracer.http}/metrics`)).text();
      }
      assert.match(text, /^trace_lost_events_total \d+$/m);
      assert.match(text, /^trace_undecodable_records_total 0$/m);
    });
    await t.step("SIGTERM: exits 0", async () => {
      const status = await tracer.stop();
      assert.equal(status.code, 0, tracer.log());
    });
  },
);
