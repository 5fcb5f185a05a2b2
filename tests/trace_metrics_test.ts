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

testWith(
  "deno task trace fails /health/live while its stdout is not read",
  [root, bpfCapabilities, btf, tracefs, libbpf],
  async () => {
    // a log collector that stopped reading: the pipe fills and the tracer's writes block
    await using tracer = await startTraceProcess([], true);
    const live = () =>
      fetch(`${tracer.http}/health/live`, { signal: AbortSignal.timeout(1000) }).then(
        async (response) => {
          await response.body?.cancel();
          return response.status;
        },
        (error) => error.name,
      );
    assert.equal(await live(), 200);
    using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    // each connection is 3 JSON lines of about 300 bytes: the 64 KiB pipe fills in ~70; bounded
    let status: number | string = 200;
    for (let round = 0; round < 20 && status === 200; round++) {
      for (let i = 0; i < 100; i++) {
        const client = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
        const server = await listener.accept();
        client.close();
        server.close();
      }
      status = await live();
    }
    assert.equal(status, "TimeoutError", "a blocked tracer is not live");
    // reading again unblocks it: it answers and stops cleanly
    const draining = tracer.stdout!.pipeTo(new WritableStream());
    for (let round = 0; round < 10 && status !== 200; round++) status = await live();
    assert.equal(status, 200);
    const exit = await tracer.stop();
    await draining;
    assert.equal(exit.code, 0, tracer.log());
  },
);
