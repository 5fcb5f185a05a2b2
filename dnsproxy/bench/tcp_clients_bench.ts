/**
 * `deno task bench:dns-tcp`: the DNS proxy holding many idle TCP clients while active ones are
 * served, against dnsdist in the same run. Per server, in interleaved rounds (server pinned to one
 * core, load and unbound to the other): IDLE clients connect from loopback source addresses of
 * their own (`netloop/bench/conns_load.c` in DNS mode, several processes), each sending one query
 * at open and one every 10 s; then ACTIVE more clients each send a query every 200 ms for the
 * measured window (cache hits). Printed: idle clients held/lost, server RSS growth per idle client,
 * the active clients' round-trip p50/p99, the server's CPU per answer and how long its threads
 * waited for a CPU over the active window (run-queue wait: the machine's share of the tail), and
 * answers checked by ID (bad). With `--dot`, every
 * client (idle and active) speaks DNS over TLS instead (a P-256 certificate made now with the
 * openssl CLI; the load tool linked with OpenSSL, so libssl-dev): triad's `--tls-listen`, dnsdist's
 * `addTLSLocal`. With `--trace-gc`, triad runs with V8's `--trace-gc` and the bench prints the
 * collections in the active window (count, median and longest pause, from every isolate).
 *
 * Usage: deno task bench:dns-tcp [--idle 15000] [--active 1000] [--seconds 10] [--rounds 2]
 *   [--every 200] [--dot] [--trace-gc] [--v8 FLAGS (more V8 flags for triad)]
 *   [--peers triad,dnsdist] (`triad-at=DIR`: the proxy from another checkout, say the code before
 *   a change, `git archive HEAD~1 | tar -x -C DIR`)
 *
 * @module
 */
import { parseArgs } from "node:util";
import { startUnbound } from "../../tests/servers/unbound.ts";
import {
  buildLoadTool,
  killed,
  listening,
  LoadFleet,
  median,
  rssKiB,
} from "../../netloop/bench/conns_load.ts";
import { threadsBetween, threadStats } from "../../netloop/bench/_util.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    idle: { type: "string", default: "15000" },
    active: { type: "string", default: "1000" },
    seconds: { type: "string", default: "10" },
    every: { type: "string", default: "200" },
    rounds: { type: "string", default: "2" },
    peers: { type: "string", default: "triad,dnsdist" },
    dot: { type: "boolean", default: false },
    "trace-gc": { type: "boolean", default: false },
    v8: { type: "string" },
  },
});
const DOT = values.dot;
const TRACE_GC = values["trace-gc"];
const IDLE = Number(values.idle);
const ACTIVE = Number(values.active);
const SECONDS = Number(values.seconds);
const EVERY_MS = Number(values.every);
const SERVER_CPU = "1";
const LOAD_CPU = "0";

const dir = await Deno.makeTempDir({ prefix: "triad-dns-tcp-" });
const tool = await buildLoadTool(dir, { tls: DOT });
const cert = DOT ? await makeCertificate(dir) : undefined;
await using unbound = await startUnbound({ cpus: LOAD_CPU, socketBuffer: "4m" });
const main = new URL("../main.ts", import.meta.url).pathname;
let port = 26000 + Math.floor(Math.random() * 3000);

/** A self-signed P-256 certificate for 127.0.0.1 (the clients do not check it). */
async function makeCertificate(into: string): Promise<{ cert: string; key: string }> {
  const pair = { cert: `${into}/dot.pem`, key: `${into}/dot.key` };
  const out = await new Deno.Command("openssl", {
    args: [
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:P-256",
      "-nodes",
      "-days",
      "1",
      "-subj",
      "/CN=127.0.0.1",
      "-keyout",
      pair.key,
      "-out",
      pair.cert,
    ],
    stdout: "null",
    stderr: "piped",
  }).output();
  if (!out.success) throw new Error(`openssl req: ${new TextDecoder().decode(out.stderr)}`);
  return pair;
}

