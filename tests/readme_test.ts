/**
 * Keeps the READMEs true to the repository: every `deno task X` they name is a task in deno.json,
 * and every relative link or repository path they name exists, so commands and paths cannot drift
 * away from the code unnoticed.
 *
 * @module
 */
import assert from "node:assert/strict";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));

/** Paths a README may name that exist only after a run; each with what creates it. */
const RUN_TIME_PATHS = new Map<string, string>([
  ["vm/.cache/results/", "written by deno task test:vm"],
]);

/** Folders never searched for READMEs (not part of the repository's own text). */
const SKIPPED_DIRS = new Set([".git", "node_modules", ".vagrant", ".cache"]);

/** What a checker needs to know about the repository. */
interface Repository {
  tasks: ReadonlySet<string>;
  /** Whether a path relative to the repository root exists (a trailing `/` asks for a folder). */
  exists(path: string): boolean;
  /** Names in a folder relative to the repository root (empty when it does not exist). */
  list(dir: string): string[];
  /** The heading anchors of a Markdown file relative to the repository root. */
  anchors(path: string): ReadonlySet<string>;
}

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens. */
function headingAnchor(heading: string): string {
  return heading.trim().toLowerCase().replace(/[^\p{L}\p{N}\s_-]/gu, "").replace(/\s/g, "-");
}

