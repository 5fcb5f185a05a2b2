/**
 * `deno task bench:netloop --tls`: netloop's TLS (uring, epoll) against a C OpenSSL+epoll echo
 * server, `Deno.listenTls` (rustls) and `node:tls`, driven by one C OpenSSL load generator
 * (forked processes, blocking sockets). Interleaved rounds, medians; server and load generator
 * pinned to different cores. Rows: full and resumed handshakes/s, echo of 64 B at depth 1 and 16,
 * 16 KiB echo throughput; each with the server's CPU per operation (every thread's run time from
 * schedstat, in ns; its user part from 10 ms ticks) and the load generator's own CPU. Every server
 * process first serves `--server-warmup` seconds of full handshakes (default 15), unmeasured, and
 * each scenario then runs `--warmup` seconds unmeasured: a JIT-compiled server reaches its steady
 * state later than a C one (netloop's CPU per full handshake falls by 15-20% over its first 15 s,
 * while V8 moves its hot functions from Maglev to TurboFan; the C server's does not move), and the
 * figures are a long-running server's. Needs libssl-dev (headers) to compile the C peers, and the
 * openssl CLI for the certificate.
 *
 * @module
 */
import { compileC } from "../../tests/servers/compile_c.ts";
import { cpuTicks, median, stop, threadsBetween, threadStats } from "./_util.ts";

/** What run.ts passes on. */
export interface TlsBenchOptions {
  rounds: number;
  seconds: number;
  warmup: number;
  /** Seconds of full handshakes each server process serves, unmeasured, before its scenarios. */
  serverWarmup: number;
  serverCpu: string;
  clientCpu: string;
  /** Only these servers (by name), and only scenarios whose name contains `scenarios`. */
  servers?: string[] | undefined;
  scenarios?: string | undefined;
  /** Another checkout whose netloop backends run beside this one as "netloop uring (baseline)". */
  baseline?: string | undefined;
}

interface Server {
  name: string;
  command(port: number, cert: string, key: string): string[];
}

interface Scenario {
  name: string;
  mode: "full" | "resumed" | "echo";
  procs: number;
  depth: number;
  size: number;
  unit: string;
}

interface Sample {
  rate: number;
  cpuPerOp: number;
  userPerOp: number;
  clientBusy: number;
}

const here = new URL(".", import.meta.url).pathname;
const deno = Deno.execPath();
const CLK_TCK = 100;

const SCENARIOS: Scenario[] = [
  { name: "full handshakes, 8 clients", mode: "full", procs: 8, depth: 1, size: 1, unit: "hs" },
  {
    name: "resumed handshakes, 8 clients",
    mode: "resumed",
    procs: 8,
    depth: 1,
    size: 1,
    unit: "hs",
  },
  {
    name: "echo 64 B, 16 conns, depth 1",
    mode: "echo",
    procs: 16,
    depth: 1,
    size: 64,
    unit: "msg",
  },
  {
    name: "echo 64 B, 16 conns, depth 16",
    mode: "echo",
    procs: 16,
    depth: 16,
    size: 64,
    unit: "msg",
  },
  {
    name: "echo 16 KiB, 4 conns, depth 1",
    mode: "echo",
    procs: 4,
    depth: 1,
    size: 16384,
    unit: "msg",
  },
];

/** The load each server process warms up on (`--server-warmup`). */
const FULL_HANDSHAKES = SCENARIOS.find((s) => s.mode === "full")!;

async function ready(port: number): Promise<void> {
  const until = Date.now() + 15_000;
  while (Date.now() < until) {
    try {
      (await Deno.connect({ hostname: "127.0.0.1", port })).close();
      return;
    } catch { /* not yet */ }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`server on port ${port} did not come up`);
}

