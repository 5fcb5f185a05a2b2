/**
 * Latency under a cache-miss load: dnsdist's saturated miss rate is measured first, then each
 * server gets half of it (unique names, so every query is a miss) for 7 s in one dnsperf run,
 * rounds interleaved: the answers of the first 3 s are the fill, those after it the measure;
 * `dnsperf -v` gives each query's latency (written to a file, read after the run), and the proxy
 * runs with `--trace-gc`, whose scavenge pauses during the measure are counted. Each peer's own
 * saturated rate is measured first and printed with the share of it the measured rate asks for
 * (its utilisation, which sets its queueing). Peers: `triad` (this tree), `dnsdist`, and
 * `triad-at=<dir>` for another checkout's proxy (an earlier commit, say); a triad peer may carry V8
 * flags after `+` (`triad+--single-threaded-gc+--max-semi-space-size=32`), added to its
 * `--trace-gc`. `--rate N` sets the load instead (needed when the peers leave dnsdist out).
 *
 * Every cache has room for every answer of the run (`--cache-entries`; by default the saturation
 * run's names and each round's at up to 100,000 misses/s): dnsdist stores nothing in a full cache,
 * so with the 100,000 entries it had before it only forwarded after its first 100,000 misses
 * (about 1.2 s into the first fill) while this proxy stored each answer and evicted an older one.
 * The entries each cache holds at the end are printed.
 *
 * ```sh
 * deno run -A dnsproxy/bench/miss_latency.ts [--rounds 5] [--peers triad,dnsdist,triad-at=/tmp/old]
 *   [--rate 60000] [--cache-entries N]
 * ```
 *
 * @module
 */
import { parseArgs } from "node:util";
import { startUnbound } from "../../tests/servers/unbound.ts";
import {
  cacheRoomFlags,
  describeCacheEntries,
  dnsdistConfig,
  dnsdistMetrics,
  freePort,
  waitReady,
} from "./_bench_util.ts";

const { values: flags } = parseArgs({
  args: Deno.args,
  options: {
    rounds: { type: "string", default: "5" },
    peers: { type: "string", default: "triad,dnsdist" },
    rate: { type: "string" },
    "cache-entries": { type: "string" },
  },
});
const ROUNDS = Number(flags.rounds);
const RATE = flags.rate === undefined ? undefined : Number(flags.rate);
if (RATE !== undefined && !(Number.isInteger(RATE) && RATE > 0)) {
  throw new Error(`--rate ${flags.rate}: expected a whole number of misses per second above 0`);
}
if (RATE === undefined && !flags.peers.split(",").includes("dnsdist")) {
  throw new Error(
    `--peers ${flags.peers}: without dnsdist, whose saturated rate sets the load, give --rate N`,
  );
}
/** Seconds of load before the measure, and of the measure, in one dnsperf run. */
const FILL_S = 3;
const MEASURE_S = 4;
/** Names of each peer's saturation run. */
const SATURATION_NAMES = 600_000;
/** Answers one round stores at `rate` misses/s. */
const roundEntries = (rate: number) => rate * (FILL_S + MEASURE_S) + 1000;
const CACHE_ENTRIES = flags["cache-entries"] === undefined
  ? SATURATION_NAMES + ROUNDS * roundEntries(RATE ?? 100_000)
  : Number(flags["cache-entries"]);
if (!(Number.isInteger(CACHE_ENTRIES) && CACHE_ENTRIES > 0)) {
  throw new Error(`--cache-entries ${flags["cache-entries"]}: expected a whole number above 0`);
}
const dir = await Deno.makeTempDir({ prefix: "triad-misslat-" });
const unbound = await startUnbound({ cpus: "1", socketBuffer: "4m" });

interface Peer {
  name: string;
  port: number;
  /** Where its metrics are served (its cache's entries, printed at the end). */
  metricsPort: number;
  gcLog?: string;
  process?: Deno.ChildProcess;
}

const peers: Peer[] = flags.peers.split(",").map((name) => ({
  name,
  port: freePort(),
  metricsPort: freePort(),
}));
let files = 0;
let localPorts = 0;

async function names(count: number): Promise<string> {
  const file = `${dir}/names-${++files}.txt`;
  await Deno.writeTextFile(
    file,
    Array.from({ length: count }, (_, i) => `l${files}-${i}.bench A\n`).join(""),
  );
  return file;
}

