/**
 * Benchmark of `deno task trace` against bpftrace on the same tracepoint: a loopback connection
 * churner (tcp_churn.c, as fast as one core allows) runs with no tracer, under
 * `trace --json`, and under `bpftrace tcptrace.bt`, interleaved round by round in one run, and the
 * figures are printed side by side: churn rate and slowdown, events expected/delivered, lost
 * events (as each tracer reports them), and tracer CPU time per event (/proc/<pid>/stat).
 *
 * Run as root: `deno task bench:trace [--rounds N] [--seconds S]`. The churner is pinned to CPU 1
 * and the tracers to CPU 0 (taskset). Both tracers write to a file in a temp dir (the delivered
 * events are counted from it, so loss is checked, not only reported).
 *
 * @module
 */

import { parseArgs } from "node:util";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    rounds: { type: "string", default: "5" },
    seconds: { type: "string", default: "3" },
  },
});
const ROUNDS = Number(values.rounds);
const SECONDS = Number(values.seconds);
const here = new URL(".", import.meta.url).pathname;
const MAIN = new URL("../trace/main.ts", import.meta.url).pathname;
const CLK_TCK = 100;

type Mode = "none" | "trace" | "bpftrace";
const MODES: Mode[] = ["none", "trace", "bpftrace"];

interface Round {
  connections: number;
  rate: number;
  delivered: number;
  lost: number;
  cpuMs: number;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function run(cmd: string, args: string[]): Promise<string> {
  const out = await new Deno.Command(cmd, { args, stderr: "inherit" }).output();
  if (!out.success) throw new Error(`${cmd} ${args.join(" ")} failed with ${out.code}`);
  return new TextDecoder().decode(out.stdout);
}

function cpuTicks(pid: number): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return Number(fields[11]) + Number(fields[12]); // utime + stime (fields 14 and 15)
}

function countChurnLines(path: string): number {
  let count = 0;
  const text = Deno.readTextFileSync(path);
  for (let at = text.indexOf("tcp_churn"); at !== -1; at = text.indexOf("tcp_churn", at + 1)) {
    count++;
  }
  return count;
}

async function waitFor(check: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await sleep(50);
  }
}

function readText(path: string): string {
  try {
    return Deno.readTextFileSync(path);
  } catch {
    return ""; // not created yet
  }
}

function size(path: string): number {
  try {
    return Deno.statSync(path).size;
  } catch {
    return 0;
  }
}

async function untilQuiet(path: string): Promise<void> {
  // the tracer has drained when its output stops growing for a second (bounded at 20 s); a
  // starved tracer can pause longer, so trace also drains its ring on SIGINT (delivery counts
  // stay exact, only that last drain's CPU time would be missed)
  let last = -1;
  for (let i = 0; i < 20; i++) {
    const now = size(path);
    if (now === last) return;
    last = now;
    await sleep(1000);
  }
}

