/**
 * `.ci/packages.tsv`, the one list of Debian packages, against the code and against Debian:
 * every program the sources run has a line; `.ci/run` (through `.ci/setup`, which
 * `sudo deno task setup` runs too) installs every listed package; every "apt-get install" message
 * names the package the list gives; and where a listed program, library or file is installed,
 * `dpkg -S` of its path names the listed package.
 *
 * The source scan finds the programs named literally at a call site: `new Deno.Command("x"`,
 * `runCommand("x"`, `hasProgram("x")`, `command("x")`, local `run("x", …)` helpers, the program a
 * `taskset -c CPU` or `ip netns exec` runs, and argv arrays such as `["dnsdist", "--flag", …]`.
 * Programs inside shell snippets (`sh -c "…"`) were listed by reading them.
 *
 * @module
 */
import assert from "node:assert/strict";
import { TOOL_PACKAGES } from "../ebpf/gen/compile.ts";
import { BOX_BUILDER_PROGRAMS } from "../vm/box/_programs.ts";
import { command, root, testWith } from "./requirements.ts";
import { isFile } from "./support.ts";

const REPO = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const LIST = `${REPO}/.ci/packages.tsv`;

/** One line of `.ci/packages.tsv`. */
interface Entry {
  /** A program, a library (`lib*.so.N`) or an absolute file path. */
  what: string;
  package: string;
  when: "setup" | "npm";
  line: number;
}

function readList(): Map<string, Entry> {
  const entries = new Map<string, Entry>();
  const lines = Deno.readTextFileSync(LIST).split("\n");
  lines.forEach((text, index) => {
    if (text === "" || text.startsWith("#")) return;
    const where = `.ci/packages.tsv:${index + 1}`;
    const [what, pkg, when, usedBy] = text.split("\t");
    assert.ok(
      what && pkg && (when === "setup" || when === "npm") && usedBy,
      `${where}: expected "what<TAB>package<TAB>setup|npm<TAB>used by", got ${
        JSON.stringify(text)
      }`,
    );
    assert.match(pkg, /^[a-z0-9][a-z0-9.+-]+$/, `${where}: not a Debian package name`);
    assert.ok(!entries.has(what), `${where}: ${what} is listed twice`);
    entries.set(what, { what, package: pkg, when, line: index + 1 });
  });
  return entries;
}

function sourceFiles(dir = REPO): string[] {
  const files: string[] = [];
  for (const entry of Deno.readDirSync(dir)) {
    if (entry.name.startsWith(".") || entry.name === "node_modules") continue;
    const path = `${dir}/${entry.name}`;
    if (entry.isDirectory) files.push(...sourceFiles(path));
    else if (/\.(ts|mjs)$/.test(entry.name)) files.push(path);
  }
  return files.sort();
}

const relative = (path: string) => path.slice(REPO.length + 1);

function lineOf(text: string, offset: number): number {
  return text.slice(0, offset).split("\n").length;
}

/** Call sites that name the program they run, as `[regexp, group]`. */
const PROGRAM_SITES: RegExp[] = [
  /new Deno\.Command\(\s*"([^"]+)"/g,
  /\brunCommand\(\s*"([^"]+)"/g,
  /\bhasProgram\(\s*"([^"]+)"\)/g,
  /\bcommand\(\s*"([^"]+)"/g,
  /\brun\(\s*"([^"]+)",/g,
  // the program a wrapper runs: taskset -c CPU x, ip netns exec NS x (a local spawn("x"))
  /"taskset"[\s\S]{0,80}?\[\s*"-c",\s*[^,\]\s]+,\s*"([^"-][^"]*)"/g,
  /\btaskset -c \S+ ([a-z][\w.+-]*)/g,
  /\bspawn\(\s*"([^"]+)"\)/g,
  // argv arrays in a record: name: ["program", "--flag", ...]
  /(?<!args):\s*\[\s*"([a-z][\w.+-]*)",\s*"-/g,
];

/**
 * Programs that are not Debian's: Deno comes from npm (`.ci/run`); tests run made-up "no-such"
 * programs to see how a missing one is reported.
 */
const notDebian = (name: string) => name === "deno" || name.includes("no-such");