/** The server's command; `at` is where the clients connect (DoT with `--dot`), `plain` TCP/UDP. */
function command(peer: string, at: number, plain: number): string[] {
  if (peer.startsWith("triad")) {
    const tree = peer.startsWith("triad-at=") ? peer.slice("triad-at=".length) : undefined;
    return [
      Deno.execPath(),
      "run",
      "-A",
      "--unstable-net",
      ...(TRACE_GC || values.v8 !== undefined
        ? [`--v8-flags=${[...(TRACE_GC ? ["--trace-gc"] : []), values.v8 ?? ""].filter(Boolean)}`]
        : []),
      tree === undefined ? main : `${tree}/dnsproxy/main.ts`,
      "--listen",
      `127.0.0.1:${plain}`,
      ...(cert === undefined
        ? []
        : ["--tls-listen", `127.0.0.1:${at}`, "--tls-cert", cert.cert, "--tls-key", cert.key]),
      "--upstream",
      unbound.address,
      "--log.level",
      "error",
      "--backend",
      "auto",
      "--loops",
      "1",
      "--tcp.idle-timeout",
      "300s",
      "--tcp.max-connections",
      String(IDLE + ACTIVE + 100),
    ];
  }
  const conf = `${dir}/dnsdist-${at}.conf`;
  Deno.writeTextFileSync(
    conf,
    [
      `setLocal("127.0.0.1:${plain}")`,
      ...(cert === undefined
        ? []
        : [`addTLSLocal("127.0.0.1:${at}", "${cert.cert}", "${cert.key}", {provider="openssl"})`]),
      'setACL({"127.0.0.0/8"})',
      'setSecurityPollSuffix("")',
      `newServer({address="${unbound.address}", checkName="h0.bench."})`,
      "pc = newPacketCache(100000)",
      'getPool(""):setCache(pc)',
      // Idle clients send every 10 s: dnsdist's default read timeout (2 s) would close them.
      "setTCPRecvTimeout(300)",
    ].join("\n") + "\n",
  );
  return ["dnsdist", "--supervised", "--disable-syslog", "-C", conf];
}

interface Sample {
  round: number;
  held: number;
  lost: number;
  bad: number;
  rssPerIdle: number;
  messages: number;
  p50: number;
  p99: number;
  cpuPerQuery: number;
  /** Milliseconds the server's threads waited for a CPU over the active window (all threads). */
  runWaitMs: number;
  /** Garbage collections in the active window (`--trace-gc`): pauses in ms. */
  scavenges: number[];
  markCompacts: number[];
}

/** The pauses `--trace-gc` logged in the log's bytes from `from` on, and where the log ends. */
function collections(log: string | undefined, from: number) {
  const scavenges: number[] = [];
  const markCompacts: number[] = [];
  if (log === undefined) return { scavenges, markCompacts, end: 0 };
  const text = Deno.readTextFileSync(log);
  for (const line of text.slice(from).split("\n")) {
    const match = /(Scavenge|Mark-Compact|Mark-sweep|Minor Mark-Sweep).*?MB, ([\d.]+) \//.exec(
      line,
    );
    if (match === null) continue;
    (match[1] === "Scavenge" || match[1] === "Minor Mark-Sweep" ? scavenges : markCompacts).push(
      Number(match[2]),
    );
  }
  return { scavenges, markCompacts, end: text.length };
}

async function measure(peer: string, round: number): Promise<Sample> {
  const plain = ++port;
  const at = DOT ? ++port : plain;
  // Kept after the run (the bench prints where) for a closer look.
  const gcLog = (TRACE_GC || values.v8 !== undefined) && peer.startsWith("triad")
    ? `${Deno.makeTempDirSync({ prefix: "triad-dns-tcp-gc-" })}/v8-${at}.log`
    : undefined;
  if (gcLog !== undefined) console.error(`triad's V8 output: ${gcLog}`);
  const line = ["taskset", "-c", SERVER_CPU, ...command(peer, at, plain)];
  // Line-buffered: V8 prints --trace-gc through stdio, which would hold lines back in a file.
  const server = gcLog === undefined
    ? new Deno.Command(line[0]!, { args: line.slice(1), stdout: "null", stderr: "null" }).spawn()
    : new Deno.Command("sh", {
      args: ["-c", `exec stdbuf -oL ${line.join(" ")} > ${gcLog} 2>/dev/null`],
    }).spawn();
  try {
    await listening(at);
    // Warm the cache (every name the clients ask) and let the server settle.
    {
      await using warm = LoadFleet.start(tool, at, 100, {
        processes: 1,
        slice: 30,
        dns: true,
        tls: DOT,
      });
      await warm.opened();
      await warm.close();
    }
    await new Promise((r) => setTimeout(r, 1000));
    const rss0 = rssKiB(server.pid);
    await using idle = LoadFleet.start(tool, at, IDLE, {
      processes: 3,
      interval: 10,
      slice: 10,
      cpu: LOAD_CPU,
      dns: true,
      tls: DOT,
    });
    const opened = await idle.opened();
    await new Promise((r) => setTimeout(r, 1000));
    const rssPerIdle = (rssKiB(server.pid) - rss0) * 1024 / opened.held;
    await using active = LoadFleet.start(tool, at, ACTIVE, {
      processes: 1,
      slice: 20,
      cpu: LOAD_CPU,
      dns: true,
      tls: DOT,
    });
    await active.opened();
    const gcFrom = collections(gcLog, 0).end;
    // The server runs under sh (with --trace-gc) or taskset: both exec it, the pid stays its own.
    const threads0 = threadStats(server.pid);
    const run = await active.active(SECONDS, EVERY_MS);
    const used = threadsBetween(threads0, threadStats(server.pid));
    const cpu = used.ns / 1e9;
    const runWaitMs = used.waitNs / 1e6;
    const gc = collections(gcLog, gcFrom);
    const idleStats = await idle.stats();
    const activeStats = await active.stats();
    return {
      round,
      held: idleStats.held,
      lost: idleStats.lost + activeStats.lost,
      bad: idleStats.bad + activeStats.bad,
      rssPerIdle,
      messages: run.messages,
      p50: run.p50,
      p99: run.p99,
      cpuPerQuery: cpu * 1e6 / run.messages,
      runWaitMs,
      scavenges: gc.scavenges,
      markCompacts: gc.markCompacts,
    };
  } finally {
    await killed(server);
  }
}

