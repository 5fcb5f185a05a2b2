import assert from "node:assert/strict";
import { CLOSE, CONNECT } from "./_test_events.ts";
import { JsonFormatter } from "./json_formatter.ts";

const connect = CONNECT;
const close = CLOSE;

Deno.test("JsonFormatter.format() prints one JSON line per event", async (t) => {
  await t.step("every event", () => {
    const json = new JsonFormatter();
    assert.deepEqual(json.header(), []);
    assert.deepEqual(json.format(close).map((l) => JSON.parse(l)), [close]);
  });
  await t.step("only closes (and lost) with a type list", () => {
    const json = new JsonFormatter(["close"]);
    assert.deepEqual(json.format(connect), []);
    assert.equal(json.format(close).length, 1);
    assert.equal(json.format({ type: "lost", time: connect.time, count: 2 }).length, 1);
  });
});