/** Every program the sources name at a call site, with where. */
function programsRun(): Map<string, string[]> {
  const found = new Map<string, string[]>();
  for (const file of sourceFiles()) {
    // these two check the message format itself, with a made-up program and package
    if (/\/tests\/(system_packages|requirements)_test\.ts$/.test(file)) continue;
    const text = Deno.readTextFileSync(file);
    for (const site of PROGRAM_SITES) {
      for (const match of text.matchAll(site)) {
        const name = match[1]!;
        if (!/^[a-z][\w.+-]*$/.test(name) || notDebian(name)) continue;
        const where = `${relative(file)}:${lineOf(text, match.index)}`;
        found.set(name, [...(found.get(name) ?? []), where]);
      }
    }
  }
  return found;
}

/** The names a message can use for a listed entry: the program, a library's stem, a file's name. */
function namesOf(entry: Entry): string[] {
  if (entry.what.startsWith("/")) return [entry.what.slice(entry.what.lastIndexOf("/") + 1)];
  const library = /^(lib[\w+-]+)\.so\.\d+$/.exec(entry.what);
  return library ? [entry.what, library[1]!] : [entry.what];
}

const escape = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

/** Files whose "apt-get install ${…}" messages take the package from a table this test checks. */
const TABLE_MESSAGES = new Set([
  "tests/requirements.ts", // command(name, debianPackage): every call is checked below
  "ebpf/gen/compile.ts", // TOOL_PACKAGES
  "vm/box/build_box.ts", // BOX_BUILDER_PROGRAMS
  "vm/_command.ts", // listedPackage(): .ci/packages.tsv itself
]);

/** Checks one "apt-get install" message line; returns the problem, or undefined. */
function checkMessage(
  lineText: string,
  where: string,
  list: Map<string, Entry>,
): string | undefined {
  const at = lineText.indexOf("apt-get install");
  const named =
    /^apt-get install ((?:[a-z0-9][a-z0-9.+-]*|\$\{[^}]+\})(?: (?:[a-z0-9][a-z0-9.+-]*|\$\{[^}]+\}))*)/
      .exec(lineText.slice(at))?.[1]?.split(" ") ?? [];
  if (named.some((word) => word.startsWith("${"))) {
    return TABLE_MESSAGES.has(where.replace(/:\d+$/, ""))
      ? undefined
      : `${where}: the package comes from \${…}: take it from a table this test checks`;
  }
  const before = lineText.slice(0, at);
  const subjects = [...list.values()].filter((entry) =>
    namesOf(entry).some((name) => new RegExp(`(^|[^\\w.-])${escape(name)}($|[^\\w-])`).test(before))
  );
  if (subjects.length === 0) {
    return before.includes("${")
      ? `${where}: the program comes from \${…}, the packages do not: look them up in a table`
      : `${where}: names no program, library or file of the list`;
  }
  const listed = new Set([...list.values()].map((entry) => entry.package));
  for (const word of named) {
    if (!listed.has(word)) return `${where}: "${word}" is not a package of .ci/packages.tsv`;
  }
  for (const subject of subjects) {
    if (!named.includes(subject.package)) {
      return `${where}: ${subject.what} is in ${subject.package} (.ci/packages.tsv:${subject.line}), ` +
        `the message says apt-get install ${named.join(" ")}`;
    }
  }
  return undefined;
}

Deno.test(".ci/packages.tsv lists every program the sources run", () => {
  const list = readList();
  const unlisted = [...programsRun()]
    .filter(([name]) => !list.has(name))
    .map(([name, sites]) => `${name} (${sites.join(", ")})`);
  assert.deepEqual(unlisted, [], "programs run but not in .ci/packages.tsv");
});

