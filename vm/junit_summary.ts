/**
 * Counting a JUnit report.
 *
 * @module
 */

/** Test counts of a JUnit report. */
export interface JunitSummary {
  /** Cases without failure or skip. */
  passed: number;
  /** Cases with `<failure>` or `<error>`. */
  failed: number;
  /** Cases with `<skipped>` (ignored tests). */
  skipped: number;
  /** Names of failed test cases. */
  failures: string[];
}

function unescape(text: string): string {
  return text.replace(/&quot;/g, '"').replace(/&apos;/g, "'").replace(/&lt;/g, "<")
    .replace(/&gt;/g, ">").replace(/&amp;/g, "&");
}

/**
 * Counts the test cases of a JUnit report (as `deno test --junit-path` writes it): a case with
 * `<failure>` or `<error>` failed, one with `<skipped>` was skipped, any other passed.
 *
 * @param xml The report.
 * @returns The counts and the names of failed cases.
 *
 * @example
 * ```ts
 * import { summarizeJunit } from "@triad/vm";
 * import assert from "node:assert/strict";
 *
 * const xml = `<testsuites><testsuite name="a">
 *   <testcase name="ok"/><testcase name="bad"><failure message="x"/></testcase>
 * </testsuite></testsuites>`;
 * assert.deepEqual(summarizeJunit(xml), { passed: 1, failed: 1, skipped: 0, failures: ["bad"] });
 * ```
 */
export function summarizeJunit(xml: string): JunitSummary {
  const summary: JunitSummary = { passed: 0, failed: 0, skipped: 0, failures: [] };
  for (const match of xml.matchAll(/<testcase\b([^>]*?)(\/>|>([\s\S]*?)<\/testcase>)/g)) {
    const attributes = match[1] ?? "";
    const body = match[3] ?? "";
    if (/<failure\b/.test(body) || /<error\b/.test(body)) {
      summary.failed++;
      summary.failures.push(unescape(/\bname="([^"]*)"/.exec(attributes)?.[1] ?? "?"));
    } else if (/<skipped\b/.test(body)) summary.skipped++;
    else summary.passed++;
  }
  return summary;
}
