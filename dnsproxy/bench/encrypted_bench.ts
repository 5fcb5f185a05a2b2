/**
 * `deno task bench:dns --transport dot|doh`: cache-hit queries/s and server CPU per query over DNS
 * over TLS (dnsperf `-m dot`) or over HTTPS (h2load, GET and POST, HTTP/2), at 1 and at 100
 * concurrent client connections. DoT is measured at steady state: dnsperf opens its connections
 * once, runs one second more than `--seconds`, and that first second (connecting and handshaking)
 * is left out of the rate and of the server's CPU; the proxy's handshake counter shows that each
 * connection handshook once. Servers: this proxy (netloop backend and builtin), dnsdist and
 * unbound (answering its own local zone), all behind or being the same unbound. For DoH the
 * `deno-serve-floor` peer (`doh_floor.ts`: `Deno.serve` answering a fixed message) shows what
 * Deno's HTTP/2 server costs before any DNS work.
 *
 * Servers run on CPU 0, the load generator and the upstream unbound on CPU 1 (taskset). Rounds are
 * interleaved (A B C D, B C D A, ...) and medians printed with the load generator's own CPU.
 *
 * ```sh
 * deno task bench:dns --transport dot [--rounds 5] [--seconds 4] [--peers triad,dnsdist,...]
 * ```
 *
 * @module
 */
import { parseArgs } from "node:util";
import { encodeBase64Url } from "../frontend/https.ts";
import { buildQuery } from "../wire/builders.ts";
import { startUnbound, testCertificates } from "../../tests/servers/unbound.ts";
import type { UnboundServer } from "../../tests/servers/unbound.ts";
import { cpuTicks, freePort, median } from "./_bench_util.ts";

const { values: flags } = parseArgs({
  args: Deno.args,
  options: {
    transport: { type: "string", default: "dot" },
    rounds: { type: "string", default: "5" },
    seconds: { type: "string", default: "4" },
    peers: { type: "string", default: "triad,triad-builtin,dnsdist,unbound" },
  },
});
const TRANSPORT = flags.transport;
if (TRANSPORT !== "dot" && TRANSPORT !== "doh") {
  throw new Error(`--transport must be dot or doh, not "${TRANSPORT}"`);
}
const ROUNDS = Number(flags.rounds);
const SECONDS = Number(flags.seconds);
const SERVER_CPU = "0";
const LOAD_CPU = "1";
const TICKS_PER_SECOND = 100;
const CONCURRENCY = [1, 100];
const METHODS = TRANSPORT === "dot" ? ["dot"] : ["GET", "POST"];
/** DoT: seconds of dnsperf's run left out (connecting and handshaking), before `SECONDS` measured. */
const WARMUP_SECONDS = 1;

interface Peer {
  name: string;
  port: number;
  pid: number;
  /** The proxy's /metrics address (its TLS handshake counter). */
  metrics?: string;
  stop: () => Promise<void>;
}

interface Run {
  qps: number;
  cpuUsPerQuery: number;
  clientBusy: number;
  /** TLS handshakes the server counted during the run (the proxy only; NaN for others). */
  handshakes: number;
}