async function makeCert(dir: string): Promise<{ ca: string; cert: string; key: string }> {
  const run = async (args: string[]) => {
    const out = await new Deno.Command("openssl", {
      args,
      cwd: dir,
      stdout: "null",
      stderr: "piped",
    })
      .output();
    if (!out.success) {
      throw new Error(`openssl ${args[0]}: ${new TextDecoder().decode(out.stderr)}`);
    }
  };
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
  await run([
    "req",
    "-x509",
    ...ec,
    "-keyout",
    "ca.key",
    "-out",
    "ca.pem",
    "-days",
    "2",
    "-subj",
    "/CN=bench CA",
  ]);
  await Deno.writeTextFile(`${dir}/ext`, "subjectAltName=DNS:localhost,IP:127.0.0.1\n");
  await run([
    "req",
    ...ec,
    "-keyout",
    "server.key",
    "-out",
    "server.csr",
    "-subj",
    "/CN=localhost",
  ]);
  await run([
    "x509",
    "-req",
    "-in",
    "server.csr",
    "-CA",
    "ca.pem",
    "-CAkey",
    "ca.key",
    "-CAcreateserial",
    "-out",
    "server.pem",
    "-days",
    "2",
    "-extfile",
    "ext",
  ]);
  return { ca: `${dir}/ca.pem`, cert: `${dir}/server.pem`, key: `${dir}/server.key` };
}

/**
 * Runs the TLS rows and prints the medians.
 *
 * @param options Rounds, seconds and cores.
 */
