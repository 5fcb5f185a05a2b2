/**
 * `deno task bench:conns`: how many connections an echo server holds and what each costs.
 * Servers: netloop on uring and epoll (one loop), the C epoll server, `Deno.listen`, `node:net`.
 * The load is `conns_load.c` (compiled now with `cc`) in several processes, each from loopback
 * source addresses of its own, one 8-byte message per connection at open and one every 60 s,
 * every echo checked. Per server and N, in interleaved rounds (server pinned to one core, the load
 * to the other): held and lost, connections established per second, server memory per connection
 * (RSS growth over N; kernel slab growth over N, both ends' sockets, halved for the server's
 * share), idle CPU with N held (every server thread's run time from schedstat, in ns, over the
 * `--idle` window: no message flows in it, the load's first periodic one being 60 s after its
 * start), a probe connection's p50/p99 round trip while N are held, the time
 * for one message to all N and every echo back, and the time the server takes to stop. N steps up
 * to what this process's descriptor limit allows; the bench says which limit stopped it.
 *
 * Usage: deno task bench:conns [--steps 5000,19000] [--rounds 2] [--idle 5] [--only NAME,...]
 *
 * @module
 */
import { parseArgs } from "node:util";
import { compileC } from "../../tests/servers/compile_c.ts";
import { checkLimits } from "../limits.ts";
import { buildLoadTool, killed, listening, LoadFleet, median, rssKiB } from "./conns_load.ts";
import { threadsBetween, threadStats } from "./_util.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    steps: { type: "string" },
    rounds: { type: "string", default: "2" },
    idle: { type: "string", default: "5" },
    only: { type: "string" },
    "server-cpu": { type: "string", default: "1" },
    "client-cpu": { type: "string", default: "0" },
  },
});
const here = new URL(".", import.meta.url).pathname;
const deno = Deno.execPath();
const rounds = Number(values.rounds);
const idleSeconds = Number(values.idle);
/** Descriptors a server needs beyond its connections (runtime, loops, reserve). */
const OVERHEAD = 200;

const dir = await Deno.makeTempDir({ prefix: "netloop-conns-" });
const tool = await buildLoadTool(dir);
const cEcho = `${dir}/epoll_echo`;
await compileC(`${here}epoll_echo.c`, cEcho);

interface Server {
  name: string;
  command(port: number): string[];
  /** Answers `heap` on stdin with `heap BYTES` (its Deno heap, after a full collection). */
  heap?: boolean;
}

const gcFlag = "--v8-flags=--expose-gc";
const netloop = (backend: string): Server => ({
  name: `netloop ${backend}`,
  command: (port) => [deno, "run", "-A", gcFlag, `${here}conns_server.ts`, String(port), backend],
  heap: true,
});
const servers: Server[] = [
  netloop("uring"),
  netloop("epoll"),
  { name: "C epoll", command: (p: number) => [cEcho, String(p)] },
  {
    name: "Deno.listen",
    command: (p: number) => [
      deno,
      "run",
      "--allow-net",
      "--allow-read",
      gcFlag,
      `${here}deno_echo.ts`,
      String(p),
      "heap",
    ],
    heap: true,
  },
  {
    name: "node:net",
    command: (p: number) => [
      deno,
      "run",
      "--allow-net",
      "--allow-env",
      "--allow-read",
      gcFlag,
      `${here}node_echo.mjs`,
      String(p),
      "heap",
    ],
    heap: true,
  },
].filter((s) =>
  values.only === undefined || values.only.split(",").some((o) => s.name.includes(o))
);

// What stops N: this process's descriptor limit (servers inherit it), less their own needs.
const soft = Number(
  /^Max open files\s+(\d+)/m.exec(Deno.readTextFileSync("/proc/self/limits"))![1],
);
const maxN = Math.floor((soft - OVERHEAD) / 1000) * 1000;
const steps = values.steps === undefined
  ? [5000, maxN]
  : values.steps.split(",").map(Number).filter((n) => n <= maxN);
const beyond = checkLimits({ connections: 1_000_000 }).filter((c) => !c.ok);

