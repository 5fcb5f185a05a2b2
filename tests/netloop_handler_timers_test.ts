/**
 * Handler timers in an idle loop: a loop with no events blocks in the kernel for up to a second,
 * bounded by the next `setTimeout`/`setInterval` its handler armed, so those run on time (they
 * ran up to 250 ms late when an idle loop only woke 4 times a second).
 */
import assert from "node:assert/strict";
import { serve } from "@triad/netloop";
import { HandlerTimers } from "../netloop/_timers.ts";
import { ffi, ioUring, linux, testWith } from "./requirements.ts";
import { DELAYS } from "./netloop_timer_handler.ts";
import { AT_MS } from "./netloop_timer_work_handler.ts";

/**
 * How late a timer may run (scheduling on a shared machine; the old bound was 250 ms). Under
 * software emulation (`TRIAD_VM_ACCEL=tcg`, about 12x slower) timers ran 60-112 ms late in the
 * 6.1 guest: the bound there is 200 ms, still under the 250 ms an idle loop blind to its handler's
 * timers could leave them waiting (the host run is the sharp check).
 */
const LATE_MS = Deno.env.get("TRIAD_VM_ACCEL") === "tcg" ? 200 : 60;

Deno.test("HandlerTimers knows the next due timer, intervals included", () => {
  const armed = new Map<number, () => void>();
  let next = 1;
  const scope = {
    setTimeout: (callback: unknown, _ms?: number) => {
      armed.set(next, callback as () => void);
      return next++;
    },
    setInterval: (callback: unknown, _ms?: number) => {
      armed.set(next, callback as () => void);
      return next++;
    },
    clearTimeout: (id?: unknown) => void armed.delete(id as number),
    clearInterval: (id?: unknown) => void armed.delete(id as number),
  };
  const timers = new HandlerTimers();
  timers.install(scope);
  const now = performance.now();
  assert.equal(timers.until(now), Infinity);
  const late = scope.setTimeout(() => {}, 500) as number;
  const soon = scope.setTimeout(() => {}, 100) as number;
  assert.ok(Math.abs(timers.until(now) - 100) < 20);
  scope.clearTimeout(soon);
  // The cleared one is forgotten once its time has passed: the next is the 500 ms one.
  assert.ok(Math.abs(timers.until(now + 150) - 350) < 20);
  armed.get(late)!(); // it runs
  assert.equal(timers.until(now + 600), Infinity);
  const interval = scope.setInterval(() => {}, 200) as number;
  assert.equal(timers.pending, 1);
  armed.get(interval)!(); // each run re-arms it
  assert.ok(timers.until(performance.now()) > 150);
  scope.clearInterval(interval);
  assert.equal(timers.pending, 0);
  // An overdue timer asks for a short wait, not none (the loop would spin until it runs).
  scope.setTimeout(() => {}, 0);
  assert.equal(timers.until(performance.now() + 10), 1);
});

for (const backend of ["epoll", "uring"] as const) {
  const needs = backend === "uring" ? [linux, ffi, ioUring] : [linux, ffi];
  testWith(`${backend}: handler timers run on time in an idle loop`, needs, async () => {
    const reports: { timer: number; late: number }[] = [];
    const engine = await serve(new URL("./netloop_timer_handler.ts", import.meta.url), {
      hostname: "127.0.0.1",
      port: 0,
      backend,
      loops: 1,
      onMessage: (data) => void reports.push(data as { timer: number; late: number }),
    });
    try {
      const until = performance.now() + 10_000;
      while (reports.length < DELAYS.length + 1 && performance.now() < until) {
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      assert.deepEqual(reports.map((r) => r.timer).sort((a, b) => a - b), [0, ...DELAYS]);
      for (const { timer, late } of reports) {
        assert.ok(late < LATE_MS, `the ${timer} ms timer ran ${late.toFixed(1)} ms late`);
      }
    } finally {
      await engine.stop();
    }
  });
}

for (const backend of ["epoll", "uring"] as const) {
  const needs = backend === "uring" ? [linux, ffi, ioUring] : [linux, ffi];
  testWith(
    `${backend}: work a handler timer starts in a long-idle loop is not held`,
    needs,
    async () => {
      let readMs: number | undefined;
      const engine = await serve(new URL("./netloop_timer_work_handler.ts", import.meta.url), {
        hostname: "127.0.0.1",
        port: 0,
        backend,
        loops: 1,
        onMessage: (data) => void (readMs = (data as { readMs: number }).readMs),
      });
      try {
        const until = performance.now() + AT_MS + 10_000;
        while (readMs === undefined && performance.now() < until) {
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
        assert.ok(readMs !== undefined, "the timer's file read never came back");
        // Held for the long idle block it would take up to 1 s; the busy bound is 50 ms.
        assert.ok(readMs < 200, `a file read started by a timer took ${readMs.toFixed(1)} ms`);
      } finally {
        await engine.stop();
      }
    },
  );
}