Deno.test("every apt-get install message names the package .ci/packages.tsv gives", async (t) => {
  const list = readList();
  await t.step("literal messages", () => {
    const problems: string[] = [];
    for (const file of sourceFiles()) {
      // these two check the message format itself, with a made-up program and package
      if (/\/tests\/(system_packages|requirements)_test\.ts$/.test(file)) continue;
      const lines = Deno.readTextFileSync(file).split("\n");
      lines.forEach((text, index) => {
        if (!text.includes("apt-get install")) return;
        const problem = checkMessage(text, `${relative(file)}:${index + 1}`, list);
        if (problem) problems.push(problem);
      });
    }
    assert.deepEqual(problems, []);
  });
  await t.step("command(name, package) in the tests", () => {
    const problems: string[] = [];
    for (const file of sourceFiles()) {
      if (/\/tests\/(system_packages|requirements)_test\.ts$/.test(file)) continue;
      const text = Deno.readTextFileSync(file);
      for (const match of text.matchAll(/\bcommand\(\s*"([^"]+)"(?:,\s*"([^"]+)")?\s*\)/g)) {
        const [, name, given = name] = match;
        const entry = list.get(name!);
        if (entry?.package !== given) {
          problems.push(
            `${relative(file)}:${lineOf(text, match.index)}: command("${name}") names ${given}, ` +
              `.ci/packages.tsv ${entry ? `gives ${entry.package}` : "has no line for it"}`,
          );
        }
      }
    }
    assert.deepEqual(problems, []);
  });
  await t.step("bpf2ts's and the box builder's tables", () => {
    for (const [name, pkg] of Object.entries({ ...TOOL_PACKAGES, ...BOX_BUILDER_PROGRAMS })) {
      assert.equal(pkg, list.get(name)?.package, `${name}'s package`);
    }
  });
  await t.step("the check catches a wrong package", () => {
    const message = "`The box builder needs sfdisk: apt-get install debootstrap qemu-utils`,";
    assert.match(checkMessage(message, "x.ts:1", list) ?? "", /sfdisk is in fdisk/);
  });
});

/** Where a listed program, library or file is on this machine, or undefined. */
function locate(what: string): string | undefined {
  if (what.startsWith("/")) return isFile(what) ? what : undefined;
  const dirs = /\.so\.\d+$/.test(what)
    ? ["/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib"]
    : [...(Deno.env.get("PATH") ?? "").split(":"), "/usr/sbin", "/sbin"].filter((d) => d !== "");
  return dirs.map((dir) => `${dir}/${what}`).find(isFile);
}

/**
 * The paths dpkg may know a file by: each step of its symlink chain (/usr/bin/awk ->
 * /etc/alternatives/awk -> /usr/bin/mawk), each also under its merged-/usr alias (dpkg knows
 * /bin/bash, PATH finds /usr/bin/bash).
 */
function dpkgNames(path: string): string[] {
  const names: string[] = [];
  let current: string | undefined = path;
  for (let step = 0; current !== undefined && step < 10; step++) {
    names.push(current);
    const alias = /^\/usr\/(bin|sbin|lib)\//.test(current)
      ? current.slice(4)
      : /^\/(bin|sbin|lib)\//.test(current)
      ? `/usr${current}`
      : undefined;
    if (alias) names.push(alias);
    let target: string | undefined;
    try {
      target = Deno.readLinkSync(current);
    } catch {
      target = undefined;
    }
    current = target === undefined
      ? undefined
      : target.startsWith("/")
      ? target
      : `${current.slice(0, current.lastIndexOf("/"))}/${target}`;
  }
  return names;
}

/**
 * Whether the installed version of a package came from an apt archive (Debian's), not from
 * elsewhere (NodeSource's nodejs bundles npm, which Debian packages apart).
 */
async function fromArchive(pkg: string): Promise<boolean> {
  const { stdout } = await new Deno.Command("apt-cache", { args: ["policy", pkg], stdout: "piped" })
    .output();
  const lines = new TextDecoder().decode(stdout).split("\n");
  const installed = lines.findIndex((line) => line.startsWith(" *** "));
  if (installed === -1) return true;
  for (const line of lines.slice(installed + 1)) {
    if (!/^ {8}/.test(line)) break;
    if (!line.includes("/var/lib/dpkg/status")) return true;
  }
  return false;
}