function slabKiB(): number {
  return Number(/^Slab:\s+(\d+)/m.exec(Deno.readTextFileSync("/proc/meminfo"))![1]);
}

interface Sample {
  held: number;
  lost: number;
  failed: number;
  rate: number;
  rssPerConn: number;
  /** The Deno heap's growth per connection (NaN for the C server). */
  heapPerConn: number;
  slabPerConn: number;
  idleCpu: number;
  p50: number;
  p99: number;
  allMs: number;
  stopMs: number;
  loadCpu: number;
}

/** The load's message interval per connection (s): its first comes this long after its start. */
const BEAT_S = 60;

let port = 21000 + Math.floor(Math.random() * 4000);

/** Asks a server started with `heap` for its Deno heap; the stdout lines are read by `lines`. */
async function heapOf(
  child: Deno.ChildProcess,
  lines: AsyncIterator<string>,
): Promise<number> {
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode("heap\n"));
  writer.releaseLock();
  for (;;) {
    const { value, done } = await lines.next();
    if (done) throw new Error("the server ended before reporting its heap");
    const match = /^heap (\d+)$/.exec(value.trim());
    if (match) return Number(match[1]);
  }
}

async function* linesOf(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  let buffered = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    buffered += chunk;
    for (let at = buffered.indexOf("\n"); at >= 0; at = buffered.indexOf("\n")) {
      yield buffered.slice(0, at);
      buffered = buffered.slice(at + 1);
    }
  }
}

async function measure(server: Server, n: number): Promise<Sample> {
  port++;
  const child = new Deno.Command("taskset", {
    args: ["-c", values["server-cpu"]!, ...server.command(port)],
    stdin: server.heap ? "piped" : "null",
    stdout: server.heap ? "piped" : "null",
    stderr: "null",
  }).spawn();
  const lines = server.heap ? linesOf(child.stdout) : undefined;
  const heap = () => lines === undefined ? Promise.resolve(NaN) : heapOf(child, lines);
  try {
    await listening(port);
    // Let the runtime settle (JIT, first GC) before the baseline.
    await new Promise((r) => setTimeout(r, 1000));
    const rss0 = rssKiB(child.pid);
    const slab0 = slabKiB();
    const heap0 = await heap();
    const fleetStart = performance.now();
    await using fleet = LoadFleet.start(tool, port, n, {
      processes: 4,
      interval: BEAT_S,
      cpu: values["client-cpu"]!,
    });
    const opened = await fleet.opened();
    await new Promise((r) => setTimeout(r, 1000));
    const rss1 = rssKiB(child.pid);
    const slab1 = slabKiB();
    const heap1 = await heap();
    // The heap report woke the loop and forced a full collection: let both settle.
    await new Promise((r) => setTimeout(r, 2000));
    const threads0 = threadStats(child.pid);
    const t0 = performance.now();
    await new Promise((r) => setTimeout(r, idleSeconds * 1000));
    const idleCpu = threadsBetween(threads0, threadStats(child.pid)).ns / 1e9 /
      ((performance.now() - t0) / 1000);
    if (performance.now() - fleetStart > BEAT_S * 1000) {
      console.error(
        `${server.name} N=${n}: the idle window reached the load's first periodic message ` +
          `(${BEAT_S} s after its start): idle CPU includes some traffic`,
      );
    }
    const probe = await fleet.probe(1000);
    const all = await fleet.ping();
    const stats = await fleet.stats();
    const stopStart = performance.now();
    child.kill("SIGTERM");
    await child.status;
    const stopMs = performance.now() - stopStart;
    return {
      held: opened.held,
      lost: stats.lost,
      failed: opened.failed,
      rate: opened.rate,
      rssPerConn: (rss1 - rss0) * 1024 / opened.held,
      heapPerConn: (heap1 - heap0) / opened.held,
      slabPerConn: (slab1 - slab0) * 1024 / opened.held / 2,
      idleCpu,
      p50: probe.p50,
      p99: probe.p99,
      allMs: all.ms,
      stopMs,
      loadCpu: stats.cpu,
    };
  } finally {
    await killed(child);
    if (server.heap) await child.stdin.close().catch(() => {});
  }
}

