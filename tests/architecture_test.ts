/**
 * Keeps `ARCHITECTURE.md` true to the tree: every path it names in backquotes exists, and it names
 * every top-level folder and every package's public files (`mod.ts` and the programs its
 * `deno.json` exports), and every public module names its exports (no `export *`).
 *
 * @module
 */
import assert from "node:assert/strict";
import { exists } from "./support.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const DOC = "ARCHITECTURE.md";

/** A backquoted token that reads as a repository path: has a slash, or is a root file. */
const PATH =
  /^(?:\.?[\w-]+\/)*(?:[\w.-]+\.(?:ts|md|json|c|sh|yaml|txt|tsv|lock)|[\w.-]+\/|\.ci\/\w+)$/;

/** The paths a document names in backquotes, with the line they are on. */
function namedPaths(text: string): { path: string; line: number }[] {
  const found: { path: string; line: number }[] = [];
  text.split("\n").forEach((content, index) => {
    for (const match of content.matchAll(/`([^`\s]+)`/g)) {
      const token = match[1]!;
      if (PATH.test(token) && (token.includes("/") || /^[\w.-]+\.(md|json|ts|lock)$/.test(token))) {
        found.push({ path: token, line: index + 1 });
      }
    }
  });
  return found;
}

/** What must be named: top-level folders, each package's mod.ts and exported programs. */
function requiredPaths(root: string): { path: string; why: string }[] {
  const required: { path: string; why: string }[] = [];
  for (const entry of Deno.readDirSync(root)) {
    if (!entry.isDirectory || entry.name === ".git" || entry.name === "node_modules") continue;
    required.push({ path: `${entry.name}/`, why: "a top-level folder" });
  }
  const config = JSON.parse(Deno.readTextFileSync(`${root}deno.json`)) as {
    workspace: string[];
  };
  for (const member of [".", ...config.workspace]) {
    const dir = member === "." ? "" : `${member.replace(/^\.\//, "").replace(/\/$/, "")}/`;
    const json = JSON.parse(Deno.readTextFileSync(`${root}${dir}deno.json`)) as {
      name: string;
      exports: string | Record<string, string>;
    };
    const exports = typeof json.exports === "string" ? { ".": json.exports } : json.exports;
    for (const [subpath, file] of Object.entries(exports)) {
      const path = `${dir}${file.replace(/^\.\//, "")}`;
      required.push({
        path,
        why: subpath === "."
          ? `${json.name}'s public module`
          : `${json.name}/${subpath.slice(2)}'s entry point`,
      });
    }
  }
  return required.sort((a, b) => a.path.localeCompare(b.path));
}

/** Every way the document and the tree disagree, each naming what is missing and where. */
function problems(root: string, doc: string, text: string): string[] {
  const out: string[] = [];
  const named = namedPaths(text);
  for (const { path, line } of named) {
    if (!exists(`${root}${path}`)) {
      out.push(`${doc}:${line}: names \`${path}\`, which does not exist`);
    }
  }
  const names = new Set(named.map((n) => n.path));
  for (const { path, why } of requiredPaths(root)) {
    if (!names.has(path)) out.push(`${doc}: does not name \`${path}\` (${why})`);
  }
  return out;
}

Deno.test("ARCHITECTURE.md names only paths that exist, and every folder and public file", () => {
  const text = Deno.readTextFileSync(`${ROOT}${DOC}`);
  assert.deepEqual(problems(ROOT, DOC, text), []);
});

/** The `export *` lines of every package's public module (each should name what it exports). */
function exportStars(root: string): string[] {
  const out: string[] = [];
  for (const { path, why } of requiredPaths(root)) {
    if (!why.endsWith("public module")) continue;
    Deno.readTextFileSync(`${root}${path}`).split("\n").forEach((line, index) => {
      if (/^export \*/.test(line)) out.push(`${path}:${index + 1}: ${line}`);
    });
  }
  return out;
}

Deno.test("every package's public module names its exports (no export *)", () => {
  assert.deepEqual(exportStars(ROOT), []);
});

Deno.test("the top README links ARCHITECTURE.md", () => {
  assert.match(Deno.readTextFileSync(`${ROOT}README.md`), /\]\(ARCHITECTURE\.md\)/);
});

Deno.test("the architecture check says exactly what is missing and where", () => {
  const root = Deno.makeTempDirSync({ prefix: "triad-arch-" });
  try {
    Deno.mkdirSync(`${root}/pkg/cli`, { recursive: true });
    Deno.mkdirSync(`${root}/docs`);
    Deno.writeTextFileSync(
      `${root}/deno.json`,
      JSON.stringify({ name: "@x/core", exports: "./mod.ts", workspace: ["./pkg"] }),
    );
    Deno.writeTextFileSync(`${root}/mod.ts`, "");
    Deno.writeTextFileSync(
      `${root}/pkg/deno.json`,
      JSON.stringify({ name: "@x/pkg", exports: { ".": "./mod.ts", "./cli": "./cli/main.ts" } }),
    );
    Deno.writeTextFileSync(`${root}/pkg/cli/main.ts`, "");
    const text = "- `mod.ts` and `pkg/` with `pkg/mod.ts`\n- `pkg/gone.ts` is `not a path`\n";
    Deno.writeTextFileSync(
      `${root}/pkg/mod.ts`,
      'export { a } from "./a.ts";\nexport * from "./b.ts";\n',
    );
    assert.deepEqual(exportStars(`${root}/`), ['pkg/mod.ts:2: export * from "./b.ts";']);
    assert.deepEqual(problems(`${root}/`, "A.md", text), [
      "A.md:2: names `pkg/gone.ts`, which does not exist",
      "A.md: does not name `docs/` (a top-level folder)",
      "A.md: does not name `pkg/cli/main.ts` (@x/pkg/cli's entry point)",
    ]);
  } finally {
    Deno.removeSync(root, { recursive: true });
  }
});