async function round(mode: Mode, dir: string, churn: string): Promise<Round> {
  const output = `${dir}/${mode}.out`;
  const errors = `${dir}/${mode}.err`;
  await Deno.writeTextFile(output, "");
  // the readiness check reads the error file: one left from an earlier round would pass at once
  await Deno.remove(errors).catch(() => {});
  let child: Deno.ChildProcess | undefined;
  if (mode !== "none") {
    // a shell redirects straight into the files: the tracer writes them itself, as with "> file"
    const quote = (arg: string) => `'${arg.replaceAll("'", `'\\''`)}'`;
    const command = mode === "trace"
      ? `exec taskset -c 0 ${quote(Deno.execPath())} run -A ${quote(MAIN)} --json > ${
        quote(output)
      } 2> ${quote(errors)}`
      : `exec taskset -c 0 bpftrace -o ${quote(output)} ${
        quote(`${here}tcptrace.bt`)
      } > /dev/null 2> ${quote(errors)}`;
    child = new Deno.Command("sh", { args: ["-c", command] }).spawn();
    await waitFor(
      () =>
        mode === "trace"
          ? /tracing TCP connections/.test(readText(errors))
          : /Attaching/.test(readText(output)),
      60_000,
      `${mode} to attach`,
    );
    await sleep(300);
  }
  const before = child ? cpuTicks(child.pid) : 0;
  const [connections, elapsed] = (await run("taskset", ["-c", "1", churn, String(SECONDS)]))
    .trim().split(" ").map(Number) as [number, number];
  let delivered = 0;
  let lost = 0;
  let cpuMs = 0;
  if (child) {
    await untilQuiet(output);
    cpuMs = (cpuTicks(child.pid) - before) * 1000 / CLK_TCK;
    child.kill("SIGINT");
    await child.status;
    await sleep(200); // the pipes flush into the files
    delivered = countChurnLines(output);
    if (mode === "trace") {
      lost = Number(/, (\d+) lost/.exec(Deno.readTextFileSync(errors))?.[1] ?? NaN);
    } else {
      const text = Deno.readTextFileSync(output);
      for (const match of text.matchAll(/Lost (\d+) events/g)) lost += Number(match[1]);
    }
  }
  return { connections, rate: connections / elapsed, delivered, lost, cpuMs };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

if (import.meta.main) {
  if (Deno.uid() !== 0) {
    console.error("trace_bench: run as root (it loads eBPF programs)");
    Deno.exit(1);
  }
  const dir = await Deno.makeTempDir({ prefix: "trace-bench-" });
  try {
    const churn = `${dir}/tcp_churn`;
    await run("clang", ["-O2", "-o", churn, `${here}tcp_churn.c`]);
    const results: Record<Mode, Round[]> = { none: [], trace: [], bpftrace: [] };
    for (let r = 0; r < ROUNDS; r++) {
      // rotate the order so no mode always runs first or last
      for (let i = 0; i < MODES.length; i++) {
        const mode = MODES[(r + i) % MODES.length]!;
        const result = await round(mode, dir, churn);
        results[mode].push(result);
        console.error(
          `round ${r + 1} ${mode.padEnd(8)} ${Math.round(result.rate)} conn/s, ` +
            `${result.delivered}/${result.connections * 4} events, ${result.lost} lost, ` +
            `${result.cpuMs} ms CPU`,
        );
      }
    }
    const base = median(results.none.map((r) => r.rate));
    const column = (mode: Mode) => {
      const rounds = results[mode];
      const rate = median(rounds.map((r) => r.rate));
      const expected = rounds.reduce((n, r) => n + r.connections * 4, 0);
      const delivered = rounds.reduce((n, r) => n + r.delivered, 0);
      const lost = rounds.reduce((n, r) => n + r.lost, 0);
      const perEvent = median(rounds.map((r) => r.cpuMs * 1000 / (r.connections * 4)));
      // slowdown paired by round (the no-tracer run of the same round), then the median:
      // steadier than a ratio of medians when the machine's other load drifts between rounds
      const slowdown = median(rounds.map((r, i) => results.none[i]!.rate / r.rate - 1));
      return mode === "none" ? [`${Math.round(rate)}`, "-", "-", "-", "-", "-"] : [
        `${Math.round(rate)}`,
        `${(slowdown * 100).toFixed(1)}% (${((base / rate - 1) * 100).toFixed(1)}%)`,
        `${expected}`,
        `${delivered} (${(delivered / expected * 100).toFixed(2)}%)`,
        `${lost}`,
        `${perEvent.toFixed(2)}`,
      ];
    };
    const rows = [
      "churn rate, conn/s (median)",
      "slowdown paired (of medians)",
      "events expected (4/conn)",
      "events delivered",
      "lost events reported",
      "tracer CPU µs/event (median)",
    ];
    const columns = MODES.map(column);
    console.log(
      `trace benchmark: ${ROUNDS} rounds x ${SECONDS} s, churner on CPU 1, tracer on CPU 0\n`,
    );
    console.log(`${"".padEnd(30)}${MODES.map((m) => m.padStart(22)).join("")}`);
    rows.forEach((title, i) => {
      console.log(`${title.padEnd(30)}${columns.map((c) => c[i]!.padStart(22)).join("")}`);
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