function anchorsOf(markdown: string): Set<string> {
  const anchors = new Set<string>();
  for (const match of withoutFences(markdown).matchAll(/^#{1,6}\s+(.+?)\s*#*\s*$/gm)) {
    anchors.add(headingAnchor(match[1]!));
  }
  return anchors;
}

/** The text with fenced code blocks blanked out (line numbers kept). */
function withoutFences(markdown: string): string {
  return markdown.replace(
    /^(```|~~~)[^\n]*\n[\s\S]*?^\1[^\n]*$/gm,
    (block) => block.replace(/[^\n]/g, ""),
  );
}

function lineOf(text: string, index: number): number {
  return text.slice(0, index).split("\n").length;
}

function globToRegExp(glob: string): RegExp {
  const escaped = glob.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, "[^/]*");
  return new RegExp(`^${escaped}$`);
}

/**
 * Problems in one README (`readme` relative to the repository root), each as
 * `path:line: what`, in order.
 */
function checkReadme(readme: string, text: string, repo: Repository): string[] {
  const problems: string[] = [];
  const dir = dirname(readme);
  const at = (index: number, source = text) => `${readme}:${lineOf(source, index)}`;

  for (const match of text.matchAll(/\bdeno\s+task\s+([A-Za-z0-9][\w:.-]*)/g)) {
    if (!repo.tasks.has(match[1]!)) {
      problems.push(`${at(match.index)}: deno task ${match[1]} is not a task in deno.json`);
    }
  }

  // A relative path is looked up beside the README, then in its module's folder (for a module's
  // bench/README.md, which keeps text written beside the module's README), then from the root.
  const bases = [...new Set([dir, readme.includes("/") ? readme.split("/")[0]! : ".", "."])];
  const resolve = (path: string): string | undefined => {
    for (const candidate of bases.map((base) => join(base, path))) {
      const normal = relative(".", candidate) + (path.endsWith("/") ? "/" : "");
      if (!normal.startsWith("..") && repo.exists(normal)) return normal;
    }
    return undefined;
  };

  const prose = withoutFences(text);
  for (const match of prose.matchAll(/\]\(([^)\s]+)\)/g)) {
    const target = match[1]!;
    if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue; // https:, mailto:
    const [path, anchor] = target.split("#", 2) as [string, string | undefined];
    const file = path === "" ? readme : relative(".", join(dir, path));
    if (path !== "" && !repo.exists(file + (path.endsWith("/") ? "/" : ""))) {
      problems.push(`${at(match.index, prose)}: link to ${target}: ${file} does not exist`);
    } else if (anchor && file.endsWith(".md") && !repo.anchors(file).has(anchor)) {
      problems.push(
        `${at(match.index, prose)}: link to ${target}: ${file} has no heading #${anchor}`,
      );
    }
  }

  for (const match of prose.matchAll(/`([^`\n]+)`/g)) {
    const span = match[1]!;
    // Repository paths only: a slash, no spaces, placeholders or schemes; not absolute, not ~,
    // not an address range such as 127.0.0.0/8.
    if (!/^[\w.*-]+(\/[\w.*-]+)*\/?$/.test(span) || !span.includes("/")) continue;
    if (/^[\d.]+\//.test(span) || RUN_TIME_PATHS.has(span)) continue;
    // A path without a file extension counts only when its first folder exists: `tp/` and
    // `fexit/inet_csk_accept` are BPF section names, not paths.
    const first = span.split("/")[0]!;
    if (!/\.\w+$/.test(span) && bases.every((base) => !repo.exists(join(base, first) + "/"))) {
      continue;
    }
    if (span.includes("*")) {
      const parent = dirname(span);
      const pattern = globToRegExp(span.slice(parent.length + 1));
      const found = bases.map((base) => join(base, parent)).some((d) =>
        repo.list(relative(".", d)).some((name) => pattern.test(name))
      );
      if (!found) problems.push(`${at(match.index, prose)}: ${span} matches no file`);
    } else if (resolve(span) === undefined) {
      problems.push(
        `${at(match.index, prose)}: ${span} does not exist (looked in ${bases.join(", ")})`,
      );
    }
  }
  return problems;
}

function repositoryOnDisk(): Repository {
  const config = JSON.parse(Deno.readTextFileSync(join(root, "deno.json")));
  const stat = (path: string) => {
    try {
      return Deno.statSync(join(root, path));
    } catch {
      return undefined;
    }
  };
  return {
    tasks: new Set(Object.keys(config.tasks ?? {})),
    exists: (path) => {
      const info = stat(path);
      return info !== undefined && (!path.endsWith("/") || info.isDirectory);
    },
    list: (dir) => {
      try {
        return [...Deno.readDirSync(join(root, dir))].map((entry) => entry.name);
      } catch {
        return [];
      }
    },
    anchors: (path) => anchorsOf(Deno.readTextFileSync(join(root, path))),
  };
}

function readmes(dir = ""): string[] {
  const found: string[] = [];
  for (const entry of Deno.readDirSync(join(root, dir))) {
    const path = dir ? `${dir}/${entry.name}` : entry.name;
    if (entry.isDirectory && !SKIPPED_DIRS.has(entry.name)) found.push(...readmes(path));
    else if (entry.isFile && entry.name === "README.md") found.push(path);
  }
  return found.sort();
}

Deno.test("checkReadme() names each drifted task, link, anchor and path with file:line", () => {
  const repo: Repository = {
    tasks: new Set(["test", "bench:dns"]),
    exists: (path) => ["x/README.md", "x/bench/README.md", "x/a.ts", "tests/"].includes(path),
    list: (dir) => (dir === "tests" ? ["ebpf_maps_test.ts"] : []),
    anchors: (path) => new Set(path === "x/bench/README.md" ? ["method"] : []),
  };
  const text = [
    "Run `deno task test` and `deno task bench:dns --rounds 3`, not `deno task gone`.",
    "See [bench](bench/README.md#method), [web](https://example.org/a/b), `x/a.ts`, `a.ts`,",
    "`tests/ebpf_*`, `127.0.0.0/8`, `vm/.cache/results/`, `/etc/triad/app.yaml`.",
    "```sh",
    "deno task fenced-is-checked-too",
    "see [not a link](fenced/README.md) `fenced/path.ts`",
    "```",
    "Broken: [b](bench/README.md#nothing), [c](missing.md), `x/b.ts`, `tests/netloop_*`.",
  ].join("\n");
  assert.deepEqual(checkReadme("x/README.md", text, repo), [
    "x/README.md:1: deno task gone is not a task in deno.json",
    "x/README.md:5: deno task fenced-is-checked-too is not a task in deno.json",
    "x/README.md:8: link to bench/README.md#nothing: x/bench/README.md has no heading #nothing",
    "x/README.md:8: link to missing.md: x/missing.md does not exist",
    "x/README.md:8: x/b.ts does not exist (looked in x, .)",
    "x/README.md:8: tests/netloop_* matches no file",
  ]);
});

Deno.test("headingAnchor() makes GitHub's anchors", () => {
  assert.equal(headingAnchor("Benchmark"), "benchmark");
  assert.equal(headingAnchor("Serving: netloop or builtin"), "serving-netloop-or-builtin");
  assert.equal(headingAnchor("bpf2ts (`deno task gen`)"), "bpf2ts-deno-task-gen");
});

Deno.test("every README names only existing deno tasks, links and repository paths", () => {
  const repo = repositoryOnDisk();
  const files = readmes();
  assert.ok(files.includes("README.md") && files.length > 5, `READMEs found: ${files.join(", ")}`);
  const problems = files.flatMap((file) =>
    checkReadme(file, Deno.readTextFileSync(join(root, file)), repo)
  );
  assert.deepEqual(problems, [], `README drift:\n${problems.join("\n")}`);
});
