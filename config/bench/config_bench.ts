/**
 * Benchmarks of @triad/config, printed as a table:
 *
 * 1. load + merge + validate of a 10,000-key YAML configuration (`createConfig()` and `reload()`),
 *    beside the bare floor: `yaml.parse()` + zod `parse()` of the same file, rounds interleaved.
 * 2. `get()` calls per second, beside reading the frozen snapshot by property.
 * 3. etcd put → `change` listener delay, p50/p99 over 1,000 puts, against a real etcd on loopback
 *    (Debian's etcd-server), beside the bare put round trip.
 *
 * Run: `taskset -c 0 deno run -A config/bench/config_bench.ts` (etcd is pinned to CPU 1).
 *
 * @module
 */
import { parse as parseYaml } from "yaml";
import { z } from "zod";
import { createConfig, etcdSource } from "@triad/config";
import { startEtcd } from "../../tests/servers/etcd.ts";

const SECTIONS = 100;
const KEYS = 100; // 100 × 100 = 10,000 leaves
const ROUNDS = Number(Deno.env.get("ROUNDS") ?? 15);
const PUTS = Number(Deno.env.get("PUTS") ?? 1000);

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

// ---- 1. a 10,000-key schema and file ----
const section = z.object(
  Object.fromEntries(
    Array.from({ length: KEYS }, (_, k) => [
      `key${k}`,
      k % 3 === 0 ? z.number().int() : k % 3 === 1 ? z.string() : z.boolean(),
    ]),
  ),
);
const schema = z.object(
  Object.fromEntries(Array.from({ length: SECTIONS }, (_, s) => [`section${s}`, section])),
);
let yaml = "";
for (let s = 0; s < SECTIONS; s++) {
  yaml += `section${s}:\n`;
  for (let k = 0; k < KEYS; k++) {
    const value = k % 3 === 0 ? String(s * KEYS + k) : k % 3 === 1 ? `value-${s}-${k}` : "true";
    yaml += `  key${k}: ${value}\n`;
  }
}
const dir = await Deno.makeTempDir({ prefix: "triad-config-bench-" });
const file = `${dir}/big.yaml`;
await Deno.writeTextFile(file, yaml);

