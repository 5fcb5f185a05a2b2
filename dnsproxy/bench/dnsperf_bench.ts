/**
 * `deno task bench:dns`: dnsperf against this proxy (on netloop's auto-chosen backend, one loop,
 * with its default pool of upstream sockets and with `--upstream.sockets per_query` as
 * `triad-per-query`, and on its builtin listeners), dnsdist and dnsmasq, all forwarding to the
 * same unbound (local zones only: nothing leaves the machine), printed side by side.
 *
 * Three floors run the cache-miss load only: `udp_forwarder.c`, a C forwarder with no cache that
 * makes just a miss's system calls, either from a new random port per upstream query as this
 * proxy does (`c-forwarder`) or over one socket as dnsdist does (`c-forwarder-1socket`); and
 * `netloop_forwarder.ts`, the same port-per-query forwarding on netloop with no DNS work
 * (`netloop-forwarder`): what Deno and netloop cost before the proxy does anything.
 *
 * - cache hit: 100 names, answered from each proxy's cache after a warm-up;
 * - cache miss: unique names (`<run>-<n>.bench`, served by unbound's local `bench.` zone);
 * - latency: the hit file at a fixed 40,000 queries/s.
 *
 * Servers are pinned to CPU 0, dnsperf and unbound to CPU 1 (taskset). Rounds are interleaved
 * (A B C, B C A, ...) and medians printed; server CPU is utime+stime from /proc/<pid>/stat.
 *
 * The proxies' caches hold `--cache-entries` answers (by default the names of every miss run,
 * 150,000 a second, and 10,000 more: 1,810,000 for 3 rounds of 4 s), so that each of them stores
 * every answer it fetches: dnsdist stores nothing in a full cache, and with 100,000 entries (its
 * setting before 2026-12-08) it forwarded all but the first 100,000 misses without storing them,
 * while this proxy stored each one and evicted an older one. The entries each cache holds at the
 * end are printed.
 *
 * ```sh
 * deno task bench:dns [--rounds 3] [--seconds 4] [--rate 40000] [--cache-entries N]
 *   [--peers triad,dnsdist,...]
 * ```
 *
 * A peer `triad-at=DIR` runs the proxy of another checkout as `triad` is run (`git archive REV`
 * unpacked in DIR), for a before-and-after in one run.
 *
 * `--table` runs `table_bench.ts` instead (1,000 and 10,000 concurrent TCP and UDP clients),
 * `--flood` `flood_bench.ts`, `--transport dot|doh` `encrypted_bench.ts`.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { compileC } from "../../tests/servers/compile_c.ts";
import { startUnbound } from "../../tests/servers/unbound.ts";
import {
  cacheRoomFlags,
  cpuSplit,
  cpuTicks,
  describeCacheEntries,
  dnsdistConfig,
  dnsdistMetrics,
  freePort,
  median,
  startPinned,
  triadCommand as sharedTriadCommand,
  writeHitFile,
} from "./_bench_util.ts";
import type { BenchPeer } from "./_bench_util.ts";

if (Deno.args.includes("--table")) {
  const { runTable } = await import("./table_bench.ts");
  await runTable();
  Deno.exit(0);
}
if (Deno.args.includes("--flood")) {
  const { runFloodBench } = await import("./flood_bench.ts");
  await runFloodBench(Deno.args.filter((arg) => arg !== "--flood"));
  Deno.exit(0);
}

// `--transport dot|doh` is the encrypted benchmark (encrypted_bench.ts); udp (the default) is this.
const transportAt = Deno.args.findIndex((a) => a === "--transport" || a.startsWith("--transport="));
if (
  transportAt >= 0 && !/^(--transport=)?udp$/.test(Deno.args[transportAt]!) &&
  Deno.args[transportAt + 1] !== "udp"
) {
  await import("./encrypted_bench.ts");
  Deno.exit(0);
}
const { values: flags } = parseArgs({
  args: Deno.args,
  options: {
    rounds: { type: "string", default: "3" },
    seconds: { type: "string", default: "4" },
    rate: { type: "string", default: "40000" },
    "cache-entries": { type: "string" },
    transport: { type: "string", default: "udp" },
    peers: {
      type: "string",
      default:
        "triad,triad-per-query,triad-builtin,dnsdist,dnsmasq,c-forwarder,c-forwarder-1socket," +
        "netloop-forwarder",
    },
  },
});
const ROUNDS = Number(flags.rounds);
const SECONDS = Number(flags.seconds);
const RATE = Number(flags.rate);
/** Names in each miss run's file: more than the fastest peer answers in SECONDS. */
const MISS_NAMES = 150_000 * SECONDS;
const CACHE_ENTRIES = flags["cache-entries"] === undefined
  ? ROUNDS * MISS_NAMES + 10_000
  : Number(flags["cache-entries"]);
