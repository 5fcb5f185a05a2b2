/**
 * `deno task bench:dns --table`: the design's load table reproduced on this machine. dnsperf
 * holds 1,000 and 10,000 concurrent clients (TCP connections, and UDP sockets as many), each
 * client asking in turn, against this proxy (netloop, `auto`, one loop) and dnsdist in the same
 * run, forwarding to one unbound (local zones only): cache-miss queries/s (unique names) and
 * cache-hit queries/s (100 names, warmed), each with its p99 latency from `dnsperf -v`. Servers
 * on CPU 0, dnsperf and unbound on CPU 1; `--rounds N` interleaves the peers and prints medians.
 *
 * After the table it prints the machine limits met: the server's and dnsperf's peak open file
 * descriptors against `RLIMIT_NOFILE`, the kernel's listen-queue overflows against
 * `net.core.somaxconn`, and local ports against `net.ipv4.ip_local_port_range`, each with the
 * setting that lifts it. Every run asks from a loopback source address of its own (127.0.1.N), so
 * one run's TIME_WAIT ports do not use up the next run's ports. dnsperf opens at most 256 sockets
 * per thread, so it runs with a thread per 256 clients (all on its one CPU). Both caches have room
 * for every miss run's names (dnsdist stores nothing in a full cache).
 *
 * ```sh
 * deno task bench:dns --table [--rounds 1] [--seconds 3] [--clients 1000,10000] [--peers triad,dnsdist]
 * ```
 *
 * @module
 */
import { parseArgs } from "node:util";
import { startUnbound } from "../../tests/servers/unbound.ts";
import {
  cacheRoomFlags,
  cpuSplit,
  dnsdistConfig,
  freePort,
  median,
  startPinned,
  triadCommand,
  writeHitFile,
} from "./_bench_util.ts";
import type { BenchPeer } from "./_bench_util.ts";

const { values: flags } = parseArgs({
  args: Deno.args.filter((arg) => arg !== "--table"),
  options: {
    rounds: { type: "string", default: "1" },
    seconds: { type: "string", default: "3" },
    clients: { type: "string", default: "1000,10000" },
    peers: { type: "string", default: "triad,dnsdist" },
    transports: { type: "string", default: "tcp,udp" },
  },
});
const ROUNDS = Number(flags.rounds);
const SECONDS = Number(flags.seconds);
const CLIENTS = flags.clients.split(",").map(Number);
const TRANSPORTS = flags.transports.split(",") as ("tcp" | "udp")[];
const SERVER_CPU = "0";
const LOAD_CPU = "1";
const TICKS_PER_SECOND = 100;
/** Names in each miss run's file (more than any peer answers in SECONDS). */
const MISS_NAMES = 100_000 * SECONDS;
/** Room in both caches for every miss run's answers. */
const CACHE_ENTRIES = ROUNDS * TRANSPORTS.length * CLIENTS.length * MISS_NAMES + 10_000;

type Peer = BenchPeer;

interface Cell {
  qps: number;
  p99: number;
  lost: number;
  cpuUs: number;
  serverFds: number;
  loadFds: number;
}

const peers: Peer[] = flags.peers.split(",").map((name) => ({ name, port: freePort() }));
for (const peer of peers) {
  if (peer.name !== "triad" && peer.name !== "dnsdist") {
    throw new Error(`Unknown peer "${peer.name}" in --peers (triad, dnsdist)`);
  }
}

/** Open descriptors of a process (0 once it is gone). */
function openFds(pid: number): number {
  try {
    let n = 0;
    for (const _ of Deno.readDirSync(`/proc/${pid}/fd`)) n++;
    return n;
  } catch {
    return 0;
  }
}

/** `ListenOverflows` and `ListenDrops` from /proc/net/netstat (the kernel's, all sockets). */
function listenOverflows(): number {
  const lines = Deno.readTextFileSync("/proc/net/netstat").split("\n");
  for (let i = 0; i + 1 < lines.length; i += 2) {
    if (!lines[i]!.startsWith("TcpExt:")) continue;
    const names = lines[i]!.split(/\s+/);
    const values = lines[i + 1]!.split(/\s+/);
    return Number(values[names.indexOf("ListenOverflows")] ?? 0);
  }
  return 0;
}

const readSysctl = (path: string) => Deno.readTextFileSync(path).trim().replace(/\s+/g, "-");
let sourceAddress = 0;

