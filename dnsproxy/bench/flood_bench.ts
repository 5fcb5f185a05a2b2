/**
 * `deno task bench:dns --flood`: legitimate clients at a fixed rate from one network namespace
 * while a flood from 16 addresses in another namespace rises, against
 *
 * - `triad-xdp`: this proxy with a dynamic block rule (queries over 500/s for 1 s: drop for 10
 *   minutes) and `--xdp` on both host ends: blocked queries are dropped in XDP;
 * - `triad-user`: the same rule without `--xdp`: blocked queries are dropped in user space;
 * - `dnsdist`: dnsdist with the same rule (`dynBlockRulesGroup():setQueryRate`, action drop) and
 *   `newBPFFilter` as its default filter, so dynamic blocks go into its eBPF socket filter;
 * - `sender`: no server; the flood is dropped at the egress of the flood namespace's own veth end
 *   (a tc filter), so it never crosses to the server's side: the generator's own cost of sending
 *   (syscall, UDP, IP, neighbour, device queue), which every peer's system-wide figure includes;
 * - `null-xdp`: no server; an XDP program that only returns `XDP_DROP`, attached natively (as the
 *   proxy's filter is on a veth) to the server's side of the flood veth: the floor of any XDP
 *   drop on this path (the veth hand-over, its NAPI poll, and the packet's copy into an XDP
 *   buffer: it arrives as a socket's skb, whose head XDP cannot use in place).
 *
 * Each measurement starts the server (pinned to CPU 0), floods for a 2 s warm-up (the block forms)
 * and then for `--seconds` while the legitimate load runs; the flood generator (`udp_flood.c`) and
 * the legitimate client (`legit_load.ts`) run on CPU 1, the client at real-time priority (`chrt -f
 * 10`, SCHED_FIFO, `--legit-priority 0` for normal scheduling; the kernel's RT throttling keeps 5%
 * of each CPU for others): at the generator's limit it fills CPU 1, and a client of normal priority
 * waits for that CPU, so its p99 would measure the bench's layout rather than the server (in a
 * deployment the legitimate clients are other machines, not the attacker's core). The receive
 * softirq of its queries still runs on CPU 1 (veth: on the sender's CPU) behind the flood's, as on
 * a server's receive CPU. Per flood rate it prints the legitimate clients' answered fraction and
 * p99; per flood packet, the system-wide CPU (all CPUs: user, system, irq and softirq, from
 * /proc/stat; the receive side's softirq runs on the sender's CPU) over the same peer with no
 * flood, the same net of the generator's own CPU per packet in the `sender` round (what the
 * receiving side spends per dropped packet), its softirq part, the server process's and the
 * generator's own CPU. Rounds are interleaved (peers rotated) and medians printed, with the XDP
 * drop's ratios to the others.
 *
 * ```sh
 * deno task bench:dns --flood [--rounds 3] [--seconds 4] [--legit 200] [--legit-priority 10]
 *   [--rates 0,20000,...]
 *   [--peers sender,null-xdp,triad-xdp,triad-user,dnsdist]
 * ```
 *
 * @module
 */
import { parseArgs } from "node:util";
import { asm, Program, R0 } from "@triad/ebpf";
import { compileC } from "../../tests/servers/compile_c.ts";
import { startUnbound } from "../../tests/servers/unbound.ts";

const here = new URL(".", import.meta.url).pathname;
const root = new URL("../../", import.meta.url).pathname;
const TICKS = 100;

interface Sample {
  answered: number;
  p99Ms: number;
  floodRate: number;
  /** Length of the measured window, s. */
  windowSeconds: number;
  systemTicks: number;
  softirqTicks: number;
  serverTicks: number;
  /** The flood generator's own CPU (its rusage) per packet sent, µs. */
  generatorUs: number;
  /** ns per packet in the server's BPF filter (XDP or socket filter), from the kernel's stats. */
  filterNs: number;
}