/** Runs the load generator on LOAD_CPU; returns its output, answered count and own CPU share. */
async function load(args: string[]): Promise<{ text: string; clientBusy: number }> {
  const child = new Deno.Command("taskset", {
    args: ["-c", LOAD_CPU, ...args],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let clientBusy = NaN;
  await new Promise((resolve) => setTimeout(resolve, 300));
  try {
    const before = cpuTicks(child.pid);
    const window = Math.max(0.2, SECONDS - 0.8);
    await new Promise((resolve) => setTimeout(resolve, window * 1000));
    clientBusy = (cpuTicks(child.pid) - before) / TICKS_PER_SECOND / window;
  } catch { /* exited early */ }
  // A generator that does not stop (h2load waiting for answers that never come) is killed.
  const killer = setTimeout(() => child.kill("SIGKILL"), (SECONDS + 5) * 1000);
  const { stdout, stderr } = await child.output();
  clearTimeout(killer);
  const text = new TextDecoder().decode(stdout) + new TextDecoder().decode(stderr);
  return { text, clientBusy };
}

/**
 * DoT at steady state: dnsperf keeps `clients` connections open for the whole run (it reconnects
 * only when the server closes one, counted below) and reports its rate every second (`-S 1`). The
 * first second, when it connects and handshakes all of them (one after another, driven by its
 * single sending thread), is left out of both the rate and the server's CPU: what is measured is
 * queries served on connections already open, as a client's pool of DoT connections sees it.
 */
async function dotSteadyState(peer: Peer, clients: number, files: Files): Promise<Run> {
  const handshakesBefore = await handshakes(peer);
  const child = new Deno.Command("taskset", {
    args: [
      "-c",
      LOAD_CPU,
      "stdbuf",
      "-oL",
      "dnsperf",
      "-m",
      "dot",
      "-s",
      "127.0.0.1",
      "-p",
      String(peer.port),
      "-d",
      files.dnsperf,
      "-c",
      String(clients),
      "-q",
      String(Math.max(100, clients * 10)),
      "-l",
      String(SECONDS + WARMUP_SECONDS),
      "-S",
      "1",
    ],
    stdout: "piped",
    stderr: "piped",
  }).spawn(); // deno-fmt-ignore
  // Each interval line ("<unix time>: <queries/s>") with the server's and dnsperf's CPU then.
  const marks: { time: number; qps: number; server: number; client: number }[] = [];
  let text = "";
  let pending = "";
  const errors = new Response(child.stderr).text();
  const killer = setTimeout(() => child.kill("SIGKILL"), (SECONDS + WARMUP_SECONDS + 5) * 1000);
  for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
    text += chunk;
    pending += chunk;
    const lines = pending.split("\n");
    pending = lines.pop()!;
    for (const line of lines) {
      const m = /^(\d+\.\d+): ([\d.]+)$/.exec(line.trim());
      if (m === null) continue;
      try {
        marks.push({
          time: Number(m[1]),
          qps: Number(m[2]),
          server: cpuTicks(peer.pid),
          client: cpuTicks(child.pid),
        });
      } catch { /* dnsperf exited between the line and the read */ }
    }
  }
  text += await errors;
  await child.status;
  clearTimeout(killer);
  const handshakesAfter = await handshakes(peer);
  // marks[0] closes the warm-up second; the intervals after it are the steady state.
  const steady = marks.slice(WARMUP_SECONDS - 1);
  if (steady.length < 2) {
    console.error(`${peer.name} dot ${clients}: dnsperf gave ${marks.length} interval lines`);
    return { qps: NaN, cpuUsPerQuery: NaN, clientBusy: NaN, handshakes: NaN };
  }
  let queries = 0;
  for (let i = 1; i < steady.length; i++) {
    queries += steady[i]!.qps * (steady[i]!.time - steady[i - 1]!.time);
  }
  const first = steady[0]!;
  const last = steady.at(-1)!;
  const seconds = last.time - first.time;
  const reconnects = Number(/Reconnections:\s+(\d+)/.exec(text)?.[1] ?? 0);
  if (reconnects > 0) console.error(`${peer.name} dot ${clients}: ${reconnects} reconnections`);
  return {
    qps: queries / seconds,
    cpuUsPerQuery: (last.server - first.server) / TICKS_PER_SECOND * 1e6 / Math.max(1, queries),
    clientBusy: (last.client - first.client) / TICKS_PER_SECOND / seconds,
    handshakes: handshakesAfter - handshakesBefore,
  };
}

/** TLS handshakes the proxy has counted (`dns_tls_handshakes_total`); NaN for other servers. */
async function handshakes(peer: Peer): Promise<number> {
  if (peer.metrics === undefined) return NaN;
  const text = await (await fetch(`http://${peer.metrics}/metrics`)).text();
  let sum = 0;
  for (const m of text.matchAll(/^dns_tls_handshakes_total\{[^}]*result="ok"[^}]*\} (\d+)/gm)) {
    sum += Number(m[1]);
  }
  return sum;
}

async function measure(peer: Peer, method: string, clients: number, files: Files): Promise<Run> {
  if (method === "dot") return await dotSteadyState(peer, clients, files);
  const before = cpuTicks(peer.pid);
  const url = `https://127.0.0.1:${peer.port}/dns-query`;
  const args = [
    "h2load",
    "-D",
    String(SECONDS),
    "-c",
    String(clients),
    "-m",
    "10",
    "-H",
    "accept: application/dns-message",
  ]; // deno-fmt-ignore
  if (method === "POST") {
    args.push("-d", files.post, "-H", "content-type: application/dns-message", url);
  } else args.push(`${url}?dns=${files.get}`);
  const out = await load(args);
  const answered = Number(/status codes: (\d+) 2xx/.exec(out.text)?.[1] ?? NaN);
  const qps = Number(/finished in [\d.]+m?s, ([\d.]+) req\/s/.exec(out.text)?.[1] ?? NaN);
  if (Number.isNaN(qps)) {
    console.error(`${peer.name} ${method} ${clients}: h2load gave no rate (killed or failed)`);
  }
  const cpu = (cpuTicks(peer.pid) - before) / TICKS_PER_SECOND;
  return {
    qps,
    cpuUsPerQuery: cpu * 1e6 / Math.max(1, answered),
    clientBusy: out.clientBusy,
    handshakes: NaN,
  };
}

