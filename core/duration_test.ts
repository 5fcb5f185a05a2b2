import assert from "node:assert/strict";
import { formatDuration, parseDuration } from "./duration.ts";
import { TriadError } from "./error.ts";

Deno.test("parseDuration() reads Go-style durations", () => {
  assert.equal(parseDuration("300ms"), 300);
  assert.equal(parseDuration("5s"), 5000);
  assert.equal(parseDuration("1m30s"), 90_000);
  assert.equal(parseDuration("1.5h"), 5_400_000);
  assert.equal(parseDuration("250us"), 0.25);
  assert.equal(parseDuration("1ns"), 1e-6);
  assert.equal(parseDuration("0"), 0);
  assert.equal(parseDuration(" 2d "), 172_800_000);
});

Deno.test("parseDuration() rejects bad input naming it", () => {
  for (
    const [input, pattern] of [
      ["5", /a unit is missing/],
      ["", /expected a number with a unit/],
      ["5 s", /unexpected "5 s" at offset 0/],
      ["-5s", /unexpected "-5s" at offset 0/],
      ["1m30", /unexpected "30" at offset 2/],
      ["3weeks", /unexpected "3weeks"/],
    ] as const
  ) {
    assert.throws(() => parseDuration(input), (error: unknown) => {
      assert.ok(error instanceof TriadError);
      assert.equal(error.code, "bad_duration");
      assert.match(error.message, pattern);
      return true;
    });
  }
});

Deno.test("formatDuration() writes the shortest exact form and round-trips", () => {
  assert.equal(formatDuration(0), "0s");
  assert.equal(formatDuration(90_000), "1m30s");
  assert.equal(formatDuration(3_600_000 + 1), "1h1ms");
  assert.equal(formatDuration(0.000_5), "500ns");
  for (const ms of [1, 999, 61_001, 86_400_000]) {
    assert.equal(parseDuration(formatDuration(ms)), ms);
  }
  assert.throws(() => formatDuration(-1), /non-negative/);
});