async function run(args: string[], check = true): Promise<string> {
  const output = await new Deno.Command(args[0]!, {
    args: args.slice(1),
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (check && !output.success) {
    throw new Error(`${args.join(" ")}: ${new TextDecoder().decode(output.stderr)}`);
  }
  return new TextDecoder().decode(output.stdout);
}

/**
 * All CPUs' busy time and softirq time, in ticks of 1/100 s. Busy is wall time times CPUs minus
 * idle, iowait and steal: with NO_HZ the kernel measures idle at every idle entry and exit, while
 * /proc/stat's busy columns (user, system, softirq...) are samples at the timer tick (4 ms here)
 * and miss short busy spells between idle ones, the pattern of a rate-paced generator and its
 * receive softirq. The softirq figure is that tick sample (an indication of where the CPU went).
 */
function cpuTicks(): { busy: number; softirq: number } {
  const lines = Deno.readTextFileSync("/proc/stat").split("\n");
  const wall = performance.now() / 10;
  const cpus = lines.filter((line) => /^cpu\d/.test(line)).length;
  const [, , , idle = 0, iowait = 0, , softirq = 0, steal = 0] = lines[0]!.trim().split(/\s+/)
    .slice(1).map(Number);
  return { busy: wall * cpus - idle - iowait - steal, softirq };
}

function processTicks(pid: number): number {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`).split(") ")[1]!.split(" ");
    return Number(stat[11]) + Number(stat[12]);
  } catch {
    return 0;
  }
}

/** Ticks of a process and all its threads' children (Workers are threads: one stat). */
function treeTicks(pid: number): number {
  let ticks = processTicks(pid);
  try {
    const children = Deno.readTextFileSync(`/proc/${pid}/task/${pid}/children`).trim();
    for (const child of children.split(/\s+/).filter(Boolean)) ticks += treeTicks(Number(child));
  } catch {
    // gone
  }
  return ticks;
}

interface ProgInfo {
  id: number;
  type?: string;
  name?: string;
  run_time_ns?: number;
  run_cnt?: number;
}

function progList(): ProgInfo[] {
  // bpftool fails when a program vanishes while it walks the list (other sessions' tests): retry.
  for (let attempt = 0; attempt < 10; attempt++) {
    const output = new Deno.Command("bpftool", { args: ["prog", "show", "-j"], stdout: "piped" })
      .outputSync();
    if (output.success) {
      return JSON.parse(new TextDecoder().decode(output.stdout) || "[]") as ProgInfo[];
    }
  }
  return [];
}

/**
 * The BPF programs a server loaded (those that appeared while it started): the XDP filter by
 * name, dnsdist's socket filter by type (bpftool 7.1 here does not list owners' pids).
 */
function serverPrograms(peer: string, before: Set<number>): number[] {
  return progList().filter((prog) =>
    !before.has(prog.id) &&
    (peer === "dnsdist" ? prog.type === "socket_filter" : prog.name === "dnsfilter_xdp")
  ).map((prog) => prog.id);
}

/** Run time and count of programs (`kernel.bpf_stats_enabled`). */
function filterStats(ids: number[]): { ns: number; count: number } {
  let ns = 0;
  let count = 0;
  for (const prog of progList()) {
    if (!ids.includes(prog.id)) continue;
    ns += prog.run_time_ns ?? 0;
    count += prog.run_cnt ?? 0;
  }
  return { ns, count };
}

/** What `legit_load.ts` prints (the fields used). */
interface LegitResult {
  sent: number;
  answered: number;
  p99Ms: number;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? NaN;
}

/** Runs the flood benchmark. */
export async function runFloodBench(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      rounds: { type: "string", default: "3" },
      seconds: { type: "string", default: "4" },
      legit: { type: "string", default: "200" },
      "legit-priority": { type: "string", default: "10" },
      rates: { type: "string", default: "0,20000,50000,100000,200000" },
      peers: { type: "string", default: "sender,null-xdp,triad-xdp,triad-user,dnsdist" },
    },
  });
  const rounds = Number(values.rounds);
  const seconds = Number(values.seconds);
  const legitRate = Number(values.legit);
  // SCHED_FIFO priority of the legitimate client; 0: normal scheduling (to show what it changes).
  const legitPriority = Number(values["legit-priority"]);
  const legitSched = legitPriority > 0 ? ["chrt", "-f", String(legitPriority)] : [];
  const rates = values.rates.split(",").map(Number);
  const peers = values.peers.split(",");
  const dir = await Deno.makeTempDir({ prefix: "triad-flood-" });
  // The kernel's per-program run time (restored at the end): the filters' own cost per packet.
  const statsBefore = (await run(["sysctl", "-n", "kernel.bpf_stats_enabled"])).trim();
  await run(["sysctl", "-q", "-w", "kernel.bpf_stats_enabled=1"]);
  const flood = `${dir}/udp_flood`;
  await compileC(`${here}udp_flood.c`, flood);
  const tag = `${Deno.pid % 1000}`;
  const nsLegit = `tfl${tag}`;
  const nsFlood = `tff${tag}`;
  const ifLegit = `tfl${tag}a`;
  const ifFlood = `tff${tag}a`;
  const cleanup = async () => {
    for (const iface of [ifLegit, ifFlood]) await run(["ip", "link", "del", iface], false);
    for (const ns of [nsLegit, nsFlood]) await run(["ip", "netns", "del", ns], false);
  };
  await cleanup();
  await using unbound = await startUnbound({ cpus: "1" });
  try {
    for (
      const [ns, iface, net, hosts] of [
        [nsLegit, ifLegit, "10.254.1", [2]],
        [nsFlood, ifFlood, "10.254.2", Array.from({ length: 16 }, (_, i) => 10 + i)],
      ] as const
    ) {
      await run(["ip", "netns", "add", ns]);
      await run(["ip", "link", "add", iface, "type", "veth", "peer", "name", `${iface}b`]);
      await run(["ip", "link", "set", `${iface}b`, "netns", ns]);
      await run(["ip", "addr", "add", `${net}.1/24`, "dev", iface]);
      await run(["ip", "link", "set", iface, "up"]);
      for (const host of hosts) {
        await run(["ip", "-n", ns, "addr", "add", `${net}.${host}/24`, "dev", `${iface}b`]);
      }
      await run(["ip", "-n", ns, "link", "set", `${iface}b`, "up"]);
      await run(["ip", "-n", ns, "route", "add", "default", "via", `${net}.1`]);
      // The gateway's address stays resolved while a round drops everything from this side.
      const mac = (JSON.parse(await run(["ip", "-j", "link", "show", iface])) as {
        address: string;
      }[])[0]!.address;
      await run([
        ...["ip", "-n", ns, "neigh", "replace", `${net}.1`, "lladdr", mac],
        ...["dev", `${iface}b`, "nud", "permanent"],
      ]);
    }
    let nextPort = 25_300;
    const startServer = async (peer: string) => {
      const port = nextPort++;
      const before = new Set(progList().map((prog) => prog.id));
      let child: Deno.ChildProcess;
      if (peer === "dnsdist") {
        const conf = `${dir}/dnsdist.conf`;
        await Deno.writeTextFile(
          conf,
          [
            `setLocal("0.0.0.0:${port}")`,
            `setSecurityPollSuffix("")`,
            `setACL({"0.0.0.0/0"})`,
            `newServer({address="${unbound.address}"})`,
            `pc = newPacketCache(10000)`,
            `getPool(""):setCache(pc)`,
            `bpf = newBPFFilter({maxItems=1024}, {maxItems=1024}, {maxItems=1024})`,
            `setDefaultBPFFilter(bpf)`,
            `dbr = dynBlockRulesGroup()`,
            `dbr:setQueryRate(500, 1, "flood", 600, DNSAction.Drop)`,
            `function maintenance() dbr:apply() end`,
          ].join("\n"),
        );
        child = new Deno.Command("taskset", {
          args: ["-c", "0", "dnsdist", "--supervised", "--disable-syslog", "-C", conf],
          stdout: "null",
          stderr: "piped",
        }).spawn();
      } else {
        const conf = `${dir}/dnsproxy-${port}.yaml`;
        await Deno.writeTextFile(
          conf,
          `listen: "0.0.0.0:${port}"\nupstream:\n  servers: ["${unbound.address}"]\n` +
            `log:\n  level: warn\n` +
            `defence:\n  xdp: ${peer === "triad-xdp" ? `[${ifLegit}, ${ifFlood}]` : "[]"}\n` +
            `  rules:\n    - { name: flood, measure: queries, rate: 500, window: 1s, ` +
            `action: drop, duration: 10m }\n`,
        );
        child = new Deno.Command("taskset", {
          args: [
            "-c",
            "0",
            Deno.execPath(),
            "run",
            "-A",
            `${root}dnsproxy/main.ts`,
            "--config",
            conf,
          ],
          stdout: "null",
          stderr: "piped",
        }).spawn();
      }
      // Ready when it answers.
      const deadline = Date.now() + 15_000;
      for (;;) {
        const out = await run(
          ["dig", "+short", "+tries=1", "+time=1", "-p", String(port), "@10.254.1.1", "a.test"],
          false,
        );
        if (out.trim() !== "") break;
        if (Date.now() > deadline) throw new Error(`${peer} did not answer on ${port}`);
      }
      // The proxy loads its filter after it answers: wait for the program (bounded).
      let programs = serverPrograms(peer, before);
      for (let i = 0; i < 50 && programs.length === 0 && peer !== "triad-user"; i++) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        programs = serverPrograms(peer, before);
      }
      return { port, child, programs };
    };
    /** The `sender` baseline: no server, the flood dropped as it leaves the flood namespace. */
    const startSender = async () => {
      const port = nextPort++;
      const dev = ["-n", nsFlood, "qdisc", "add", "dev", `${ifFlood}b`, "clsact"];
      await run(["tc", ...dev]);
      // Classic BPF `ret #2` (TC_ACT_SHOT) on IPv4 only: ARP still resolves the gateway.
      await run([
        "tc",
        ...["-n", nsFlood, "filter", "add", "dev", `${ifFlood}b`, "egress", "protocol", "ip"],
        ...["prio", "1", "bpf", "da", "bytecode", "1,6 0 0 2"],
      ]);
      return {
        port,
        child: undefined,
        programs: [] as number[],
        stop: () => run(["tc", "-n", nsFlood, "qdisc", "del", "dev", `${ifFlood}b`, "clsact"]),
      };
    };
    /** The `null-xdp` floor: `XDP_DROP` for every packet arriving from the flood namespace. */
    const startNullXdp = () => {
      const program = Program.load({
        type: "xdp",
        name: "null_xdp",
        license: "GPL",
        instructions: [asm.mov64(R0, 1), asm.exit()],
      });
      const link = program.attachXdp(ifFlood, { mode: "native" });
      return {
        port: nextPort++,
        child: undefined,
        programs: [program.id],
        stop: () => {
          link.close();
          program.close();
          return Promise.resolve("");
        },
      };
    };
    const measure = async (peer: string, rate: number): Promise<Sample> => {
      const { port, child, programs, stop } = peer === "sender"
        ? await startSender()
        : peer === "null-xdp"
        ? startNullXdp()
        : { ...await startServer(peer), stop: undefined };
      try {
        const warmup = 2;
        const floodRun = rate > 0
          ? run([
            "ip",
            "netns",
            "exec",
            nsFlood,
            "taskset",
            "-c",
            "1",
            flood,
            "10.254.2.10",
            "16",
            "10.254.1.1",
            String(port),
            String(rate),
            // Outlasts the window (the legitimate client's start-up, its seconds, 1 s of grace).
            String(warmup + seconds + 2),
          ])
          : Promise.resolve('{"sent":0,"seconds":1,"cpu":0}');
        // The block forms during the warm-up (a bench, not a test: a fixed warm-up is the method).
        await new Promise((resolve) => setTimeout(resolve, warmup * 1000));
        const filter0 = filterStats(programs);
        const system0 = cpuTicks();
        const server0 = child === undefined ? 0 : treeTicks(child.pid);
        const window0 = performance.now();
        const legit = child === undefined
          ? await new Promise<LegitResult>((resolve) =>
            setTimeout(
              () => resolve({ sent: 1, answered: NaN, p99Ms: NaN }),
              (seconds + 1) * 1000,
            )
          )
          : JSON.parse(
            await run([
              "ip",
              "netns",
              "exec",
              nsLegit,
              // Real-time, so the generator sharing CPU 1 does not delay the client's own steps.
              ...legitSched,
              "taskset",
              "-c",
              "1",
              Deno.execPath(),
              "run",
              "-A",
              `${here}legit_load.ts`,
              "10.254.1.2",
              "10.254.1.1",
              String(port),
              String(legitRate),
              String(seconds),
            ]),
          ) as LegitResult;
        const windowSeconds = (performance.now() - window0) / 1000;
        const system1 = cpuTicks();
        const filter1 = filterStats(programs);
        const serverTicks = child === undefined ? 0 : treeTicks(child.pid) - server0;
        const floodResult = JSON.parse(await floodRun) as {
          sent: number;
          seconds: number;
          cpu: number;
        };
        const floodRate = floodResult.sent / floodResult.seconds;
        return {
          answered: legit.answered / legit.sent,
          p99Ms: legit.p99Ms,
          floodRate,
          windowSeconds,
          systemTicks: system1.busy - system0.busy,
          softirqTicks: system1.softirq - system0.softirq,
          serverTicks,
          generatorUs: floodResult.sent > 0 ? floodResult.cpu * 1e6 / floodResult.sent : NaN,
          filterNs: (filter1.ns - filter0.ns) / Math.max(1, filter1.count - filter0.count),
        };
      } finally {
        if (child !== undefined) {
          child.kill("SIGTERM");
          await child.status;
        }
        await stop?.();
      }
    };
    const samples = new Map<string, Sample[]>();
    for (let round = 0; round < rounds; round++) {
      for (const rate of rates) {
        const order = peers.map((_, i) => peers[(i + round) % peers.length]!);
        for (const peer of order) {
          const sample = await measure(peer, rate);
          const key = `${peer}@${rate}`;
          samples.set(key, [...(samples.get(key) ?? []), sample]);
          console.error(
            `round ${round + 1} ${key}: answered ${(sample.answered * 100).toFixed(1)}% p99 ` +
              `${sample.p99Ms.toFixed(2)} ms, flood ${Math.round(sample.floodRate)}/s, ` +
              `${sample.windowSeconds.toFixed(2)} s: system ${
                sample.systemTicks.toFixed(0)
              } ticks ` +
              `(softirq ${sample.softirqTicks}), server ${sample.serverTicks} ticks, generator ` +
              `${sample.generatorUs.toFixed(2)} µs/packet, ` +
              `filter ${sample.filterNs.toFixed(0)} ns/packet`,
          );
        }
      }
    }
    /** Per round: µs per flood packet of `pick` over the same peer's no-flood round. */
    const perPacket = (peer: string, rate: number, pick: (s: Sample) => number): number[] => {
      const base = samples.get(`${peer}@0`) ?? [];
      return (samples.get(`${peer}@${rate}`) ?? []).map((s, i) => {
        const b = base[i] ?? s;
        const perSecond = pick(s) / s.windowSeconds - pick(b) / b.windowSeconds;
        return rate === 0 ? NaN : (perSecond / TICKS) * 1e6 / s.floodRate;
      });
    };
    /**
     * System-wide µs per flood packet, raw and net of the generator's own sending: its process
     * CPU per packet in the same round's `sender` measurement (medians of the rounds).
     */
    const cost = (peer: string, rate: number) => {
      const raw = perPacket(peer, rate, (s) => s.systemTicks);
      const sender = (samples.get(`sender@${rate}`) ?? []).map((s) => s.generatorUs);
      const net = raw.map((value, i) => value - (sender[i] ?? NaN));
      return { raw: median(raw), net: peer === "sender" ? NaN : median(net) };
    };
    const programs = (peer: string) => ["null-xdp", "triad-xdp", "dnsdist"].includes(peer);
    console.log(
      `\nlegit ${legitRate} q/s for ${seconds} s, ${
        legitPriority > 0 ? `at real-time priority (chrt -f ${legitPriority})` : "normal priority"
      } on the generator's CPU; medians of ${rounds} ` +
        `rounds. CPU per flood ` +
        `packet in µs over the same peer without flood: sys = system-wide (all CPUs, softirq ` +
        `included; with the generator's own sending), net = sys minus the generator's own CPU per ` +
        `packet in the sender round (the receiving side's cost per dropped packet), softirq = the ` +
        `softirq part of sys, server = the server process, gen = the generator process (in the ` +
        `sender round its sending alone; with a server also the receive softirq run in its context)`,
    );
    const columns = [
      "peer",
      "flood/s",
      "answered %",
      "p99 ms",
      "sys µs/pkt",
      "net µs/pkt",
      "softirq µs/pkt",
      "server µs/pkt",
      "gen µs/pkt",
      "filter ns/pkt",
    ];
    console.log(columns.map((h) => h.padEnd(15)).join(""));
    for (const rate of rates) {
      for (const peer of peers) {
        const list = samples.get(`${peer}@${rate}`) ?? [];
        const { raw, net } = cost(peer, rate);
        console.log(
          [
            peer,
            String(Math.round(median(list.map((s) => s.floodRate)))),
            (median(list.map((s) => s.answered)) * 100).toFixed(1),
            median(list.map((s) => s.p99Ms)).toFixed(2),
            raw.toFixed(2),
            net.toFixed(2),
            median(perPacket(peer, rate, (s) => s.softirqTicks)).toFixed(2),
            median(perPacket(peer, rate, (s) => s.serverTicks)).toFixed(2),
            median(list.map((s) => s.generatorUs)).toFixed(2),
            programs(peer) ? median(list.map((s) => s.filterNs)).toFixed(0) : "-",
          ].map((c) => c.padEnd(15)).join(""),
        );
      }
    }
    console.log("\nCPU per dropped packet, ratios (sys; net):");
    const pairs = [
      ["triad-xdp", "triad-user"],
      ["triad-xdp", "dnsdist"],
      ["triad-xdp", "null-xdp"],
      ["null-xdp", "triad-user"],
    ].filter((pair) => pair.every((peer) => peers.includes(peer)));
    for (const rate of rates.filter((rate) => rate > 0)) {
      const ratios = pairs.map(([a = "", b = ""]) => {
        const [x, y] = [cost(a, rate), cost(b, rate)];
        return `${a}/${b} ${(x.raw / y.raw).toFixed(2)}x; ${(x.net / y.net).toFixed(2)}x`;
      });
      console.log(`flood ${rate}/s asked: ${ratios.join(", ")}`);
    }
  } finally {
    await run(["sysctl", "-q", "-w", `kernel.bpf_stats_enabled=${statsBefore}`], false);
    await cleanup();
    await Deno.remove(dir, { recursive: true });
  }
}
