/**
 * `deno task bench:dns-tcp`: the DNS proxy holding many idle TCP clients while active ones are
 * served, against dnsdist in the same run. Per server, in interleaved rounds (server pinned to one
 * core, load and unbound to the other): IDLE clients connect from loopback source addresses of
 * their own (`netloop/bench/conns_load.c` in DNS mode, several processes), each sending one query
 * at open and one every 10 s; then ACTIVE more clients each send a query every 200 ms for the
 * measured window (cache hits). Printed: idle clients held/lost, server RSS growth per idle client,
 * the active clients' round-trip p50/p99, and answers checked by ID (bad).
 *
 * Usage: deno task bench:dns-tcp [--idle 15000] [--active 1000] [--seconds 10] [--rounds 2]
 *
 * @module
 */
import { parseArgs } from "node:util";
import { startUnbound } from "../../tests/servers/unbound.ts";
import {
  buildLoadTool,
  cpuSecondsOf,
  killed,
  listening,
  LoadFleet,
  median,
  rssKiB,
} from "../../netloop/bench/conns_load.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    idle: { type: "string", default: "15000" },
    active: { type: "string", default: "1000" },
    seconds: { type: "string", default: "10" },
    every: { type: "string", default: "200" },
    rounds: { type: "string", default: "2" },
    peers: { type: "string", default: "triad,dnsdist" },
  },
});
const IDLE = Number(values.idle);
const ACTIVE = Number(values.active);
const SECONDS = Number(values.seconds);
const EVERY_MS = Number(values.every);
const SERVER_CPU = "1";
const LOAD_CPU = "0";

const dir = await Deno.makeTempDir({ prefix: "triad-dns-tcp-" });
const tool = await buildLoadTool(dir);
await using unbound = await startUnbound({ cpus: LOAD_CPU, socketBuffer: "4m" });
const main = new URL("../main.ts", import.meta.url).pathname;
let port = 26000 + Math.floor(Math.random() * 3000);

function command(peer: string, at: number): string[] {
  if (peer === "triad") {
    return [
      Deno.execPath(),
      "run",
      "-A",
      "--unstable-net",
      main,
      "--listen",
      `127.0.0.1:${at}`,
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
      `setLocal("127.0.0.1:${at}")`,
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
  held: number;
  lost: number;
  bad: number;
  rssPerIdle: number;
  messages: number;
  p50: number;
  p99: number;
  cpuPerQuery: number;
}

async function measure(peer: string): Promise<Sample> {
  const at = ++port;
  const server = new Deno.Command("taskset", {
    args: ["-c", SERVER_CPU, ...command(peer, at)],
    stdout: "null",
    stderr: "null",
  }).spawn();
  try {
    await listening(at);
    // Warm the cache (every name the clients ask) and let the server settle.
    {
      await using warm = LoadFleet.start(tool, at, 100, { processes: 1, slice: 30, dns: true });
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
    });
    const opened = await idle.opened();
    await new Promise((r) => setTimeout(r, 1000));
    const rssPerIdle = (rssKiB(server.pid) - rss0) * 1024 / opened.held;
    await using active = LoadFleet.start(tool, at, ACTIVE, {
      processes: 1,
      slice: 20,
      cpu: LOAD_CPU,
      dns: true,
    });
    await active.opened();
    const cpu0 = cpuSecondsOf(server.pid);
    const run = await active.active(SECONDS, EVERY_MS);
    const cpu = cpuSecondsOf(server.pid) - cpu0;
    const idleStats = await idle.stats();
    const activeStats = await active.stats();
    return {
      held: idleStats.held,
      lost: idleStats.lost + activeStats.lost,
      bad: idleStats.bad + activeStats.bad,
      rssPerIdle,
      messages: run.messages,
      p50: run.p50,
      p99: run.p99,
      cpuPerQuery: cpu * 1e6 / run.messages,
    };
  } finally {
    await killed(server);
  }
}

const peers = values.peers.split(",");
console.log(
  `bench:dns-tcp ${new Date().toISOString()}: ${IDLE} idle TCP clients (a query every 10 s) + ` +
    `${ACTIVE} active (a query every ${EVERY_MS} ms for ${SECONDS} s), ${values.rounds} ` +
    `interleaved round(s); server on CPU ${SERVER_CPU}, load and unbound on CPU ${LOAD_CPU}`,
);
const results = new Map<string, Sample[]>();
for (let round = 0; round < Number(values.rounds); round++) {
  for (const peer of peers) {
    try {
      const sample = await measure(peer);
      (results.get(peer) ?? results.set(peer, []).get(peer)!).push(sample);
      console.error(`round ${round + 1} ${peer}: ${JSON.stringify(sample)}`);
    } catch (error) {
      console.error(`round ${round + 1} ${peer}: failed: ${error}`);
    }
  }
}
console.log(
  "\n| server | idle held/lost | RSS B per idle client | active answers | p50 µs | p99 µs | CPU µs/answer | bad |",
);
console.log("|---|---|---|---|---|---|---|---|");
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
    } | ${show((s) => s.cpuPerQuery)} | ${Math.max(...samples.map((s) => s.bad))} |`,
  );
}
await Deno.remove(dir, { recursive: true });