export async function runTls(options: TlsBenchOptions): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "netloop-bench-tls-" });
  const running = new Set<Deno.ChildProcess>();
  const results = new Map<string, Sample[]>();
  let port = 19200 + Math.floor(Math.random() * 2000);
  try {
    const loadgen = `${dir}/tls_loadgen`;
    const cServer = `${dir}/tls_echo`;
    await compileC(`${here}tls_loadgen.c`, loadgen, ["ssl", "crypto"]);
    await compileC(`${here}tls_echo.c`, cServer, ["ssl", "crypto"]);
    const pair = await makeCert(dir);
    const netloop = (backend: string, tree?: string): Server => ({
      name: tree === undefined ? `netloop ${backend}` : `netloop ${backend} (baseline)`,
      command: (p, cert, key) => [
        deno,
        "run",
        "-A",
        tree === undefined ? `${here}../examples/echo.ts` : `${tree}/netloop/examples/echo.ts`,
        "--port",
        String(p),
        "--backend",
        backend,
        "--loops",
        "1",
        "--tls-cert",
        cert,
        "--tls-key",
        key,
      ],
    });
    const baseline = options.baseline;
    const allServers: Server[] = [
      ...(baseline === undefined ? [] : [netloop("uring", baseline), netloop("epoll", baseline)]),
      netloop("uring"),
      netloop("epoll"),
      {
        name: "Deno.listenTls",
        command: (
          p,
          c,
          k,
        ) => [
          deno,
          "run",
          "--allow-net",
          "--allow-read",
          `${here}deno_tls_echo.ts`,
          String(p),
          c,
          k,
        ],
      },
      {
        name: "node:tls",
        command: (p, c, k) => [
          deno,
          "run",
          "--allow-net",
          "--allow-read",
          "--allow-env",
          `${here}node_tls_echo.mjs`,
          String(p),
          c,
          k,
        ],
      },
      { name: "C OpenSSL epoll", command: (p, c, k) => [cServer, String(p), c, k] },
    ];
    const servers = allServers.filter((s) =>
      options.servers === undefined || options.servers.includes(s.name.replace(" (baseline)", ""))
    );
    const scenarios = SCENARIOS.filter((s) =>
      options.scenarios === undefined || s.name.includes(options.scenarios)
    );
    for (let round = 1; round <= options.rounds; round++) {
      for (const server of servers) {
        port++;
        const child = new Deno.Command("taskset", {
          args: ["-c", options.serverCpu, ...server.command(port, pair.cert, pair.key)],
          stdout: "null",
          stderr: "null",
        }).spawn();
        running.add(child);
        try {
          await ready(port);
          const load = (scenario: Scenario, seconds: number, warmup: number) =>
            new Deno.Command("taskset", {
              args: [
                "-c",
                options.clientCpu,
                loadgen,
                scenario.mode,
                "127.0.0.1",
                String(port),
                String(scenario.procs),
                String(scenario.depth),
                String(scenario.size),
                String(seconds),
                String(warmup),
                pair.ca,
              ],
              stdout: "piped",
              stderr: "piped",
            }).spawn();
          if (options.serverWarmup > 0) {
            const warm = await load(FULL_HANDSHAKES, options.serverWarmup, 0).output();
            if (!warm.success) {
              throw new Error(`warm-up load failed: ${new TextDecoder().decode(warm.stderr)}`);
            }
          }
          for (const scenario of scenarios) {
            const client = load(scenario, options.seconds, options.warmup);
            await new Promise((r) => setTimeout(r, options.warmup * 1000));
            const cpu0 = cpuTicks(child.pid);
            const threads0 = threadStats(child.pid);
            const t0 = performance.now();
            const output = await client.output();
            const used = threadsBetween(threads0, threadStats(child.pid));
            const cpu1 = cpuTicks(child.pid);
            const elapsed = (performance.now() - t0) / 1000;
            const text = new TextDecoder().decode(output.stdout);
            const ops = Number(/ops=(\d+)/.exec(text)?.[1] ?? 0);
            if (!output.success || ops === 0) {
              console.error(
                `round ${round}: ${server.name} / ${scenario.name}: load generator failed: ${text}` +
                  new TextDecoder().decode(output.stderr).slice(0, 400),
              );
              continue;
            }
            const rate = ops / options.seconds;
            const perOp = (seconds: number) => (seconds / (rate * elapsed)) * 1e6;
            const sample: Sample = {
              rate,
              // All of the server's threads, in ns (schedstat); the user part from 10 ms ticks.
              cpuPerOp: perOp(used.ns / 1e9),
              userPerOp: perOp((cpu1.user - cpu0.user) / CLK_TCK),
              clientBusy: Number(/cpu=([\d.]+)/.exec(text)?.[1] ?? NaN) / options.seconds,
            };
            const key = `${scenario.name}\u0000${server.name}`;
            results.set(key, [...(results.get(key) ?? []), sample]);
            const reused = /reused=(\d+)/.exec(text)?.[1];
            console.error(
              `round ${round}: ${server.name.padEnd(24)} ${scenario.name.padEnd(32)} ` +
                `${Math.round(rate)} ${scenario.unit}/s, ${sample.cpuPerOp.toFixed(1)} us/op ` +
                `(user ${sample.userPerOp.toFixed(1)}), client ${
                  (sample.clientBusy * 100).toFixed(0)
                }%` +
                (scenario.mode === "resumed" ? `, reused ${reused}/${ops}` : ""),
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
    console.log(
      `\nnetloop TLS benchmark: ${options.rounds} interleaved rounds, ${options.seconds} s each ` +
        `after ${options.warmup} s warm-up, each server process after ${options.serverWarmup} s ` +
        `of full handshakes, one loop, server on CPU ${options.serverCpu}, load on ` +
        `CPU ${options.clientCpu}; medians`,
    );
    for (const scenario of scenarios) {
      const rows = servers.map((server) => {
        const samples = results.get(`${scenario.name}\u0000${server.name}`) ?? [];
        return {
          name: server.name,
          runs: samples.length,
          rate: median(samples.map((s) => s.rate)),
          cpu: median(samples.map((s) => s.cpuPerOp)),
          user: median(samples.map((s) => s.userPerOp)),
          client: median(samples.map((s) => s.clientBusy)),
        };
      });
      const c = rows.find((r) => r.name === "C OpenSSL epoll");
      const d = rows.find((r) => r.name === "Deno.listenTls");
      const ratio = (a: number, b: number | undefined) =>
        b === undefined || !Number.isFinite(a) || !Number.isFinite(b)
          ? "-"
          : `${(a / b).toFixed(2)}x`;
      const num = (v: number, digits: number) => Number.isFinite(v) ? v.toFixed(digits) : "-";
      console.log(`\n${scenario.name}`);
      console.log(
        `  ${"server".padEnd(26)}${"runs".padStart(5)}${`${scenario.unit}/s`.padStart(10)}` +
          `${"vs C".padStart(8)}${"vs listenTls".padStart(14)}${"CPU us/op".padStart(11)}` +
          `${"CPU vs C".padStart(10)}${"user us".padStart(9)}${"client busy".padStart(13)}`,
      );
      for (const row of rows) {
        console.log(
          `  ${row.name.padEnd(26)}${String(row.runs).padStart(5)}${
            num(row.rate, 0).padStart(10)
          }` +
            `${ratio(row.rate, c?.rate).padStart(8)}${ratio(row.rate, d?.rate).padStart(14)}` +
            `${num(row.cpu, 1).padStart(11)}${ratio(row.cpu, c?.cpu).padStart(10)}` +
            `${num(row.user, 1).padStart(9)}` +
            `${
              (Number.isFinite(row.client) ? `${(row.client * 100).toFixed(0)}%` : "-").padStart(13)
            }`,
        );
      }
    }
  } finally {
    for (const child of running) await stop(child);
    await Deno.remove(dir, { recursive: true });
  }
}