async function dnsperf(port: number, args: string[], out?: string): Promise<string> {
  const command = [
    "taskset",
    "-c",
    "1",
    "dnsperf",
    "-s",
    "127.0.0.1",
    "-p",
    String(port),
    "-c",
    "10",
    "-x",
    String(11_000 + (localPorts++ % 50) * 16),
    ...args,
  ];
  if (out === undefined) {
    const { stdout } = await new Deno.Command(command[0]!, { args: command.slice(1) }).output();
    return new TextDecoder().decode(stdout);
  }
  const shell = `exec ${command.join(" ")} > ${out}`;
  await new Deno.Command("sh", { args: ["-c", shell] }).output();
  return await Deno.readTextFile(out);
}

/** Scavenge pauses (ms) that `--trace-gc` logged in the log's bytes from `from` on. */
async function scavenges(log: string, from: number): Promise<{ pauses: number[]; end: number }> {
  const text = await Deno.readTextFile(log);
  const pauses: number[] = [];
  for (const line of text.slice(from).split("\n")) {
    const match = /Scavenge.*?MB, ([\d.]+) \//.exec(line);
    if (match !== null) pauses.push(Number(match[1]));
  }
  return { pauses, end: text.length };
}

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};

try {
  const dnsdist = peers.find((p) => p.name === "dnsdist");
  await Deno.writeTextFile(
    `${dir}/dnsdist.conf`,
    dnsdistConfig(
      dnsdist?.port ?? freePort(),
      unbound.address,
      dnsdistMetrics(dnsdist?.metricsPort ?? freePort()),
      CACHE_ENTRIES,
    ),
  );
  for (const peer of peers) {
    let command: string[];
    if (peer.name === "dnsdist") {
      command = ["dnsdist", "--supervised", "--disable-syslog", "-C", `${dir}/dnsdist.conf`];
    } else {
      const [base, ...v8Flags] = peer.name.split("+");
      const tree = base!.startsWith("triad-at=")
        ? base!.slice("triad-at=".length)
        : new URL("../..", import.meta.url).pathname;
      peer.gcLog = `${dir}/gc-${peer.port}.log`;
      command = [
        Deno.execPath(),
        "run",
        "-A",
        "--unstable-net",
        `--v8-flags=${["--trace-gc", ...v8Flags].join(",")}`,
        `${tree}/dnsproxy/main.ts`,
        "--listen",
        `127.0.0.1:${peer.port}`,
        "--upstream",
        unbound.address,
        "--log.level",
        "error",
        "--cache.prefetch-hits",
        "0",
        ...cacheRoomFlags(CACHE_ENTRIES),
        "--metrics",
        `127.0.0.1:${peer.metricsPort}`,
      ];
    }
    const redirect = peer.gcLog === undefined ? "/dev/null" : peer.gcLog;
    peer.process = new Deno.Command("sh", {
      // Line-buffered: V8 prints --trace-gc through stdio, which would hold lines back in a file.
      args: ["-c", `exec stdbuf -oL taskset -c 0 ${command.join(" ")} > ${redirect} 2>/dev/null`],
    }).spawn();
  }
  for (const peer of peers) await waitReady(peer.port);
  // Each peer's own saturated miss rate, the same way: the load asked of it is half dnsdist's, and
  // its utilisation at that load (rate / its own saturation) is what sets its queueing.
  const saturation = new Map<string, number>();
  for (const peer of peers) {
    const text = await dnsperf(peer.port, [
      "-d",
      await names(SATURATION_NAMES),
      "-l",
      "3",
      "-n",
      "1",
      "-q",
      "500",
    ]);
    saturation.set(peer.name, Number(/Queries per second:\s+([\d.]+)/.exec(text)?.[1]));
  }
  const saturated = saturation.get("dnsdist");
  const rate = RATE ?? Math.round(saturated! / 2);
  console.error(
    saturated === undefined
      ? `measuring at ${rate}/s (--rate)`
      : `dnsdist saturated at ${saturated.toFixed(0)} misses/s: measuring at ${rate}/s`,
  );
  const needed = SATURATION_NAMES + ROUNDS * roundEntries(rate);
  if (needed > CACHE_ENTRIES) {
    console.error(
      `  the caches' room of ${CACHE_ENTRIES} is less than the run's misses: ` +
        `give --cache-entries ${needed}`,
    );
  }
  for (const [name, value] of saturation) {
    console.error(
      `  ${name} saturates at ${value.toFixed(0)} misses/s: ${
        (rate / value).toFixed(2)
      } of it at the measured rate`,
    );
  }
  const results = new Map<
    string,
    { mean: number[]; p99: number[]; over1: number[]; max: number[] }
  >();
  for (const peer of peers) results.set(peer.name, { mean: [], p99: [], over1: [], max: [] });
  for (let round = 0; round < ROUNDS; round++) {
    const order = peers.map((_, i) => peers[(i + round) % peers.length]!);
    for (const peer of order) {
      const q = ["-Q", String(rate), "-q", "2000", "-n", "1"];
      // One run, fill and measure: a dnsperf starts with a burst (its first ~15 ms sent 1,100
      // queries here, which the proxy's listener queue held for 0.2 s), so a measure run of its
      // own measured its start rather than the steady state. `-v` prints answers as they come:
      // the first FILL_S seconds' worth are the fill.
      const out = `${dir}/v-${peer.port}-${round}.txt`;
      const run = dnsperf(
        peer.port,
        [
          "-d",
          await names(rate * (FILL_S + MEASURE_S) + 1000),
          "-l",
          String(FILL_S + MEASURE_S),
          "-v",
          ...q,
        ],
        out,
      );
      // (the scavenge count's window only: the latencies are split by count, below)
      await new Promise((resolve) => setTimeout(resolve, FILL_S * 1000));
      const gcFrom = peer.gcLog === undefined ? 0 : (await scavenges(peer.gcLog, 0)).end;
      const text = await run;
      const latencies: number[] = [];
      let answers = 0;
      for (const line of text.split("\n")) {
        const match = /^> \S+ .* ([\d.]+)$/.exec(line);
        if (match !== null && answers++ >= rate * FILL_S) latencies.push(Number(match[1]) * 1000);
      }
      latencies.sort((a, b) => a - b);
      const into = results.get(peer.name)!;
      into.mean.push(latencies.reduce((a, b) => a + b, 0) / Math.max(1, latencies.length));
      into.p99.push(latencies[Math.floor(latencies.length * 0.99)] ?? NaN);
      if (peer.gcLog !== undefined) {
        const { pauses } = await scavenges(peer.gcLog, gcFrom);
        into.over1.push(pauses.filter((p) => p > 1).length);
        into.max.push(pauses.length === 0 ? 0 : Math.max(...pauses));
      }
      await Deno.remove(out);
      console.error(
        `round ${round + 1} ${peer.name}: ${latencies.length} answers, mean ${
          into.mean.at(-1)!.toFixed(3)
        } ms, p99 ${into.p99.at(-1)!.toFixed(3)} ms` +
          (peer.gcLog === undefined
            ? ""
            : `, scavenges over 1 ms ${into.over1.at(-1)}, longest ${into.max.at(-1)} ms`),
      );
    }
  }
  // Whether each cache stored what it fetched.
  const entries: string[] = [];
  for (const peer of peers) {
    entries.push(`${peer.name} ${await describeCacheEntries(peer.metricsPort, CACHE_ENTRIES)}`);
  }
  const basis = RATE !== undefined ? "--rate" : `half dnsdist's ${saturated!.toFixed(0)}`;
  console.log(`\nat ${rate} misses/s (${basis}), ${ROUNDS} rounds`);
  console.log(`cache entries (room for ${CACHE_ENTRIES}): ${entries.join(", ")}`);
  for (const [name, r] of results) {
    console.log(
      `${name.padEnd(30)} mean ${median(r.mean).toFixed(3)} ms (${
        r.mean.map((x) => x.toFixed(2)).join(" ")
      })  p99 ${median(r.p99).toFixed(3)} ms (${r.p99.map((x) => x.toFixed(2)).join(" ")})` +
        (r.over1.length === 0
          ? ""
          : `  scavenges >1 ms per 4 s: ${r.over1.join(" ")}, longest ${r.max.join(" ")} ms`),
    );
  }
} finally {
  for (const peer of peers) {
    try {
      peer.process?.kill("SIGTERM");
      await peer.process?.status;
    } catch { /* gone */ }
  }
  await unbound.stop();
  await Deno.remove(dir, { recursive: true });
}
