/**
 * netloop echo benchmark: compiles a C load generator and a single-threaded C epoll echo server
 * (with `cc`, into a temp dir, at bench time), then drives, in interleaved rounds, netloop on each
 * backend, a `Deno.listen` echo, a `node:net` echo and the C server (TCP), and netloop, a
 * `Deno.listenDatagram` echo and the C server (UDP). One loop each; the server is pinned to one
 * core and the load generator to the other with `taskset`. Prints medians side by side:
 * messages per second, server CPU microseconds per message (every thread's run time from
 * /proc/PID/task/TID/schedstat, in ns; the user part from 10 ms ticks) and the server's wake-ups
 * per message (times its threads were scheduled in: 1 per message is a wake-up each).
 * The fixed-rate TCP scenarios hold every server at the same load (the load generator paces its
 * bursts), so their CPU per message compares servers even where the closed-loop rows are
 * client-bound.
 *
 * Usage: deno task bench:netloop [--rounds 3] [--seconds 3] [--warmup 1] [--only tcp|udp]
 *   [--servers "netloop uring,C epoll"] [--scenarios "16 in flight"] [--rate-1 60000]
 *   [--rate-16 800000] [--tls [--server-warmup 15] [--baseline OTHER_CHECKOUT]]
 * (`--tls`: the TLS rows instead, see run_tls.ts)
 *
 * @module
 */
import { parseArgs } from "node:util";
import dgram from "node:dgram";
import { compileC } from "../../tests/servers/compile_c.ts";
import { echoCommand } from "./conns_load.ts";
import { cpuTicks, median, stop, threadsBetween, threadStats } from "./_util.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    rounds: { type: "string", default: "3" },
    seconds: { type: "string", default: "3" },
    warmup: { type: "string", default: "1" },
    only: { type: "string" },
    /** Comma-separated server names to run (default: all). */
    servers: { type: "string" },
    /** Only scenarios whose name contains this. */
    scenarios: { type: "string" },
    /** Fixed rates (msgs/s over all connections) of the fixed-rate scenarios, 1 and 16 in flight. */
    "rate-1": { type: "string", default: "60000" },
    "rate-16": { type: "string", default: "800000" },
    "server-cpu": { type: "string", default: "1" },
    "client-cpu": { type: "string", default: "0" },
    tls: { type: "boolean", default: false },
    /** With --tls: another checkout whose netloop uring runs too, for an A/B. */
    baseline: { type: "string" },
    /** With --tls: seconds of full handshakes each server process serves before it is measured. */
    "server-warmup": { type: "string", default: "15" },
  },
});
if (values.tls) {
  const { runTls } = await import("./run_tls.ts");
  await runTls({
    rounds: Number(values.rounds),
    seconds: Number(values.seconds),
    warmup: Number(values.warmup),
    serverWarmup: Number(values["server-warmup"]),
    serverCpu: values["server-cpu"]!,
    clientCpu: values["client-cpu"]!,
    servers: values.servers?.split(",").map((name) => name.trim()),
    scenarios: values.scenarios,
    baseline: values.baseline,
  });
  Deno.exit(0);
}
const rounds = Number(values.rounds);
const seconds = Number(values.seconds);
const warmup = Number(values.warmup);
const here = new URL(".", import.meta.url).pathname;
const deno = Deno.execPath();
const CLK_TCK = 100;

interface Server {
  name: string;
  network: "tcp" | "udp";
  command(port: number): string[];
}

interface Scenario {
  name: string;
  network: "tcp" | "udp";
  conns: number;
  depth: number;
  size: number;
  /** A fixed rate (msgs/s) the load generator paces itself to; absent: closed loop. */
  rate?: number;
}

function netloop(backend: string, network: "tcp" | "udp"): Server {
  return {
    name: `netloop ${backend}`,
    network,
    command: (port) => echoCommand(backend, port, network === "udp"),
  };
}

const dir = await Deno.makeTempDir({ prefix: "netloop-bench-" });
const loadgen = `${dir}/loadgen`;
const cEcho = `${dir}/epoll_echo`;
await compileC(`${here}loadgen.c`, loadgen);
await compileC(`${here}epoll_echo.c`, cEcho);

const allServers: Server[] = [
  netloop("uring", "tcp"),
  netloop("epoll", "tcp"),
  netloop("portable", "tcp"),
  {
    name: "Deno.listen",
    network: "tcp",
    command: (p) => [deno, "run", "--allow-net", `${here}deno_echo.ts`, String(p)],
  },
  {
    name: "node:net",
    network: "tcp",
    command: (p) => [deno, "run", "--allow-net", "--allow-env", `${here}node_echo.mjs`, String(p)],
  },
  { name: "C epoll", network: "tcp", command: (p) => [cEcho, String(p)] },
  netloop("uring", "udp"),
  netloop("epoll", "udp"),
  {
    name: "Deno.listenDatagram",
    network: "udp",
    command: (p) => [
      deno,
      "run",
      "--allow-net",
      "--unstable-net",
      `${here}deno_echo.ts`,
      String(p),
      "udp",
    ],
  },
  { name: "C epoll", network: "udp", command: (p) => [cEcho, String(p), "udp"] },
];
const wanted = values.servers?.split(",").map((name) => name.trim());
const servers = allServers.filter((s) =>
  (values.only === undefined || s.network === values.only) &&
  (wanted === undefined || wanted.includes(s.name))
);
const rate1 = Number(values["rate-1"]);
const rate16 = Number(values["rate-16"]);