const peers = values.peers.split(",");
console.log(
  `bench:dns-tcp ${new Date().toISOString()}: ${IDLE} idle ${
    DOT ? "DoT" : "TCP"
  } clients (a query every 10 s) + ` +
    `${ACTIVE} active (a query every ${EVERY_MS} ms for ${SECONDS} s), ${values.rounds} ` +
    `interleaved round(s); server on CPU ${SERVER_CPU}, load and unbound on CPU ${LOAD_CPU}`,
);
const results = new Map<string, Sample[]>();
for (let round = 0; round < Number(values.rounds); round++) {
  for (const peer of peers) {
    try {
      const sample = await measure(peer, round + 1);
      (results.get(peer) ?? results.set(peer, []).get(peer)!).push(sample);
      console.error(`round ${round + 1} ${peer}: ${JSON.stringify(sample)}`);
    } catch (error) {
      console.error(`round ${round + 1} ${peer}: failed: ${error}`);
    }
  }
}
console.log(
  "\n| server | idle held/lost | RSS B per idle client | active answers | p50 µs | p99 µs | CPU µs/answer | run-queue wait ms | bad |",
);
console.log("|---|---|---|---|---|---|---|---|---|");
for (const peer of peers) {
  const samples = results.get(peer) ?? [];
  if (samples.length === 0) continue;
  const show = (f: (s: Sample) => number) => {
    const xs = samples.map(f);
    return `${median(xs).toFixed(0)} (${Math.min(...xs).toFixed(0)}-${Math.max(...xs).toFixed(0)})`;
  };
  console.log(
    `| ${peer} | ${median(samples.map((s) => s.held))}/${
      Math.max(...samples.map((s) => s.lost))
    } | ${show((s) => s.rssPerIdle)} | ${show((s) => s.messages)} | ${show((s) => s.p50)} | ${
      show((s) => s.p99)
    } | ${show((s) => s.cpuPerQuery)} | ${show((s) => s.runWaitMs)} | ${
      Math.max(...samples.map((s) => s.bad))
    } |`,
  );
}
if (TRACE_GC) {
  console.log("\nGarbage collections in triad's active windows (--trace-gc, every isolate):");
  for (
    const [peer, round, sample] of peers.filter((p) => p.startsWith("triad")).flatMap((peer) =>
      (results.get(peer) ?? []).map((sample) => [peer, sample.round, sample] as const)
    )
  ) {
    const show = (pauses: number[]) =>
      pauses.length === 0 ? "0" : `${pauses.length}, median ${median(pauses).toFixed(1)} ms, ` +
        `longest ${Math.max(...pauses).toFixed(1)} ms, ${
          pauses.reduce((a, b) => a + b, 0).toFixed(0)
        } ms in all`;
    console.log(
      `  ${peer} round ${round}: scavenges ${show(sample.scavenges)}; full ${
        show(sample.markCompacts)
      }`,
    );
  }
}
await Deno.remove(dir, { recursive: true });
