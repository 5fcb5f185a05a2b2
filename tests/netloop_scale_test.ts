/**
 * 10,000 concurrent connections on every backend: all echo, all are open at once, all close.
 */
import assert from "node:assert/strict";
import { ioUring, linux, testWith } from "./requirements.ts";
import { BACKENDS, eventually, startFixture, total } from "./netloop_support.ts";

const COUNT = 10_000;

for (const backend of BACKENDS) {
  const needs = backend === "portable" ? [] : backend === "epoll" ? [linux] : [linux, ioUring];
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