const scenarios: Scenario[] = ([
  { name: "TCP 50 conns x 64 B, 1 in flight", network: "tcp", conns: 50, depth: 1, size: 64 },
  { name: "TCP 50 conns x 64 B, 16 in flight", network: "tcp", conns: 50, depth: 16, size: 64 },
  { name: "TCP 1000 conns x 64 B, 1 in flight", network: "tcp", conns: 1000, depth: 1, size: 64 },
  {
    name: `TCP 50 conns x 64 B, 1 in flight, fixed ${rate1} msg/s`,
    network: "tcp",
    conns: 50,
    depth: 1,
    size: 64,
    rate: rate1,
  },
  {
    name: `TCP 50 conns x 64 B, 16 in flight, fixed ${rate16} msg/s`,
    network: "tcp",
    conns: 50,
    depth: 16,
    size: 64,
    rate: rate16,
  },
  { name: "UDP 50 sockets x 64 B, 1 in flight", network: "udp", conns: 50, depth: 1, size: 64 },
  { name: "UDP 50 sockets x 64 B, 16 in flight", network: "udp", conns: 50, depth: 16, size: 64 },
] as Scenario[]).filter((s) =>
  (values.only === undefined || s.network === values.only) &&
  (values.scenarios === undefined || s.name.includes(values.scenarios))
);