/** One dnsperf run with `clients` sockets; latencies from `-v`, the peak descriptors polled. */
async function run(
  peer: Peer,
  transport: "tcp" | "udp",
  clients: number,
  file: string,
  dir: string,
): Promise<Cell> {
  const out = `${dir}/v.txt`;
  const address = `127.0.1.${1 + (sourceAddress++ % 250)}`;
  const args = [
    "-c",
    LOAD_CPU,
    "dnsperf",
    "-s",
    "127.0.0.1",
    "-p",
    String(peer.port),
    "-a",
    address,
    "-m",
    transport,
    "-c",
    String(clients),
    // dnsperf opens at most 256 sockets per thread (more clients share them, silently).
    "-T",
    String(Math.ceil(clients / 256)),
    // One query outstanding per client at most: every client is busy, none has two in flight.
    "-q",
    String(clients),
    "-d",
    file,
    "-l",
    String(SECONDS),
    "-t",
    "2",
    "-v",
  ];
  const pid = peer.process!.pid;
  const before = cpuSplit(pid);
  const child = new Deno.Command("sh", {
    args: ["-c", `exec taskset ${args.join(" ")} > ${out} 2>&1`],
  }).spawn();
  let serverFds = openFds(pid);
  let loadFds = 0;
  const poll = setInterval(() => {
    serverFds = Math.max(serverFds, openFds(pid));
    loadFds = Math.max(loadFds, openFds(child.pid));
  }, 250);
  await child.status;
  clearInterval(poll);
  const after = cpuSplit(pid);
  const text = await Deno.readTextFile(out);
  const latencies: number[] = [];
  for (const line of text.split("\n")) {
    const match = /^> \S+ .* ([\d.]+)$/.exec(line);
    if (match !== null) latencies.push(Number(match[1]) * 1000);
  }
  latencies.sort((a, b) => a - b);
  const completed = Number(/Queries completed:\s+(\d+)/.exec(text)?.[1] ?? latencies.length);
  const ticks = after.user + after.system - before.user - before.system;
  return {
    qps: Number(/Queries per second:\s+([\d.]+)/.exec(text)?.[1] ?? NaN),
    p99: latencies[Math.floor(latencies.length * 0.99)] ?? NaN,
    lost: Number(/Queries lost:\s+(\d+)/.exec(text)?.[1] ?? NaN),
    cpuUs: (ticks / TICKS_PER_SECOND) * 1e6 / Math.max(1, completed),
    serverFds,
    loadFds,
  };
}

