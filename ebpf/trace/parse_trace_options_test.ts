import assert from "node:assert/strict";
import { parseTraceOptions, TraceUsageError } from "./parse_trace_options.ts";

Deno.test("parseTraceOptions() parses every option", async (t) => {
  await t.step("defaults", () => {
    assert.deepEqual(parseTraceOptions([]), {
      json: false,
      states: false,
      snapshot: false,
      summary: false,
      help: false,
    });
  });
  await t.step("all filters and limits", () => {
    const options = parseTraceOptions([
      "--json",
      "--pid",
      "1234",
      "--comm",
      "nginx",
      "--port=8080",
      "--family",
      "4",
      "--states",
      "--duration",
      "2.5",
      "--max-events",
      "10",
    ]);
    assert.deepEqual(options, {
      json: true,
      states: true,
      snapshot: false,
      summary: false,
      help: false,
      pid: 1234,
      comm: "nginx",
      port: 8080,
      family: 4,
      durationSeconds: 2.5,
      maxEvents: 10,
    });
  });
  await t.step("--summary, --interval and --help", () => {
    assert.equal(parseTraceOptions(["--summary"]).summary, true);
    assert.equal(parseTraceOptions(["--interval", "1"]).intervalSeconds, 1);
    assert.equal(parseTraceOptions(["-h"]).help, true);
    assert.equal(parseTraceOptions(["--ring-size", "65536"]).ringBytes, 65536);
    assert.equal(parseTraceOptions(["--accept-hook", "fexit"]).acceptHook, "fexit");
    assert.equal(parseTraceOptions(["--metrics", "0.0.0.0:9464"]).metrics, "0.0.0.0:9464");
    assert.equal(parseTraceOptions(["--metrics", "[::1]:9464"]).metrics, "[::1]:9464");
  });
});

Deno.test("parseTraceOptions() rejects bad input naming the option", async (t) => {
  const cases: [string[], RegExp][] = [
    [["--bogus"], /Unknown option '--bogus'.*see --help/],
    [["--port", "0"], /--port: expected an integer from 1 to 65535, got "0"/],
    [["--port", "65536"], /--port: expected an integer from 1 to 65535/],
    [["--pid", "-3"], /--pid/],
    [["--family", "5"], /--family: expected 4 or 6, got "5"/],
    [["--comm", "a-very-long-command-name"], /--comm: expected 1 to 15 bytes/],
    [["--duration", "soon"], /--duration: expected a positive number of seconds/],
    [["--duration", "0"], /--duration/],
    [["--max-events", "1.5"], /--max-events/],
    [["--ring-size", "5000"], /--ring-size: expected a power of two, got 5000/],
    [["--accept-hook", "kprobe"], /--accept-hook: expected auto, fexit or syscall, got "kprobe"/],
    [["--ring-size", "1024"], /--ring-size: expected an integer from 4096/],
    [["--summary", "--interval", "1"], /cannot be combined/],
    [["--snapshot", "--pid", "1"], /--snapshot cannot be combined with --pid/],
    [["--snapshot", "--summary"], /--snapshot cannot be combined with --summary/],
    [["--states", "--summary"], /--states/],
    [["--json", "--interval", "1"], /--json and --interval/],
    [["stray"], /positional|Unexpected argument/i],
    [["--pid"], /--pid/],
    [["--metrics", "9464"], /--metrics: expected HOST:PORT \(such as 0.0.0.0:9464\), got "9464"/],
    [["--metrics", "a:99999"], /--metrics: expected HOST:PORT/],
  ];
  for (const [args, message] of cases) {
    await t.step(args.join(" "), () => {
      assert.throws(() => parseTraceOptions(args), (error: unknown) => {
        assert.ok(error instanceof TraceUsageError);
        assert.equal(error.code, "bad_option");
        assert.match(error.message, message);
        return true;
      });
    });
  }
});
