/**
 * Many concurrent connections: 15,000 on each FFI backend (from a C load tool in 3 processes and
 * 3 loopback source addresses' worth of ports each: one address would run out), 10,000 on
 * portable; all are open at once, all echo, all close, and no descriptor is left.
 */
import assert from "node:assert/strict";
import { cCompiler, fullSpeed, ioUring, linux, testWith } from "./requirements.ts";
import { eventually, openFds, startFixture, total } from "./netloop_support.ts";
import { buildLoadTool, LoadFleet } from "../netloop/bench/conns_load.ts";

const COUNT = 10_000;
const FFI_COUNT = 15_000;

for (const backend of ["epoll", "uring"] as const) {
  const needs = backend === "epoll"
    ? [linux, cCompiler, fullSpeed]
    : [linux, ioUring, cCompiler, fullSpeed];
  testWith(`serve() on ${backend} holds ${FFI_COUNT} concurrent connections`, needs, async () => {
    const dir = await Deno.makeTempDir();
    try {
      const tool = await buildLoadTool(dir);
      await using fixture = await startFixture(backend, { mode: "echo" }, { loops: 2 });
      const before = openFds();
      {
        await using fleet = LoadFleet.start(tool, fixture.port, FFI_COUNT, { processes: 3 });
        const opened = await fleet.opened();
        assert.deepEqual({ held: opened.held, failed: opened.failed }, {
          held: FFI_COUNT,
          failed: 0,
        });
        assert.equal(total(await fixture.stats(), "open"), FFI_COUNT);
        const pinged = await fleet.ping();
        assert.deepEqual({ echoed: pinged.echoed, bad: pinged.bad }, { echoed: FFI_COUNT, bad: 0 });
        const stats = await fleet.stats();
        assert.deepEqual({ lost: stats.lost, bad: stats.bad }, { lost: 0, bad: 0 });
        await fleet.close();
      }
      assert.ok(
        await eventually(async () => total(await fixture.stats(), "open") === 0, 15_000),
        "connections still open after the clients closed them",
      );
      assert.equal(total(await fixture.stats(), "closes"), FFI_COUNT);
      assert.deepEqual([...openFds()].sort(), [...before].sort(), "descriptors left open");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
}

for (const backend of ["portable"] as const) {
  const needs = [linux, fullSpeed];
  testWith(`serve() on ${backend} holds ${COUNT} concurrent connections`, needs, async () => {
    await using fixture = await startFixture(backend, { mode: "echo" }, { loops: 2 });
    const client = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--allow-net",
        new URL("./netloop_many_clients.ts", import.meta.url).pathname,
        String(fixture.port),
        String(COUNT),
      ],
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    try {
      const lines = client.stdout.pipeThrough(new TextDecoderStream()).getReader();
      const first = await lines.read();
      assert.equal(first.value?.trim(), `open ${COUNT}`);
      const stats = await fixture.stats();
      assert.equal(total(stats, "open"), COUNT, JSON.stringify(stats));
      const writer = client.stdin.getWriter();
      await writer.write(new TextEncoder().encode("go\n"));
      await writer.close();
      assert.ok(
        await eventually(async () => total(await fixture.stats(), "open") === 0, 15_000),
        "connections still open after the client closed them",
      );
      assert.equal(total(await fixture.stats(), "closes"), COUNT);
      await lines.cancel();
    } finally {
      try {
        client.kill();
      } catch { /* exited */ }
      await client.status;
    }
  });
}