async function ready(network: "tcp" | "udp", port: number): Promise<void> {
  const until = Date.now() + 15_000;
  while (Date.now() < until) {
    if (network === "tcp") {
      try {
        (await Deno.connect({ hostname: "127.0.0.1", port })).close();
        return;
      } catch { /* not yet */ }
    } else {
      const socket = dgram.createSocket("udp4");
      const ok = await new Promise<boolean>((resolve) => {
        socket.once("message", () => resolve(true));
        socket.on("error", () => resolve(false));
        socket.bind(0, "127.0.0.1", () => socket.send(new Uint8Array([1]), port, "127.0.0.1"));
        setTimeout(() => resolve(false), 200);
      });
      await new Promise<void>((resolve) => socket.close(() => resolve()));
      if (ok) return;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`server on ${network} port ${port} did not come up`);
}

interface Sample {
  rate: number;
  cpuPerMessage: number;
  /** The user-space part of cpuPerMessage (the rest is the kernel's; from 10 ms ticks). */
  userPerMessage: number;
  /** Times the server's threads were scheduled in, per message (wake-ups: one per batch). */
  wakesPerMessage: number;
  /** The load generator's CPU over the window, as a share of one core (near 1: it is the limit). */
  clientBusy: number;
}

const results = new Map<string, Sample[]>();
let port = 17200 + Math.floor(Math.random() * 2000);
const running = new Set<Deno.ChildProcess>();

async function measure(server: Server, scenario: Scenario, pid: number): Promise<Sample> {
  const client = new Deno.Command("taskset", {
    args: [
      "-c",
      values["client-cpu"]!,
      loadgen,
      scenario.network,
      "127.0.0.1",
      String(port),
      String(scenario.conns),
      String(scenario.depth),
      String(scenario.size),
      String(seconds),
      String(warmup),
      ...(scenario.rate === undefined ? [] : [String(scenario.rate)]),
    ],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  await new Promise((r) => setTimeout(r, warmup * 1000));
  const cpu0 = cpuTicks(pid);
  const threads0 = threadStats(pid);
  const t0 = performance.now();
  const output = await client.output();
  const cpu1 = cpuTicks(pid);
  const used = threadsBetween(threads0, threadStats(pid));
  const elapsed = (performance.now() - t0) / 1000;
  const text = new TextDecoder().decode(output.stdout);
  const msgs = Number(/msgs=(\d+)/.exec(text)?.[1] ?? 0);
  if (!output.success || msgs === 0) {
    throw new Error(
      `${server.name} / ${scenario.name}: load generator failed: ${text}` +
        new TextDecoder().decode(output.stderr),
    );
  }
  const rate = msgs / seconds;
  // CPU over the measured window (plus the short tail until the client exits), per message.
  const perMessage = (ticks: number) => (ticks / CLK_TCK / (rate * elapsed)) * 1e6;
  return {
    rate,
    cpuPerMessage: used.ns / 1e3 / (rate * elapsed),
    userPerMessage: perMessage(cpu1.user - cpu0.user),
    wakesPerMessage: used.runs / (rate * elapsed),
    clientBusy: Number(/cpu=([\d.]+)/.exec(text)?.[1] ?? NaN) / seconds,
  };
}

try {
  for (let round = 1; round <= rounds; round++) {
    for (const server of servers) {
      port++;
      const child = new Deno.Command("taskset", {
        args: ["-c", values["server-cpu"]!, ...server.command(port)],
        stdout: "null",
        stderr: "null",
      }).spawn();
      running.add(child);
      try {
        await ready(server.network, port);
        for (const scenario of scenarios) {
          if (scenario.network !== server.network) continue;
          let sample: Sample;
          try {
            sample = await measure(server, scenario, child.pid);
          } catch (error) {
            // A failed run (say, no free ephemeral port for the client) is reported, not counted.
            console.error(`round ${round}: ${server.name} ${scenario.name}: ${error}`);
            continue;
          }
          const key = `${scenario.name}\u0000${server.name}`;
          results.set(key, [...(results.get(key) ?? []), sample]);
          console.error(
            `round ${round}: ${server.name.padEnd(20)} ${scenario.name.padEnd(36)} ` +
              `${Math.round(sample.rate)} msg/s, ${sample.cpuPerMessage.toFixed(2)} us/msg ` +
              `(user ${sample.userPerMessage.toFixed(2)}), ${
                sample.wakesPerMessage.toFixed(3)
              } wakes/msg, ` +
              `client ` +
              `${(sample.clientBusy * 100).toFixed(0)}% busy`,
          );
        }
      } catch (error) {
        console.error(`round ${round}: ${server.name}: ${error}`);
      } finally {
        await stop(child);
        running.delete(child);
      }
    }
  }
} finally {
  for (const child of running) await stop(child);
  await Deno.remove(dir, { recursive: true });
}

console.log(
  `\nnetloop echo benchmark: ${rounds} interleaved rounds, ${seconds} s each after ${warmup} s ` +
    `warm-up, one loop, server on CPU ${values["server-cpu"]}, load on CPU ` +
    `${values["client-cpu"]}; medians`,
);
for (const scenario of scenarios) {
  const rows = servers.filter((s) => s.network === scenario.network).map((server) => {
    const samples = results.get(`${scenario.name}\u0000${server.name}`) ?? [];
    return {
      name: server.name,
      runs: samples.length,
      rate: median(samples.map((s) => s.rate)),
      cpu: median(samples.map((s) => s.cpuPerMessage)),
      user: median(samples.map((s) => s.userPerMessage)),
      wakes: median(samples.map((s) => s.wakesPerMessage)),
      client: median(samples.map((s) => s.clientBusy)),
    };
  });
  const cRow = rows.find((r) => r.name === "C epoll");
  const dRow = rows.find((r) =>
    r.name === (scenario.network === "tcp" ? "Deno.listen" : "Deno.listenDatagram")
  );
  const ratio = (a: number, b: number | undefined) =>
    b === undefined || !Number.isFinite(a) || !Number.isFinite(b) ? "-" : `${(a / b).toFixed(2)}x`;
  console.log(`\n${scenario.name}`);
  console.log(
    `  ${"server".padEnd(22)}${"runs".padStart(5)}${"msgs/s".padStart(10)}` +
      `${"vs C epoll".padStart(12)}${
        (scenario.network === "tcp" ? "vs Deno.listen" : "vs listenDatagram").padStart(19)
      }` +
      `${"CPU us/msg".padStart(12)}${"CPU vs C".padStart(10)}${"user us".padStart(9)}` +
      `${"wakes/msg".padStart(11)}` +
      `${"client busy".padStart(13)}`,
  );
  for (const row of rows) {
    console.log(
      `  ${row.name.padEnd(22)}${String(row.runs).padStart(5)}` +
        `${(Number.isFinite(row.rate) ? Math.round(row.rate).toString() : "-").padStart(10)}` +
        `${ratio(row.rate, cRow?.rate).padStart(12)}${ratio(row.rate, dRow?.rate).padStart(19)}` +
        `${(Number.isFinite(row.cpu) ? row.cpu.toFixed(2) : "-").padStart(12)}` +
        `${ratio(row.cpu, cRow?.cpu).padStart(10)}` +
        `${(Number.isFinite(row.user) ? row.user.toFixed(2) : "-").padStart(9)}` +
        `${(Number.isFinite(row.wakes) ? row.wakes.toFixed(3) : "-").padStart(11)}` +
        `${(Number.isFinite(row.client) ? `${(row.client * 100).toFixed(0)}%` : "-").padStart(13)}`,
    );
  }
  if (scenario.rate !== undefined) {
    const short = rows.filter((row) => row.rate < scenario.rate! * 0.97).map((row) => row.name);
    if (short.length > 0) {
      console.log(
        `  below the fixed rate (under 97% of it): ${short.join(", ")}; their CPU us/msg is at ` +
          "their own ceiling, not comparable",
      );
    }
    continue;
  }
  const clientBound = rows.filter((row) => row.client >= 0.95).map((row) => row.name);
  if (clientBound.length > 0) {
    console.log(
      `  client-bound (load generator >= 95% busy): ${clientBound.join(", ")}; their msgs/s is ` +
        "the client's ceiling, CPU us/msg is their cost",
    );
  }
}