const range = (xs: number[], digits = 0) =>
  `${Math.min(...xs).toFixed(digits)}-${Math.max(...xs).toFixed(digits)}`;

console.log(
  `bench:conns ${new Date().toISOString()}: N steps ${steps.join(", ")}, ${rounds} interleaved ` +
    `round(s), load on CPU ${values["client-cpu"]}, servers on CPU ${values["server-cpu"]}`,
);
console.log(
  `N stops at ${maxN.toLocaleString("en-US")}: RLIMIT_NOFILE ${soft} (less ${OVERHEAD} for the ` +
    `server's own descriptors); for 1,000,000 this machine would need: ` +
    (beyond.map((c) => `${c.name} (${c.value}): ${c.fix}`).join("; ") || "nothing more"),
);
const results = new Map<string, Sample[]>();
for (let round = 0; round < rounds; round++) {
  for (const n of steps) {
    for (const server of servers) {
      const key = `${server.name}|${n}`;
      try {
        const sample = await measure(server, n);
        (results.get(key) ?? results.set(key, []).get(key)!).push(sample);
        console.error(`round ${round + 1} ${server.name} N=${n}: ${JSON.stringify(sample)}`);
      } catch (error) {
        console.error(`round ${round + 1} ${server.name} N=${n}: failed: ${error}`);
      }
    }
  }
}

console.log(
  "\n| server | N | held/lost | conns/s | RSS B/conn | Deno heap B/conn | slab B/conn (server) | idle CPU | probe p50/p99 µs | all N echo ms | stop ms |",
);
console.log("|---|---|---|---|---|---|---|---|---|---|---|");
for (const n of steps) {
  for (const server of servers) {
    const samples = results.get(`${server.name}|${n}`) ?? [];
    if (samples.length === 0) continue;
    const m = (f: (s: Sample) => number, digits = 0) =>
      `${median(samples.map(f)).toFixed(digits)} (${range(samples.map(f), digits)})`;
    console.log(
      `| ${server.name} | ${n} | ${median(samples.map((s) => s.held))}/${
        Math.max(...samples.map((s) => s.lost))
      } | ${m((s) => s.rate)} | ${m((s) => s.rssPerConn)} | ${
        samples.some((s) => Number.isNaN(s.heapPerConn)) ? "-" : m((s) => s.heapPerConn)
      } | ${m((s) => s.slabPerConn)} | ${m((s) => s.idleCpu * 100, 3)}% | ${
        median(samples.map((s) => s.p50))
      }/${m((s) => s.p99)} | ${m((s) => s.allMs)} | ${m((s) => s.stopMs)} |`,
    );
  }
}
// Memory for 1,000,000 from the slope between the smallest and largest N (RSS and slab).
if (steps.length > 1) {
  const [lo, hi] = [steps[0]!, steps[steps.length - 1]!];
  console.log("\nSlope between N = " + lo + " and " + hi + ", projected to 1,000,000 connections:");
  for (const server of servers) {
    const a = results.get(`${server.name}|${lo}`);
    const b = results.get(`${server.name}|${hi}`);
    if (!a?.length || !b?.length) continue;
    const rss = (median(b.map((s) =>
      s.rssPerConn * s.held
    )) - median(a.map((s) => s.rssPerConn * s.held))) /
      (hi - lo);
    const slab = (median(b.map((s) => s.slabPerConn * s.held)) -
      median(a.map((s) => s.slabPerConn * s.held))) / (hi - lo);
    const heap = (median(b.map((s) => s.heapPerConn * s.held)) -
      median(a.map((s) => s.heapPerConn * s.held))) / (hi - lo);
    console.log(
      `  ${server.name}: ${rss.toFixed(0)} B RSS (of it ${
        Number.isNaN(heap) ? "no Deno heap" : `${heap.toFixed(0)} B Deno heap`
      }) + ${slab.toFixed(0)} B slab per connection -> ` +
        `${((rss + slab) * 1e6 / 2 ** 30).toFixed(1)} GiB for the server's side`,
    );
  }
}
await Deno.remove(dir, { recursive: true });
