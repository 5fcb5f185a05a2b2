/**
 * What an idle connection costs an FFI loop: 5,000 connections that echoed once and then stay
 * quiet grow the server's RSS by little (no outbound buffer is kept per connection), and a loop
 * holding them uses almost no CPU (it stops waking 20 times a second once idle).
 */
import assert from "node:assert/strict";
import { cCompiler, fullSpeed, ioUring, linux, testWith } from "./requirements.ts";
import { buildLoadTool, echoCommand, LoadFleet } from "../netloop/bench/conns_load.ts";
import { cpuNanos } from "../netloop/bench/_util.ts";

const COUNT = 5000;
/** RSS growth per idle connection allowed (bytes); each kept a 4 KiB outbound buffer before. */
const RSS_PER_CONN = 3000;
const IDLE_WINDOW_MS = 10_000;
/** How long after the last event a loop reaches its longest idle block (netloop/_loop.ts). */
const IDLE_SETTLE_MS = 3_500;

function rss(pid: number): number {
  return Number(/^VmRSS:\s+(\d+)/m.exec(Deno.readTextFileSync(`/proc/${pid}/status`))![1]) * 1024;
}

for (const backend of ["epoll", "uring"] as const) {
  const needs = backend === "epoll"
    ? [linux, cCompiler, fullSpeed]
    : [linux, ioUring, cCompiler, fullSpeed];
  testWith(`${backend}: idle connections cost little memory and CPU`, needs, async () => {
    const dir = await Deno.makeTempDir();
    const port = 23000 + Math.floor(Math.random() * 5000);
    const [program, ...args] = echoCommand(backend, port);
    const server = new Deno.Command(program!, {
      args,
      stdout: "piped",
      stderr: "null",
    }).spawn();
    try {
      const tool = await buildLoadTool(dir);
      const lines = server.stdout.pipeThrough(new TextDecoderStream()).getReader();
      assert.match((await lines.read()).value ?? "", /^echo \(tcp\) on/);
      await lines.cancel();
      const before = rss(server.pid);
      await using fleet = LoadFleet.start(tool, port, COUNT, { processes: 2 });
      const opened = await fleet.opened();
      assert.equal(opened.held, COUNT);
      const perConn = (rss(server.pid) - before) / COUNT;
      assert.ok(perConn <= RSS_PER_CONN, `RSS grew ${perConn.toFixed(0)} B per idle connection`);
      // Idle: a loop with no event for 1 s blocks 250 ms at a time, after 3 s a second at a time;
      // the window starts there. CPU is every thread's schedstat run time (ns): 10 ms ticks made
      // 0.1% of one core in 10 s a single tick.
      await new Promise((resolve) => setTimeout(resolve, IDLE_SETTLE_MS));
      const cpu0 = cpuNanos(server.pid).ns;
      const t0 = performance.now();
      await new Promise((resolve) => setTimeout(resolve, IDLE_WINDOW_MS));
      const share = (cpuNanos(server.pid).ns - cpu0) / 1e6 / (performance.now() - t0);
      assert.ok(share <= 0.002, `${(share * 100).toFixed(2)}% of a core while idle`);
      const pinged = await fleet.ping();
      assert.equal(pinged.echoed, COUNT);
    } finally {
      try {
        server.kill("SIGKILL");
      } catch { /* gone */ }
      await server.status;
      await Deno.remove(dir, { recursive: true });
    }
  });
}