interface Files {
  dnsperf: string;
  post: string;
  get: string;
}

async function ready(port: number, name: string): Promise<boolean> {
  if (name === "deno-serve-floor") {
    // It answers with ID 0 whatever is asked (dig would refuse it): listening is enough.
    try {
      (await Deno.connect({ hostname: "127.0.0.1", port })).close();
      return true;
    } catch {
      return false;
    }
  }
  const args = TRANSPORT === "dot" ? ["+tls"] : ["+https"];
  const { stdout } = await new Deno.Command("dig", {
    args: [...args, "@127.0.0.1", "-p", String(port), "h0.bench", "+short", "+time=1", "+tries=1"],
    stdout: "piped",
    stderr: "null",
  }).output();
  return new TextDecoder().decode(stdout).includes("10.9.9.9");
}

function spawn(command: string[]): Deno.ChildProcess {
  return new Deno.Command("taskset", {
    args: ["-c", SERVER_CPU, ...command],
    stdout: "null",
    stderr: "null",
  }).spawn();
}

function stopper(child: Deno.ChildProcess): () => Promise<void> {
  return async () => {
    try {
      child.kill("SIGTERM");
    } catch { /* gone */ }
    await child.status;
  };
}

const dir = await Deno.makeTempDir({ prefix: "triad-edns-bench-" });
const certs = await testCertificates(dir);
const upstream = await startUnbound({ cpus: LOAD_CPU, socketBuffer: "4m" });
const peers: Peer[] = [];
let servingUnbound: UnboundServer | undefined;
try {
  const main = new URL("../main.ts", import.meta.url).pathname;
  const listenFlag = TRANSPORT === "dot" ? "--tls-listen" : "--https-listen";
  for (const name of flags.peers.split(",")) {
    const port = freePort();
    if (name === "triad" || name === "triad-builtin") {
      const metrics = `127.0.0.1:${freePort()}`;
      const child = spawn([
        Deno.execPath(),
        "run",
        "-A",
        "--unstable-net",
        main,
        "--listen",
        `127.0.0.1:${freePort()}`,
        listenFlag,
        `127.0.0.1:${port}`,
        "--tls-cert",
        certs.cert,
        "--tls-key",
        certs.key,
        "--upstream",
        upstream.address,
        "--log.level",
        "error",
        "--cache.prefetch-hits",
        "0",
        "--backend",
        name === "triad" ? "auto" : "builtin",
        "--loops",
        "1",
        "--metrics",
        metrics,
      ]); // deno-fmt-ignore
      peers.push({ name, port, pid: child.pid, metrics, stop: stopper(child) });
    } else if (name === "dnsdist") {
      const local = TRANSPORT === "dot"
        ? `addTLSLocal("127.0.0.1:${port}", "${certs.cert}", "${certs.key}")`
        : `addDOHLocal("127.0.0.1:${port}", "${certs.cert}", "${certs.key}", "/dns-query")`;
      await Deno.writeTextFile(
        `${dir}/dnsdist.conf`,
        [
          `setLocal("127.0.0.1:${freePort()}")`,
          local,
          'setACL({"127.0.0.0/8"})',
          'setSecurityPollSuffix("")',
          `newServer({address="${upstream.address}", checkName="h0.bench."})`,
          "pc = newPacketCache(100000)",
          'getPool(""):setCache(pc)',
        ].join("\n") + "\n",
      );
      const child = spawn([
        "dnsdist",
        "--supervised",
        "--disable-syslog",
        "-C",
        `${dir}/dnsdist.conf`,
      ]);
      peers.push({ name, port, pid: child.pid, stop: stopper(child) });
    } else if (name === "deno-serve-floor") {
      if (TRANSPORT !== "doh") throw new Error("deno-serve-floor is a DoH peer");
      const floor = new URL("doh_floor.ts", import.meta.url).pathname;
      const child = spawn([
        Deno.execPath(),
        "run",
        "-A",
        floor,
        String(port),
        certs.cert,
        certs.key,
      ]);
      peers.push({ name, port, pid: child.pid, stop: stopper(child) });
    } else if (name === "unbound") {
      servingUnbound = await startUnbound({ tls: true, https: true, cpus: SERVER_CPU });
      const address = TRANSPORT === "dot"
        ? servingUnbound.tlsAddress!
        : servingUnbound.httpsAddress!;
      peers.push({
        name,
        port: Number(address.split(":")[1]),
        pid: servingUnbound.pid,
        stop: () => servingUnbound!.stop(),
      });
    } else throw new Error(`Unknown peer "${name}" in --peers`);
  }
  for (const peer of peers) {
    let up = false;
    for (let i = 0; i < 100 && !up; i++) {
      up = await ready(peer.port, peer.name);
      if (!up) await new Promise((resolve) => setTimeout(resolve, 100));
    }
    if (!up) throw new Error(`${peer.name} did not answer on ${peer.port}`);
  }
  const files: Files = {
    dnsperf: `${dir}/hit.txt`,
    post: `${dir}/query.bin`,
    get: encodeBase64Url(buildQuery({ id: 0, name: "h0.bench.", type: 1 })),
  };
  await Deno.writeTextFile(
    files.dnsperf,
    Array.from({ length: 100 }, (_, i) => `h${i}.bench A\n`).join(""),
  );
  await Deno.writeFile(files.post, buildQuery({ id: 0, name: "h0.bench.", type: 1 }));
  const results = new Map<string, Run[]>();
  const key = (peer: string, method: string, clients: number) => `${peer} ${method} ${clients}`;
  for (let round = 0; round < ROUNDS; round++) {
    const order = peers.map((_, i) => peers[(i + round) % peers.length]!);
    for (const peer of order) {
      for (const method of METHODS) {
        for (const clients of CONCURRENCY) {
          const run = await measure(peer, method, clients, files);
          const k = key(peer.name, method, clients);
          results.set(k, [...(results.get(k) ?? []), run]);
        }
      }
      console.error(`round ${round + 1}/${ROUNDS} ${peer.name} done`);
    }
  }
  console.log(
    `\n${TRANSPORT === "dot" ? "DoT, dnsperf -m dot" : "DoH, h2load -m 10"}, cache hits, ` +
      `${ROUNDS} interleaved rounds of ${SECONDS}s, medians; servers on CPU ${SERVER_CPU}, ` +
      `load generator and upstream on CPU ${LOAD_CPU}`,
  );
  const line = (cells: string[]) =>
    console.log(cells.map((c, i) => i === 0 ? c.padEnd(30) : c.padStart(16)).join(""));
  line(["", ...peers.map((p) => p.name)]);
  for (const method of METHODS) {
    for (const clients of CONCURRENCY) {
      const label = `${method === "dot" ? "" : `${method} `}${clients} conn`;
      const row = (what: string, pick: (r: Run) => number, digits: number) =>
        line([
          `${label}: ${what}`,
          ...peers.map((p) =>
            median((results.get(key(p.name, method, clients)) ?? []).map(pick)).toFixed(digits)
          ),
        ]);
      row("queries/s", (r) => r.qps, 0);
      row("server CPU us/query", (r) => r.cpuUsPerQuery, 1);
      row("client CPU busy %", (r) => r.clientBusy * 100, 0);
      if (method === "dot") row("TLS handshakes (proxy)", (r) => r.handshakes, 0);
    }
  }
  const ratio = (name: string, method: string, clients: number, pick: (r: Run) => number) =>
    median((results.get(key(name, method, clients)) ?? []).map(pick)) /
    median((results.get(key("dnsdist", method, clients)) ?? []).map(pick));
  if (peers.some((p) => p.name === "dnsdist") && peers.some((p) => p.name === "triad")) {
    for (const method of METHODS) {
      for (const clients of CONCURRENCY) {
        console.log(
          `triad / dnsdist ${method} ${clients} conn: q/s ${
            ratio("triad", method, clients, (r) => r.qps).toFixed(2)
          }x ` +
            `(target >= 1), CPU/query ${
              ratio("triad", method, clients, (r) => r.cpuUsPerQuery).toFixed(2)
            }x (target <= 1)`,
        );
      }
    }
  }
} finally {
  for (const peer of peers) await peer.stop().catch(() => {});
  await upstream.stop();
  await Deno.remove(dir, { recursive: true });
}
