import assert from "node:assert/strict";
import { KernelClock } from "./kernel_clock.ts";

Deno.test("KernelClock.toWallMs() never stamps an event after it was read", () => {
  const clock = new KernelClock(1_000_000); // an estimate 10 ms too late
  assert.equal(clock.toWallMs(5_000_000n, 999_995), 999_995); // tightened: offset now 999_990
  assert.equal(clock.toWallMs(6_000_000n, 2_000_000), 999_996);
});
