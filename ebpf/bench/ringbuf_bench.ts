/**
 * Ring buffer benchmark: records per second drained from the same BPF producer by
 * `RingBufferReader` (`for await` over records and over `batches()`, `consume()`, and the
 * allocation-free `drain()`) and by
 * a C consumer
 * using libbpf's `ring_buffer__poll`, in one run, in interleaved rounds, reporting medians. Then a
 * paced run at half the C consumer's median rate checks that `RingBufferReader` loses nothing.
 *
 * The producer is `ringbench.bpf.c`: every getppid() of a trigger process (pinned to CPU 1) emits
 * 64 records of 56 bytes, into a ring of `--ring-mib` MiB. Consumers run on CPU 0. The C programs are compiled here, at bench time.
 *
 * Usage: `deno task bench:ebpf [--rounds 5] [--seconds 2] [--ring-mib 32]` (root, clang,
 * libbpf-dev, taskset)
 *
 * @module
 */
import { parseArgs } from "node:util";
import process from "node:process";
import { RingBufferReader } from "@triad/ebpf";
import { RingbenchObject } from "./ringbench.gen.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    rounds: { type: "string", default: "5" },
    seconds: { type: "string", default: "2" },
    "ring-mib": { type: "string", default: "32" },
  },
});
const rounds = Number(values.rounds);
const seconds = Number(values.seconds);
const ringBytes = Number(values["ring-mib"]) * 1024 * 1024;
const here = new URL(".", import.meta.url).pathname;
const work = await Deno.makeTempDir({ prefix: "triad-ringbench-" });
const pin = `/sys/fs/bpf/triad_ringbench_${Deno.pid}`;

async function run(cmd: string, args: string[]): Promise<string> {
  const output = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  if (!output.success) {
    throw new Error(`${cmd} ${args.join(" ")}: ${new TextDecoder().decode(output.stderr)}`);
  }
  return new TextDecoder().decode(output.stdout);
}

interface Result {
  records: number;
  dropped: number;
  produced: number;
}

/** This process's user and system CPU time, in microseconds. */
function cpuMicros(): number {
  const usage = process.cpuUsage();
  return usage.user + usage.system;
}