const SERVER_CPU = "0";
const LOAD_CPU = "1";
const TICKS_PER_SECOND = 100;
/**
 * dnsperf's local ports: 10000-10809, below the ephemeral range and below 20000-32767, where the
 * test servers' ports (unbound's here) are picked (`freePort`).
 */
const LOCAL_PORT_BASE = 10_000;
let dnsperfRuns = 0;

type Peer = BenchPeer;

/** The floors: forwarders with no cache, so only the cache-miss load is theirs to run. */
const FLOORS = ["c-forwarder", "c-forwarder-1socket", "netloop-forwarder"];

interface Run {
  qps: number;
  completed: number;
  lost: number;
  latencyMs: number;
  cpuUsPerQuery: number;
  /** The user-space part of `cpuUsPerQuery` (utime). */
  userUsPerQuery: number;
  /** The kernel's part of `cpuUsPerQuery` (stime). */
  systemUsPerQuery: number;
  /** Share of answers that were NOERROR, in percent. */
  noerror: number;
  /** dnsperf's CPU over the middle of its run, as a share of its core (near 1: it is the limit). */
  clientBusy: number;
}

async function dnsperf(
  port: number,
  file: string,
  extra: string[],
): Promise<Omit<Run, "cpuUsPerQuery" | "userUsPerQuery" | "systemUsPerQuery">> {
  const child = new Deno.Command("taskset", {
    args: [
      "-c",
      LOAD_CPU,
      "dnsperf",
      "-s",
      "127.0.0.1",
      "-p",
      String(port),
      "-d",
      file,
      "-c",
      "10",
      // Fixed local ports below the ephemeral range: on a busy machine (other suites holding
      // ephemeral ports) dnsperf's own bind to port 0 failed with EADDRINUSE.
      "-x",
      String(LOCAL_PORT_BASE + (dnsperfRuns++ % 50) * 16),
      ...extra,
    ],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  // dnsperf's own CPU over the middle of a timed run (taskset execs it: same pid).
  let clientBusy = NaN;
  const limit = extra.indexOf("-l");
  if (limit >= 0) {
    const seconds = Number(extra[limit + 1]);
    await new Promise((resolve) => setTimeout(resolve, 300));
    try {
      const before = cpuTicks(child.pid);
      const window = Math.max(0.2, seconds - 0.8);
      await new Promise((resolve) => setTimeout(resolve, window * 1000));
      clientBusy = (cpuTicks(child.pid) - before) / TICKS_PER_SECOND / window;
    } catch { /* exited early: reported below */ }
  }
  const { stdout, stderr, code, signal } = await child.output();
  const text = new TextDecoder().decode(stdout);
  if (!/Queries per second/.test(text)) {
    console.error(
      `dnsperf on port ${port} exited ${code} ${signal ?? ""}: ${
        new TextDecoder().decode(stderr).slice(-500)
      }`,
    );
  }
  const number = (pattern: RegExp) => Number(pattern.exec(text)?.[1] ?? NaN);
  return {
    qps: number(/Queries per second:\s+([\d.]+)/),
    completed: number(/Queries completed:\s+(\d+)/),
    lost: number(/Queries lost:\s+(\d+)/),
    latencyMs: number(/Average Latency \(s\):\s+([\d.]+)/) * 1000,
    noerror: number(/Response codes:.*?NOERROR \d+ \(([\d.]+)%\)/),
    clientBusy,
  };
}

async function measure(peer: Peer, file: string, extra: string[]): Promise<Run> {
  const pid = peer.process!.pid;
  const before = cpuSplit(pid);
  const result = await dnsperf(peer.port, file, extra);
  const after = cpuSplit(pid);
  const perQuery = (ticks: number) =>
    (ticks / TICKS_PER_SECOND) * 1e6 / Math.max(1, result.completed);
  const user = perQuery(after.user - before.user);
  const system = perQuery(after.system - before.system);
  return {
    ...result,
    cpuUsPerQuery: user + system,
    userUsPerQuery: user,
    systemUsPerQuery: system,
  };
}

const dir = await Deno.makeTempDir({ prefix: "triad-dnsbench-" });
// 4 MiB socket buffers, as unbound's documentation advises for a busy server: with the kernel's
// 208 KiB, a burst of upstream queries (a proxy catching up after a pause) overflows it, and each
// dropped query costs its proxy a timeout.
const unbound = await startUnbound({ cpus: LOAD_CPU, socketBuffer: "4m" });
const peers: Peer[] = flags.peers.split(",").map((name) => ({ name, port: freePort() }));
for (const peer of peers) {
  if (
    !["triad", "triad-per-query", "triad-builtin", "dnsdist", "dnsmasq", ...FLOORS].includes(
      peer.name,
    ) && !peer.name.startsWith("triad-at=")
  ) {
    throw new Error(`Unknown peer "${peer.name}" in --peers`);
  }
}
const port = (name: string) => peers.find((p) => p.name === name)?.port ?? 0;
/** Where each caching peer's metrics are read from (its cache's entries, printed at the end). */
const metricsPorts = new Map<string, number>();
for (const peer of peers) {
  if (peer.name.startsWith("triad") || peer.name === "dnsdist") {
    metricsPorts.set(peer.name, freePort());
  }
}
try {
  await Deno.writeTextFile(
    `${dir}/dnsdist.conf`,
    dnsdistConfig(
      port("dnsdist"),
      unbound.address,
      dnsdistMetrics(metricsPorts.get("dnsdist") ?? freePort()),
      CACHE_ENTRIES,
    ),
  );
  const triadCommand = (name: string, extra: string[], entry?: string) =>
    sharedTriadCommand(port(name), unbound.address, [
      ...extra,
      ...cacheRoomFlags(CACHE_ENTRIES),
      "--metrics",
      `127.0.0.1:${metricsPorts.get(name)}`,
    ], entry);
  const forwarder = `${dir}/udp_forwarder`;
  if (peers.some((peer) => peer.name.startsWith("c-"))) {
    await compileC(new URL("udp_forwarder.c", import.meta.url).pathname, forwarder);
  }
  const commands: Record<string, string[]> = {
    triad: triadCommand("triad", ["--backend", "auto", "--loops", "1"]),
    "triad-per-query": triadCommand("triad-per-query", [
      "--backend",
      "auto",
      "--loops",
      "1",
      "--upstream.sockets",
      "per_query",
    ]),
    "triad-builtin": triadCommand("triad-builtin", ["--backend", "builtin"]),
    dnsdist: ["dnsdist", "--supervised", "--disable-syslog", "-C", `${dir}/dnsdist.conf`],
    dnsmasq: [
      "dnsmasq",
      "-k",
      "--conf-file=/dev/null",
      "--no-resolv",
      "--no-hosts",
      `--server=127.0.0.1#${unbound.port}`,
      "--listen-address=127.0.0.1",
      "--bind-interfaces",
      `--port=${port("dnsmasq")}`,
      "--cache-size=10000",
      "--dns-forward-max=5000",
      "--pid-file=",
      "--user=root",
    ],
    "c-forwarder": [forwarder, String(port("c-forwarder")), String(unbound.port), "port-per-query"],
    "c-forwarder-1socket": [
      forwarder,
      String(port("c-forwarder-1socket")),
      String(unbound.port),
      "one-socket",
    ],
    "netloop-forwarder": [
      Deno.execPath(),
      "run",
      "-A",
      new URL("netloop_forwarder.ts", import.meta.url).pathname,
      String(port("netloop-forwarder")),
      String(unbound.port),
    ],
  };
  for (const peer of peers) {
    // `triad-at=DIR`: the proxy of another checkout (an earlier commit unpacked in DIR), as `triad`.
    if (peer.name.startsWith("triad-at=")) {
      const entry = `${peer.name.slice("triad-at=".length)}/dnsproxy/main.ts`;
      commands[peer.name] = triadCommand(peer.name, ["--backend", "auto", "--loops", "1"], entry);
    }
  }
  await startPinned(peers, commands, SERVER_CPU);

  const hitFile = await writeHitFile(dir);
  for (const peer of peers) {
    // Warm the caches.
    if (!FLOORS.includes(peer.name)) await dnsperf(peer.port, hitFile, ["-n", "3"]);
  }

  const results = new Map<string, { hit: Run[]; miss: Run[]; latency: Run[] }>();
  for (const peer of peers) results.set(peer.name, { hit: [], miss: [], latency: [] });
  let runId = 0;
  for (let round = 0; round < ROUNDS; round++) {
    const order = peers.map((_, i) => peers[(i + round) % peers.length]!);
    for (const peer of order) {
      const into = results.get(peer.name)!;
      const floor = FLOORS.includes(peer.name);
      if (!floor) into.hit.push(await measure(peer, hitFile, ["-l", String(SECONDS), "-q", "500"]));
      const missFile = `${dir}/miss-${++runId}.txt`;
      // More names than the fastest peer answers in SECONDS (dnsperf -n 1 stops at the file's end).
      const lines = Array.from({ length: MISS_NAMES }, (_, i) => `r${runId}-${i}.bench A\n`);
      await Deno.writeTextFile(missFile, lines.join(""));
      into.miss.push(
        await measure(peer, missFile, ["-l", String(SECONDS), "-n", "1", "-q", "500"]),
      );
      await Deno.remove(missFile);
      if (!floor) {
        into.latency.push(
          await measure(peer, hitFile, ["-l", String(SECONDS), "-Q", String(RATE), "-q", "2000"]),
        );
      }
      console.error(`round ${round + 1}/${ROUNDS} ${peer.name} done`);
    }
  }

  // Whether each cache stored what it fetched: its entries against the misses answered.
  const entries: string[] = [];
  for (const [name, at] of metricsPorts) {
    const answered = results.get(name)!.miss.reduce((sum, run) => sum + run.completed, 0);
    entries.push(
      `${name} ${await describeCacheEntries(at, CACHE_ENTRIES, ` after ${answered} misses`)}`,
    );
  }
  const pad = (text: string, width: number) => text.padStart(width);
  // Columns as wide as the longest peer name (`triad-at=DIR` ones are long) and a space.
  const width = Math.max(20, ...peers.map((p) => p.name.length + 1));
  const line = (cells: string[]) =>
    console.log(cells.map((c, i) => i === 0 ? c.padEnd(34) : pad(c, width)).join(""));
  console.log(
    `\ndnsperf, ${ROUNDS} interleaved rounds of ${SECONDS}s, medians; servers on CPU ${SERVER_CPU}, ` +
      `dnsperf and unbound on CPU ${LOAD_CPU}`,
  );
  console.log(`cache entries (room for ${CACHE_ENTRIES}): ${entries.join(", ")}`);
  line(["", ...peers.map((p) => p.name)]);
  const row = (
    label: string,
    pick: (r: { hit: Run[]; miss: Run[]; latency: Run[] }) => number[],
    digits: number,
  ) =>
    line([
      label,
      ...peers.map((p) => {
        const values = pick(results.get(p.name)!);
        return values.length === 0 ? "-" : median(values).toFixed(digits);
      }),
    ]);
  row("cache hit: queries/s", (r) => r.hit.map((x) => x.qps), 0);
  row("cache hit: server CPU us/query", (r) => r.hit.map((x) => x.cpuUsPerQuery), 1);
  row("cache hit: avg latency ms", (r) => r.hit.map((x) => x.latencyMs), 3);
  row("cache hit: dnsperf CPU busy %", (r) => r.hit.map((x) => x.clientBusy * 100), 0);
  row("cache miss: queries/s", (r) => r.miss.map((x) => x.qps), 0);
  row("cache miss: server CPU us/query", (r) => r.miss.map((x) => x.cpuUsPerQuery), 1);
  row("  of which user space", (r) => r.miss.map((x) => x.userUsPerQuery), 1);
  row("  of which kernel", (r) => r.miss.map((x) => x.systemUsPerQuery), 1);
  row("cache miss: lost queries", (r) => r.miss.map((x) => x.lost), 0);
  row("cache miss: dnsperf CPU busy %", (r) => r.miss.map((x) => x.clientBusy * 100), 0);
  row("cache miss: NOERROR answers %", (r) => r.miss.map((x) => x.noerror), 1);
  row(`at ${RATE} q/s: achieved queries/s`, (r) => r.latency.map((x) => x.qps), 0);
  row(`at ${RATE} q/s: avg latency ms`, (r) => r.latency.map((x) => x.latencyMs), 3);
  row(`at ${RATE} q/s: lost queries`, (r) => r.latency.map((x) => x.lost), 0);
  const triad = results.get("triad");
  const dnsdist = results.get("dnsdist");
  const ratio = (a: number[], b: number[]) => (median(a) / median(b)).toFixed(2);
  if (triad !== undefined && dnsdist !== undefined) {
    console.log(
      `\ntriad / dnsdist: cache-hit q/s ${
        ratio(triad.hit.map((x) => x.qps), dnsdist.hit.map((x) => x.qps))
      }x ` +
        `(target >= 1), CPU/query ${
          ratio(triad.hit.map((x) => x.cpuUsPerQuery), dnsdist.hit.map((x) => x.cpuUsPerQuery))
        }x ` +
        `(target <= 1), cache-miss q/s ${
          ratio(triad.miss.map((x) => x.qps), dnsdist.miss.map((x) => x.qps))
        }x ` +
        `(target >= 0.8), latency at ${RATE} q/s ${
          ratio(triad.latency.map((x) => x.latencyMs), dnsdist.latency.map((x) => x.latencyMs))
        }x (target <= 1)`,
    );
  }
  if (dnsdist !== undefined) {
    // Where the cache-miss rate is lost: the kernel's share (C), the runtime's (netloop), the
    // proxy's.
    const missQps = (name: string) => results.get(name)!.miss.map((x) => x.qps);
    const others = peers.filter((p) => p.name !== "dnsdist" && p.name !== "triad-builtin");
    console.log(
      "cache-miss q/s against dnsdist: " +
        others.map((p) => `${p.name} ${ratio(missQps(p.name), missQps("dnsdist"))}x`).join(", "),
    );
    // Every server is CPU-bound on the miss load, so 0.8x dnsdist's rate is a CPU budget per miss;
    // the kernel's share with a random port per query is c-forwarder's (it does nothing else).
    const miss = (name: string, pick: (x: Run) => number) => {
      const runs = results.get(name)?.miss ?? [];
      return runs.length === 0 ? NaN : median(runs.map(pick));
    };
    const budget = miss("dnsdist", (x) => x.cpuUsPerQuery) / 0.8;
    const kernel = miss("c-forwarder", (x) => x.systemUsPerQuery);
    if (!Number.isNaN(kernel)) {
      const parts = [
        `0.8x dnsdist's cache-miss rate allows ${budget.toFixed(1)} us of CPU per miss`,
      ];
      parts.push(`c-forwarder's kernel time (a random port per query) is ${kernel.toFixed(1)} us`);
      parts.push(`leaving ${(budget - kernel).toFixed(1)} us of user time`);
      const floor = miss("netloop-forwarder", (x) => x.userUsPerQuery);
      if (!Number.isNaN(floor)) {
        parts.push(`netloop-forwarder (no DNS work) uses ${floor.toFixed(1)} us of user time`);
      }
      if (triad !== undefined) {
        parts.push(`triad ${miss("triad", (x) => x.userUsPerQuery).toFixed(1)} us`);
      }
      console.log(parts.join("; "));
    }
  }
} finally {
  for (const peer of peers) {
    try {
      peer.process?.kill("SIGTERM");
      await peer.process?.status;
    } catch { /* already gone */ }
  }
  await unbound.stop();
  await Deno.remove(dir, { recursive: true });
}
