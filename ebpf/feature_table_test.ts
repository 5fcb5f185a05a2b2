/**
 * Keeps the feature table of `ebpf/README.md` true: every row marked ✅ names at least one test,
 * and every test it names exists (a string literal registered with `testWith`, `Deno.test` or
 * `t.step` in that file).
 *
 * @module
 */
import assert from "node:assert/strict";

const root = new URL("../", import.meta.url);
const readme = Deno.readTextFileSync(new URL("ebpf/README.md", root));

interface Row {
  line: number;
  feature: string;
  mark: string;
  tests: { path: string; name: string }[];
}

/** Reads the table under the "Features" heading. */
function featureRows(markdown: string): Row[] {
  const lines = markdown.split("\n");
  const start = lines.findIndex((line) => line.startsWith("## Features"));
  assert.ok(start >= 0, "ebpf/README.md has no ## Features section");
  const rows: Row[] = [];
  let header: string[] | undefined;
  for (let i = start + 1; i < lines.length && !lines[i]!.startsWith("## "); i++) {
    const line = lines[i]!;
    if (!line.startsWith("|")) continue;
    const cells = line.slice(1, -1).split(" | ").map((cell) => cell.trim());
    if (header === undefined) {
      header = cells.map((cell) => cell.replace(/^\| ?/, ""));
      continue;
    }
    if (/^-+$/.test(cells[0]!)) continue;
    const column = (name: string) => cells[header!.indexOf(name)] ?? "";
    const tests = [...column("tests").matchAll(/`([^`]+)`: "([^"]+)"/g)].map((m) => ({
      path: m[1]!,
      name: m[2]!,
    }));
    rows.push({ line: i + 1, feature: column("feature"), mark: column("@triad/ebpf"), tests });
  }
  return rows;
}

/** Whether `file` registers a test or step named `name`. */
function registers(source: string, name: string): boolean {
  const literal = JSON.stringify(name);
  for (let at = source.indexOf(literal); at >= 0; at = source.indexOf(literal, at + 1)) {
    const before = source.slice(Math.max(0, at - 120), at);
    if (/(testWith\(|Deno\.test\(|t\.step\(|name:)\s*$/.test(before)) return true;
  }
  return false;
}

Deno.test("ebpf/README.md feature table: every supported row names tests that exist", async (t) => {
  const rows = featureRows(readme);
  await t.step("the table has rows, each with a known mark", () => {
    assert.ok(rows.length >= 20, `${rows.length} rows`);
    for (const row of rows) {
      assert.ok(
        ["✅", "⚠️", "❌"].includes(row.mark),
        `ebpf/README.md:${row.line}: ${row.feature}: mark "${row.mark}" is not ✅, ⚠️ or ❌`,
      );
    }
  });
  await t.step("every ✅ row names a test, and each one exists", () => {
    for (const row of rows.filter((r) => r.mark === "✅")) {
      assert.ok(row.tests.length > 0, `ebpf/README.md:${row.line}: ${row.feature}: no test named`);
      for (const test of row.tests) {
        let source: string;
        try {
          source = Deno.readTextFileSync(new URL(test.path, root));
        } catch {
          assert.fail(`ebpf/README.md:${row.line}: ${row.feature}: no file ${test.path}`);
        }
        assert.ok(
          registers(source, test.name),
          `ebpf/README.md:${row.line}: ${row.feature}: ${test.path} has no test "${test.name}"`,
        );
      }
    }
  });
  await t.step("the checker itself tells a registered test from a mere string", () => {
    assert.equal(registers('testWith(\n  "a b",', "a b"), true);
    assert.equal(registers('await t.step("a b", () => {});', "a b"), true);
    assert.equal(registers('const x = "a b";', "a b"), false);
  });
});
