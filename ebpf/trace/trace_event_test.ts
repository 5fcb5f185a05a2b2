import assert from "node:assert/strict";
import { lostEvent } from "./trace_event.ts";

Deno.test("lostEvent() carries only type, time and count", () => {
  assert.deepEqual(Object.keys(lostEvent(3)), ["type", "time", "count"]);
});
