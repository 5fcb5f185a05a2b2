/**
 * `deno task test`: every check the project has, in order — fmt, lint, type check, tests (unit,
 * doc and integration), doc lint and a publish dry run of every package — then one closing line
 * `tests: N passed, N failed[, N skipped]`. Extra arguments go to `deno test` (say `--filter x`).
 *
 * @module
 */

const root = new URL("..", import.meta.url).pathname;
const config = JSON.parse(await Deno.readTextFile(`${root}deno.json`)) as { workspace: string[] };
const members = config.workspace.map((m) => m.replace(/^\.\//, ""));
const publicModules = ["mod.ts", ...members.map((m) => `${m}/mod.ts`)];

interface Stage {
  name: string;
  args: string[];
  cwd?: string;
}

const junitPath = await Deno.makeTempFile({ prefix: "triad-junit-", suffix: ".xml" });
const stages: Stage[] = [
  { name: "fmt", args: ["fmt", "--check"] },
  { name: "lint", args: ["lint"] },
  { name: "check", args: ["check"] },
  // --unstable-net: Deno's QUIC (the DoQ and netloop QUIC tests), Deno.listenDatagram, reusePort.
  {
    name: "test",
    args: ["test", "-A", "--unstable-net", "--doc", `--junit-path=${junitPath}`, ...Deno.args],
  },
  { name: "doc", args: ["doc", "--lint", ...publicModules] },
  ...["", ...members].map((dir) => ({
    name: `publish ${dir === "" ? "@triad/core" : `@triad/${dir}`}`,
    args: ["publish", "--dry-run", "--allow-dirty"],
    cwd: `${root}${dir}`,
  })),
];

let failedStages = 0;
for (const stage of stages) {
  console.error(`\n== ${stage.name}: deno ${stage.args.join(" ")}`);
  const { code } = await new Deno.Command(Deno.execPath(), {
    args: stage.args,
    cwd: stage.cwd ?? root,
    stdout: "inherit",
    stderr: "inherit",
  }).output();
  if (code !== 0) {
    failedStages++;
    console.error(`== ${stage.name} FAILED (exit ${code})`);
  }
}

// Counts come from the JUnit report: one <testcase> per test or step, with <failure> or <skipped>.
let passed = 0;
let failed = 0;
let skipped = 0;
try {
  const xml = await Deno.readTextFile(junitPath);
  for (const match of xml.matchAll(/<testcase\b[^>]*?(\/>|>([\s\S]*?)<\/testcase>)/g)) {
    const body = match[2] ?? "";
    if (/<failure\b/.test(body) || /<error\b/.test(body)) failed++;
    else if (/<skipped\b/.test(body)) skipped++;
    else passed++;
  }
} catch (error) {
  console.error(`No test report at ${junitPath}: ${error}`);
} finally {
  await Deno.remove(junitPath).catch(() => {});
}

// A failed stage other than the tests themselves counts as one failure, so the line never hides it.
const testStageFailed = failed > 0;
const otherFailures = failedStages - (testStageFailed ? 1 : 0);
failed += Math.max(0, otherFailures);
console.log(
  `tests: ${passed} passed, ${failed} failed${skipped > 0 ? `, ${skipped} skipped` : ""}`,
);
Deno.exit(failed > 0 || failedStages > 0 ? 1 : 0);