function median(xs: number[]): number {
  const sorted = xs.toSorted((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

try {
  // Build the C consumer and the trigger (never committed as binaries).
  await run("clang", ["-O2", "-o", `${work}/consumer`, `${here}ringbuf_consumer.c`, "-lbpf"]);
  await run("clang", ["-O2", "-o", `${work}/trigger`, `${here}trigger.c`]);
  // Consumers on CPU 0 (this process and all its threads), the trigger on CPU 1.
  await run("taskset", ["-a", "-cp", "0", String(Deno.pid)]);

  using bench = RingbenchObject.open({ maxEntries: { records: ringBytes } });
  await bench.load();
  using _link = bench.programs.produce.attach();
  const ring = bench.maps.records;
  ring.pin(pin);

  /** Runs the trigger for `seconds` (paced when `rate` calls/s is given) around `consume`. */
  const round = async (
    consume: (trigger: Promise<void>) => Promise<number>,
    rate?: number,
  ): Promise<Result> => {
    bench.object.writeGlobal("dropped", 0n);
    bench.object.writeGlobal("produced", 0n);
    const trigger = new Deno.Command("taskset", {
      args: ["-c", "1", `${work}/trigger`, String(seconds), ...(rate ? [String(rate)] : [])],
      stdin: "piped",
      stdout: "piped",
    }).spawn();
    bench.object.writeGlobal("target_tgid", trigger.pid);
    const writer = trigger.stdin.getWriter();
    const done = trigger.output().then(() => {});
    const records = await consume(
      (async () => {
        await new Promise((resolve) => setTimeout(resolve, 50));
        await writer.write(new TextEncoder().encode("go\n"));
        await writer.close();
        await done;
      })(),
    );
    bench.object.writeGlobal("target_tgid", 0);
    return {
      records,
      dropped: Number(bench.readGlobal("dropped")),
      produced: Number(bench.readGlobal("produced")),
    };
  };

  const consumers: Record<string, (trigger: Promise<void>) => Promise<number>> = {
    "C ring_buffer__poll": async (trigger) => {
      const child = new Deno.Command("taskset", {
        args: ["-c", "0", `${work}/consumer`, pin, String(seconds + 0.5)],
        stdout: "piped",
      }).spawn();
      const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
      let text = "";
      while (!text.includes("ready\n")) text += (await reader.read()).value ?? "";
      await trigger;
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        text += value;
      }
      await child.status;
      return Number(text.split("\n")[1]!.split(" ")[0]);
    },
    "RingBufferReader for await": async (trigger) => {
      const reader = new RingBufferReader(ring, { pollIntervalMs: 50 });
      let records = 0;
      let checksum = 0;
      const stop = trigger.then(() => new Promise((resolve) => setTimeout(resolve, 500)))
        .then(() => reader.close());
      for await (const record of reader) {
        records++;
        checksum += record.getUint32(0, true);
      }
      await stop;
      return checksum >= 0 ? records : 0;
    },
    "RingBufferReader batches()": async (trigger) => {
      const reader = new RingBufferReader(ring, { pollIntervalMs: 50 });
      let records = 0;
      let checksum = 0;
      const stop = trigger.then(() => new Promise((resolve) => setTimeout(resolve, 500)))
        .then(() => reader.close());
      for await (const batch of reader.batches()) {
        records += batch.length;
        for (const record of batch) checksum += record.getUint32(0, true);
      }
      await stop;
      return checksum >= 0 ? records : 0;
    },
    "RingBufferReader consume()": async (trigger) => {
      const reader = new RingBufferReader(ring);
      let records = 0;
      let checksum = 0;
      let finished = false;
      trigger.then(() => setTimeout(() => finished = true, 500));
      while (!finished) {
        await reader.wait(50);
        records += reader.consume((record) => checksum += record.getUint32(0, true));
      }
      await reader[Symbol.asyncDispose]();
      return checksum >= 0 ? records : 0;
    },
    "RingBufferReader drain()": async (trigger) => {
      const reader = new RingBufferReader(ring);
      let records = 0;
      let checksum = 0;
      let finished = false;
      trigger.then(() => setTimeout(() => finished = true, 500));
      while (!finished) {
        await reader.wait(50);
        records += reader.drain((view, offset) => checksum += view.getUint32(offset, true));
      }
      await reader[Symbol.asyncDispose]();
      return checksum >= 0 ? records : 0;
    },
  };

  const rates = new Map<string, number[]>(Object.keys(consumers).map((name) => [name, []]));
  const losses = new Map<string, number[]>(Object.keys(consumers).map((name) => [name, []]));
  console.log(
    `ring buffer drain, ${rounds} interleaved rounds of ${seconds}s, ${
      ringBytes >> 20
    } MiB ring, ` +
      `kernel ${Deno.osRelease()}, load average ${
        Deno.loadavg().map((x) => x.toFixed(1)).join(" ")
      }`,
  );
  for (let r = 1; r <= rounds; r++) {
    for (const [name, consume] of Object.entries(consumers)) {
      const result = await round(consume);
      rates.get(name)!.push(result.records / seconds);
      losses.get(name)!.push(result.dropped);
      console.log(
        `  round ${r} ${name.padEnd(28)} ${
          (result.records / seconds / 1e6).toFixed(2)
        } M records/s` +
          `  (produced ${result.produced}, dropped ${result.dropped})`,
      );
    }
  }
  const c = median(rates.get("C ring_buffer__poll")!);
  console.log(
    "\nmedians (saturating producer; drops are the ring overflowing while the consumer lags):",
  );
  for (const [name, list] of rates) {
    console.log(
      `  ${name.padEnd(28)} ${(median(list) / 1e6).toFixed(2)} M records/s  ` +
        `${(median(list) / c).toFixed(2)}x C  median dropped ${median(losses.get(name)!)}`,
    );
  }

  // Drain: fill the ring with no consumer running, then time each consumer draining it. This
  // measures the consumers alone (under a saturating producer the C consumer, always caught up,
  // makes the producer pay for a wake-up per record, which lowers what there is to drain).
  const libcFfi = Deno.dlopen("libc.so.6", { getppid: { parameters: [], result: "i32" } });
  const fillRecords = Math.floor((ringBytes * 0.75) / 64 / 64) * 64;
  const fill = () => {
    bench.object.writeGlobal("dropped", 0n);
    bench.object.writeGlobal("target_tgid", Deno.pid);
    for (let i = 0; i < fillRecords / 64; i++) libcFfi.symbols.getppid();
    bench.object.writeGlobal("target_tgid", 0);
    if (bench.readGlobal("dropped") !== 0n) throw new Error("the ring overflowed while filling it");
  };
  const drainers: Record<string, () => Promise<number>> = {
    "C ring_buffer__consume": async () => {
      const out = await run("taskset", [
        "-c",
        "0",
        `${work}/consumer`,
        pin,
        "30",
        String(fillRecords),
      ]);
      const [records, , elapsed] = out.split("\n")[1]!.split(" ");
      if (Number(records) !== fillRecords) {
        throw new Error(`C drained ${records} of ${fillRecords}`);
      }
      return Number(elapsed);
    },
    "RingBufferReader for await": async () => {
      const reader = new RingBufferReader(ring);
      let records = 0;
      let checksum = 0;
      const start = performance.now();
      for await (const record of reader) {
        checksum += record.getUint32(0, true);
        if (++records === fillRecords) break;
      }
      return checksum >= 0 ? (performance.now() - start) / 1000 : 0;
    },
    "RingBufferReader batches()": async () => {
      const reader = new RingBufferReader(ring);
      let records = 0;
      let checksum = 0;
      const start = performance.now();
      for await (const batch of reader.batches()) {
        for (const record of batch) checksum += record.getUint32(0, true);
        records += batch.length;
        if (records >= fillRecords) break;
      }
      return checksum >= 0 ? (performance.now() - start) / 1000 : 0;
    },
    "RingBufferReader consume()": () => {
      const reader = new RingBufferReader(ring);
      let records = 0;
      let checksum = 0;
      const start = performance.now();
      while (records < fillRecords) {
        records += reader.consume((r) => checksum += r.getUint32(0, true));
      }
      const elapsed = (performance.now() - start) / 1000;
      reader.close();
      return Promise.resolve(checksum >= 0 ? elapsed : 0);
    },
    "RingBufferReader drain()": () => {
      const reader = new RingBufferReader(ring);
      let records = 0;
      let checksum = 0;
      const start = performance.now();
      while (records < fillRecords) {
        records += reader.drain((view, offset) => checksum += view.getUint32(offset, true));
      }
      const elapsed = (performance.now() - start) / 1000;
      reader.close();
      return Promise.resolve(checksum >= 0 ? elapsed : 0);
    },
  };
  const drainRates = new Map<string, number[]>(Object.keys(drainers).map((name) => [name, []]));
  const drainCpu = new Map<string, number[]>(Object.keys(drainers).map((name) => [name, []]));
  console.log(`\ndrain a filled ring (${fillRecords} records), ${rounds} interleaved rounds:`);
  for (let r = 1; r <= rounds; r++) {
    for (const [name, drain] of Object.entries(drainers)) {
      fill();
      // This process's own CPU time too: on a loaded machine wall time mostly measures how much
      // CPU the scheduler gave (the C consumer is another process: its CPU is not counted here).
      const cpuBefore = cpuMicros();
      const elapsed = await drain();
      const cpuNs = (cpuMicros() - cpuBefore) * 1000 / fillRecords;
      drainRates.get(name)!.push(fillRecords / elapsed);
      if (!name.startsWith("C ")) drainCpu.get(name)!.push(cpuNs);
      console.log(
        `  round ${r} ${name.padEnd(28)} ${(fillRecords / elapsed / 1e6).toFixed(2)} M records/s` +
          (name.startsWith("C ") ? "" : `  (${cpuNs.toFixed(0)} ns of CPU per record)`),
      );
    }
  }
  const cDrain = median(drainRates.get("C ring_buffer__consume")!);
  console.log("\ndrain medians:");
  for (const [name, list] of drainRates) {
    const cpu = drainCpu.get(name)!;
    console.log(
      `  ${name.padEnd(28)} ${(median(list) / 1e6).toFixed(2)} M records/s  ` +
        `${(median(list) / cDrain).toFixed(2)}x C` +
        (cpu.length > 0 ? `  ${median(cpu).toFixed(0)} ns of CPU per record` : ""),
    );
  }
  libcFfi.close();

  // Paced: the producer at half the C consumer's median rate, rounds interleaved again; nothing
  // may be lost. The C consumer runs too, so losses caused by the machine (other load on CPU 0
  // stalling a consumer for longer than the ring can absorb) show on both.
  const callsPerSecond = Math.round(c / 2 / 64);
  console.log(
    `\npaced producer at ${(callsPerSecond * 64 / 1e6).toFixed(2)} M records/s (0.5x C), ` +
      `${rounds} interleaved rounds:`,
  );
  const paced = new Map<string, Result[]>(Object.keys(consumers).map((name) => [name, []]));
  for (let r = 1; r <= rounds; r++) {
    for (const [name, consume] of Object.entries(consumers)) {
      const result = await round(consume, callsPerSecond);
      paced.get(name)!.push(result);
      console.log(
        `  round ${r} ${name.padEnd(28)} drained ${result.records} of ` +
          `${result.produced + result.dropped}, dropped ${result.dropped}`,
      );
    }
  }
  console.log("\npaced summary:");
  for (const [name, results] of paced) {
    const clean = results.filter((x) => x.dropped === 0 && x.records === x.produced).length;
    console.log(
      `  ${name.padEnd(28)} ${
        (median(results.map((x) => x.records)) / seconds / 1e6).toFixed(2)
      } ` +
        `M records/s median, rounds without loss ${clean}/${results.length}, median dropped ` +
        `${median(results.map((x) => x.dropped))}`,
    );
  }
} finally {
  await Deno.remove(pin).catch(() => {});
  await Deno.remove(work, { recursive: true });
}
