import assert from "node:assert/strict";
import { summarizeJunit } from "./junit_summary.ts";

Deno.test("summarizeJunit() counts a report as deno test writes it", () => {
  const xml = `<?xml version="1.0" encoding="UTF-8"?>
<testsuites name="deno test" tests="5" failures="1" errors="0" time="0.5">
  <testsuite name="./tests/a_test.ts" tests="5" disabled="1" errors="0" failures="1">
    <testcase name="maps work" classname="./tests/a_test.ts" time="0.1"></testcase>
    <testcase name="fentry &quot;attaches&quot;" classname="./tests/a_test.ts" time="0.1">
      <failure message="boom">AssertionError: boom</failure>
    </testcase>
    <testcase name="kprobes" classname="./tests/a_test.ts" time="0"><skipped/></testcase>
    <testcase name="outer" classname="./tests/a_test.ts" time="0.2"/>
    <testcase name="outer &gt; step" classname="./tests/a_test.ts" time="0.1"></testcase>
  </testsuite>
</testsuites>`;
  assert.deepEqual(summarizeJunit(xml), {
    passed: 3,
    failed: 1,
    skipped: 1,
    failures: ['fentry "attaches"'],
  });
});

Deno.test("summarizeJunit() returns zeros for an empty or missing report", () => {
  assert.deepEqual(summarizeJunit(""), { passed: 0, failed: 0, skipped: 0, failures: [] });
});