/** Runs the table and prints it. */
export async function runTable(): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "triad-dnstable-" });
  // dnsdist carries a TCP client's queries to its backend over TCP: unbound must take as many.
  const unbound = await startUnbound({
    cpus: LOAD_CPU,
    socketBuffer: "4m",
    tcpClients: Math.max(...CLIENTS) + 100,
  });
  const overflowsBefore = listenOverflows();
  try {
    const port = (name: string) => peers.find((p) => p.name === name)?.port ?? 0;
    await Deno.writeTextFile(
      `${dir}/dnsdist.conf`,
      // dnsdist queues at most 1,000 TCP connections for its workers by default.
      dnsdistConfig(port("dnsdist"), unbound.address, [
        `setMaxTCPQueuedConnections(${Math.max(...CLIENTS) * 2})`,
      ], CACHE_ENTRIES),
    );
    const commands: Record<string, string[]> = {
      triad: triadCommand(port("triad"), unbound.address, [
        "--backend",
        "auto",
        "--loops",
        "1",
        ...cacheRoomFlags(CACHE_ENTRIES),
      ]),
      dnsdist: ["dnsdist", "--supervised", "--disable-syslog", "-C", `${dir}/dnsdist.conf`],
    };
    await startPinned(peers, commands, SERVER_CPU);
    const hitFile = await writeHitFile(dir);
    const cells = new Map<string, Cell[]>();
    const key = (peer: string, transport: string, clients: number, kind: string) =>
      `${peer} ${transport} ${clients} ${kind}`;
    let files = 0;
    for (let round = 0; round < ROUNDS; round++) {
      for (const transport of TRANSPORTS) {
        for (const clients of CLIENTS) {
          const order = peers.map((_, i) => peers[(i + round) % peers.length]!);
          for (const peer of order) {
            // A fresh set of names per run: every query a miss.
            const missFile = `${dir}/miss-${++files}.txt`;
            await Deno.writeTextFile(
              missFile,
              Array.from({ length: MISS_NAMES }, (_, i) => `t${files}-${i}.bench A\n`)
                .join(""),
            );
            for (const [kind, file] of [["miss", missFile], ["hit", hitFile]] as const) {
              const cell = await run(peer, transport, clients, file, dir);
              const k = key(peer.name, transport, clients, kind);
              cells.set(k, [...(cells.get(k) ?? []), cell]);
              console.error(
                `round ${round + 1} ${peer.name} ${transport} ${clients} ${kind}: ${
                  cell.qps.toFixed(0)
                } q/s, p99 ${cell.p99.toFixed(2)} ms, lost ${cell.lost}`,
              );
            }
            await Deno.remove(missFile);
          }
        }
      }
    }
    const pick = (k: string, f: (c: Cell) => number) => median((cells.get(k) ?? []).map(f));
    const fixed = (x: number, digits: number) => Number.isNaN(x) ? "-" : x.toFixed(digits);
    console.log(
      `\nLoad table: dnsperf, ${ROUNDS} round(s) of ${SECONDS} s per cell (medians), one query in ` +
        `flight per client; servers on CPU ${SERVER_CPU}, dnsperf and unbound on CPU ${LOAD_CPU}`,
    );
    const head = ["transport", "clients", "server", "miss q/s", "miss p99 ms", "hit q/s"];
    head.push("hit p99 ms", "miss CPU us", "lost");
    console.log(head.map((h, i) => i < 3 ? h.padEnd(10) : h.padStart(12)).join(""));
    for (const transport of TRANSPORTS) {
      for (const clients of CLIENTS) {
        for (const peer of peers) {
          const m = key(peer.name, transport, clients, "miss");
          const h = key(peer.name, transport, clients, "hit");
          const cellsOut = [
            fixed(pick(m, (c) => c.qps), 0),
            fixed(pick(m, (c) => c.p99), 2),
            fixed(pick(h, (c) => c.qps), 0),
            fixed(pick(h, (c) => c.p99), 2),
            fixed(pick(m, (c) => c.cpuUs), 1),
            fixed(pick(m, (c) => c.lost) + pick(h, (c) => c.lost), 0),
          ];
          console.log(
            [transport, String(clients), peer.name].map((c) => c.padEnd(10)).join("") +
              cellsOut.map((c) => c.padStart(12)).join(""),
          );
        }
      }
      const ratios = CLIENTS.map((clients) => {
        const t = (kind: string) => pick(key("triad", transport, clients, kind), (c) => c.qps);
        const d = (kind: string) => pick(key("dnsdist", transport, clients, kind), (c) => c.qps);
        return `${clients}: miss ${(t("miss") / d("miss")).toFixed(2)}x, hit ${
          (t("hit") / d("hit")).toFixed(2)
        }x`;
      });
      if (peers.length === 2) {
        console.log(`  triad / dnsdist over ${transport}: ${ratios.join("; ")}`);
      }
    }

    // The limits met on the way, and what lifts each.
    const all = [...cells.values()].flat();
    const serverFds = Math.max(...all.map((c) => c.serverFds));
    const loadFds = Math.max(...all.map((c) => c.loadFds));
    const limit = Deno.readTextFileSync("/proc/self/limits").split("\n")
      .find((l) => l.startsWith("Max open files"))?.split(/\s+/).slice(3, 5) ?? ["?", "?"];
    const somaxconn = readSysctl("/proc/sys/net/core/somaxconn");
    const synBacklog = readSysctl("/proc/sys/net/ipv4/tcp_max_syn_backlog");
    const ports = readSysctl("/proc/sys/net/ipv4/ip_local_port_range");
    const [low, high] = ports.split("-").map(Number);
    const overflows = listenOverflows() - overflowsBefore;
    console.log("\nMachine limits met:");
    console.log(
      `  file descriptors: peak ${serverFds} in a server, ${loadFds} in dnsperf; RLIMIT_NOFILE ` +
        `soft ${limit[0]}, hard ${limit[1]} per process (one descriptor per client: ${
          limit[1]
        } clients at most per process). Lifted by the hard limit: LimitNOFILE= in the systemd ` +
        `unit, or fs.nr_open and /etc/security/limits.conf; here the hard limit cannot be raised.`,
    );
    console.log(
      `  listen queue: net.core.somaxconn ${somaxconn}, net.ipv4.tcp_max_syn_backlog ${synBacklog};` +
        ` ${overflows} listen-queue overflows during the run (TcpExt ListenOverflows: connections` +
        ` dropped while the queue was full, each retried by its client after 1 s). Lifted by ` +
        `sysctl net.core.somaxconn and the listener's backlog.`,
    );
    console.log(
      `  ports: net.ipv4.ip_local_port_range ${ports}, ${high! - low! + 1} ports per source ` +
        `address and destination; each run used a source address of its own (127.0.1.N), so ` +
        `TIME_WAIT ports of a finished run were not reused. Lifted by a wider range, more source` +
        ` addresses, or net.ipv4.tcp_tw_reuse.`,
    );
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
}

if (import.meta.main) await runTable();