testWith(
  "dpkg -S of each installed program, library and file names the package .ci/packages.tsv gives",
  [command("dpkg-query", "dpkg")],
  async () => {
    const list = readList();
    const absent = [...list.values()].filter((entry) => locate(entry.what) === undefined);
    const located = [...list.values()].flatMap((entry) => {
      const path = locate(entry.what);
      return path === undefined ? [] : [{ entry, names: dpkgNames(path) }];
    });
    // one dpkg-query for all: it reads every package's file list
    const { stdout } = await new Deno.Command("dpkg-query", {
      args: ["-S", ...new Set(located.flatMap(({ names }) => names))],
      stdout: "piped",
      stderr: "null",
    }).output();
    const owners = new Map<string, string[]>();
    for (const line of new TextDecoder().decode(stdout).split("\n")) {
      const match = /^([^:]+(?::[a-z0-9]+)?(?:, [^:]+(?::[a-z0-9]+)?)*): (\/.*)$/.exec(line);
      if (!match || line.startsWith("diversion by ")) continue;
      const packages = match[1]!.split(", ").map((name) => name.replace(/:[a-z0-9]+$/, ""));
      owners.set(match[2]!, [...(owners.get(match[2]!) ?? []), ...packages]);
    }
    const problems: string[] = [];
    let checked = 0;
    for (const { entry, names } of located) {
      const owned = names.find((name) => owners.has(name));
      // installed outside dpkg (a hand-built tool): nothing to compare with
      if (owned === undefined) {
        console.error(`${entry.what}: ${names[0]} is not from a package`);
        continue;
      }
      const owner = owners.get(owned)!;
      if (!owner.includes(entry.package) && !(await fromArchive(owner[0]!))) {
        console.error(`${entry.what}: ${owned} is in ${owner[0]}, not installed from an archive`);
        continue;
      }
      checked++;
      if (!owner.includes(entry.package)) {
        problems.push(
          `.ci/packages.tsv:${entry.line}: ${entry.what} is in ${entry.package}, ` +
            `dpkg -S ${owned}: ${owner.join(", ")}`,
        );
      }
    }
    assert.deepEqual(problems, []);
    console.error(
      `dpkg -S agreed on ${checked} of ${list.size} listed entries; not installed here: ` +
        (absent.map((entry) => entry.what).join(", ") || "none"),
    );
    assert.ok(checked > 0, "nothing of the list is installed here");
  },
);

testWith(
  ".ci/run installs every listed package on a machine without them",
  [root, command("unshare", "util-linux")],
  async () => {
    const list = readList();
    const dir = await Deno.makeTempDir({ prefix: "triad-ci-run-" });
    try {
      // A machine with only the shell's basics: apt-get, mount, npm and deno are fakes that log
      // their arguments; apt-get "installing" npm brings a fake npm, and npm a fake deno.
      const bin = `${dir}/bin`;
      await Deno.mkdir(bin);
      await Deno.mkdir(`${dir}/stash`);
      const basics = ["bash", "awk", "sort", "grep", "cut", "head", "dirname", "id", "chmod", "cp"];
      for (const tool of [...basics, "rm"]) {
        const real = ["/usr/bin", "/bin"].map((d) => `${d}/${tool}`).find(isFile);
        assert.ok(real, `${tool} not found`);
        await Deno.symlink(real, `${bin}/${tool}`);
      }
      const fake = (path: string, name: string, body = "") =>
        Deno.writeTextFileSync(
          path,
          `#!${bin}/bash\necho "${name} $*" >> "${dir}/log"\n${body}\n`,
          { mode: 0o755 },
        );
      const install = (name: string) => `cp "${dir}/stash/${name}" "${bin}/${name}"`;
      fake(`${bin}/apt-get`, "apt-get", `case " $* " in *" npm "*) ${install("npm")};; esac`);
      fake(`${bin}/mount`, "mount");
      fake(`${dir}/stash/npm`, "npm", install("deno"));
      fake(`${dir}/stash/deno`, "deno", `[ "$1" != --version ] || echo "deno 2.9.6 (stable)"`);
      // policy-rc.d goes to a private /usr/sbin
      const script = `mount -t tmpfs none /usr/sbin && PATH=${bin} exec bash ${REPO}/.ci/run`;
      const { code, stderr } = await new Deno.Command("unshare", {
        args: ["--mount", "--propagation", "private", "sh", "-c", script],
        env: { CI: "true" },
        clearEnv: true,
        stdout: "null",
        stderr: "piped",
      }).output();
      const log = Deno.readTextFileSync(`${dir}/log`).trimEnd().split("\n");
      assert.equal(code, 0, `${new TextDecoder().decode(stderr)}\n${log.join("\n")}`);
      const installs = log.filter((line) => line.startsWith("apt-get install "))
        .map((line) => line.split(" ").slice(2).filter((word) => !word.startsWith("-")));
      const packages = (when: string) =>
        [...new Set([...list.values()].filter((e) => e.when === when).map((e) => e.package))]
          .sort();
      assert.equal(log[0], "apt-get update");
      assert.deepEqual(installs.map((words) => words.sort()), [packages("setup"), packages("npm")]);
      const npmAt = log.indexOf("npm install -g --allow-scripts=deno deno@2.9.6");
      assert.ok(npmAt > 0 && log.indexOf("deno task test") > npmAt, log.join("\n"));
      assert.ok(
        log.includes("mount -t bpf bpf /sys/fs/bpf") || /\/sys\/fs\/bpf bpf/.test(
          Deno.readTextFileSync("/proc/self/mounts"),
        ),
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);