const createMs: number[] = [];
const floorMs: number[] = [];
const reloadMs: number[] = [];
try {
  const config = await createConfig({ schema, files: [file], env: false }); // warm-up
  for (let round = 0; round < ROUNDS; round++) {
    // Interleaved: ours, then the floor, then a reload, every round.
    let t0 = performance.now();
    await using fresh = await createConfig({ schema, files: [file], env: false });
    createMs.push(performance.now() - t0);
    void fresh;

    t0 = performance.now();
    schema.parse(parseYaml(await Deno.readTextFile(file)));
    floorMs.push(performance.now() - t0);

    t0 = performance.now();
    await config.reload();
    reloadMs.push(performance.now() - t0);
  }

  // ---- 2. get() per second ----
  const paths = Array.from(
    { length: 1000 },
    (_, i) => `section${(i * 7) % SECTIONS}.key${(i * 13) % KEYS}` as "section0.key0",
  );
  const pairs = paths.map((path) => path.split(".") as [string, string]);
  const iterations = 2_000_000;
  const getRates: number[] = [];
  const propertyRates: number[] = [];
  let sink = 0;
  for (let round = 0; round < 5; round++) {
    let t0 = performance.now();
    for (let i = 0; i < iterations; i++) {
      if (config.get(paths[i % 1000]!) !== undefined) sink++;
    }
    getRates.push(iterations / ((performance.now() - t0) / 1000));
    t0 = performance.now();
    for (let i = 0; i < iterations; i++) {
      const [a, b] = pairs[i % 1000]!;
      const value = config.value as Record<string, Record<string, unknown>>;
      if (value[a]![b] !== undefined) sink++;
    }
    propertyRates.push(iterations / ((performance.now() - t0) / 1000));
  }
  await config[Symbol.asyncDispose]();

  // ---- 3. etcd put → change listener ----
  const etcdSchema = z.object({ counter: z.number().int().default(0) });
  // etcd's data on tmpfs (ETCD_DISK=1 for the real disk): the disk's fsync latency is etcd's, not
  // ours, and on this shared machine it dominates the tail.
  const onDisk = Deno.env.get("ETCD_DISK") === "1";
  await using etcd = await startEtcd({
    cpus: "1",
    progressNotifyInterval: "10m",
    ...(onDisk ? {} : { tempRoot: "/dev/shm" }),
  });
  // A fetch that timestamps every chunk of the watch stream as it arrives, to split the delay
  // into etcd's part (put -> event on the wire) and ours (event read -> listener called).
  let chunkAt = 0;
  const timingFetch: typeof fetch = async (input, init) => {
    const response = await fetch(input, init);
    if (!String(input).endsWith("/v3/watch") || response.body === null) return response;
    const body = response.body.pipeThrough(
      new TransformStream<Uint8Array, Uint8Array>({
        transform(chunk, controller) {
          chunkAt = performance.now();
          controller.enqueue(chunk);
        },
      }),
    );
    return new Response(body, { status: response.status, headers: response.headers });
  };
  await using watched = await createConfig({
    schema: etcdSchema,
    env: false,
    fetch: timingFetch,
    remote: [etcdSource({ endpoints: [etcd.endpoint], prefix: "/bench/" })],
  });
  await watched.watch();
  let resolveChange: (() => void) | undefined;
  let changedAt = 0;
  let eventAt = 0;
  watched.on("change", () => {
    changedAt = performance.now();
    eventAt = chunkAt;
    resolveChange?.();
  });
  const delays: number[] = [];
  const roundTrips: number[] = [];
  const ours: number[] = [];
  for (let i = 1; i <= PUTS + 20; i++) {
    const changed = new Promise<void>((resolve) => (resolveChange = resolve));
    const t0 = performance.now();
    await etcd.put("/bench/counter", String(i));
    const t1 = performance.now();
    let stuck: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      changed,
      new Promise((_, reject) => {
        stuck = setTimeout(() => reject(new Error(`no change event for put ${i} in 10 s`)), 10_000);
      }),
    ]);
    clearTimeout(stuck);
    if (i > 20) {
      // the first 20 warm up connections and JIT
      delays.push(changedAt - t0);
      ours.push(changedAt - eventAt);
      roundTrips.push(t1 - t0);
    }
  }
  if (watched.get("counter") !== PUTS + 20) throw new Error("lost an update");

  const fmt = (n: number, digits = 2) => n.toFixed(digits);
  console.log(
    `@triad/config benchmark (${ROUNDS} interleaved rounds, medians; ${PUTS} etcd puts, etcd data on ${
      onDisk ? "disk" : "tmpfs"
    })`,
  );
  console.log(`deno ${Deno.version.deno}; run under taskset -c 0, etcd pinned to CPU 1\n`);
  console.log(
    "| measurement                                   | @triad/config | floor (bare)        | ratio |",
  );
  console.log(
    "| --------------------------------------------- | ------------- | ------------------- | ----- |",
  );
  console.log(
    `| load+merge+validate 10,000 keys (createConfig) | ${fmt(median(createMs))} ms | ${
      fmt(median(floorMs))
    } ms yaml+zod parse | ${fmt(median(createMs) / median(floorMs))}x |`,
  );
  console.log(
    `| reload() of the same 10,000 keys              | ${fmt(median(reloadMs))} ms | ${
      fmt(median(floorMs))
    } ms yaml+zod parse | ${fmt(median(reloadMs) / median(floorMs))}x |`,
  );
  console.log(
    `| get() calls per second                         | ${
      (median(getRates) / 1e6).toFixed(1)
    } M/s | ${(median(propertyRates) / 1e6).toFixed(1)} M/s value[a][b] | ${
      fmt(median(getRates) / median(propertyRates))
    }x |`,
  );
  console.log(
    `| etcd put -> change listener p50               | ${fmt(percentile(delays, 50))} ms | ${
      fmt(percentile(roundTrips, 50))
    } ms put round trip | |`,
  );
  console.log(
    `| etcd put -> change listener p99               | ${fmt(percentile(delays, 99))} ms | ${
      fmt(percentile(roundTrips, 99))
    } ms put round trip | |`,
  );
  console.log(
    `| watch event read -> change listener p50/p99   | ${fmt(percentile(ours, 50), 3)} / ${
      fmt(percentile(ours, 99), 3)
    } ms | (our share of the delay) | |`,
  );
  console.log(`\n(target: put -> change p99 < 20 ms; sink ${sink % 10})`);
} finally {
  await Deno.remove(dir, { recursive: true });
}
