/**
 * What the benchmarks share: a free port, a process's CPU ticks, medians, waiting for a server,
 * dnsdist's configuration.
 *
 * @module
 */

/** A free TCP port on 127.0.0.1 (free when asked; another process may take it after). */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

/**
 * CPU ticks of a process, all threads: user space (utime) and kernel (stime). Their sum is the
 * exact run time; the split between them is sampled at each timer tick (250 Hz with this kernel's
 * tick accounting): close for a thread that runs steadily, biased toward the kernel for threads
 * that run in short bursts (V8's collector helpers).
 */
export function cpuSplit(pid: number): { user: number; system: number } {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return { user: Number(fields[11]), system: Number(fields[12]) };
}

/** CPU ticks of a process, user and kernel together. */
export function cpuTicks(pid: number): number {
  const { user, system } = cpuSplit(pid);
  return user + system;
}

/** The median of the runs that gave a figure (a failed dnsperf run, reported above, gives NaN). */
export function median(values: number[]): number {
  const sorted = values.filter((value) => !Number.isNaN(value)).sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** Waits until the server on `port` answers `h0.bench` (unbound's bench zone) through dig. */
export async function waitReady(port: number): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const { stdout } = await new Deno.Command("dig", {
      args: ["@127.0.0.1", "-p", String(port), "h0.bench", "+short", "+time=1", "+tries=1"],
      stdout: "piped",
      stderr: "null",
    }).output();
    if (new TextDecoder().decode(stdout).includes("10.9.9.9")) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`Server on port ${port} did not answer`);
}

/**
 * dnsdist's configuration for the benchmarks: listening on `port`, one backend, a packet cache
 * of `cacheEntries` entries, no status lookups; `extra` lines appended. dnsdist stores no answer
 * in a full cache (it evicts only expired entries, in its cleaning pass): once full, a miss is
 * only forwarded.
 */
export function dnsdistConfig(
  port: number,
  upstream: string,
  extra: string[] = [],
  cacheEntries = 100_000,
): string {
  return [
    `setLocal("127.0.0.1:${port}")`,
    'setACL({"127.0.0.0/8"})',
    'setSecurityPollSuffix("")', // no status lookup through the system resolver
    `newServer({address="${upstream}", checkName="h0.bench."})`,
    `pc = newPacketCache(${cacheEntries})`,
    'getPool(""):setCache(pc)',
    ...extra,
  ].join("\n") + "\n";
}

/** This proxy's flags giving its cache room for `entries` answers (of up to 1 KiB each). */
export function cacheRoomFlags(entries: number): string[] {
  return ["--cache.max-entries", String(entries), "--cache.max-bytes", String(entries * 1024)];
}

/**
 * The entries a peer's cache holds, for a bench's entries line: read from its Prometheus text at
 * `metricsPort` (this proxy's `dns_cache_entries` or dnsdist's `dnsdist_pool_cache_entries`, its
 * `webserver`), then `after`, and a mark when it reached `room` (it could not keep every answer);
 * or why it could not be read.
 */
export async function describeCacheEntries(
  metricsPort: number,
  room: number,
  after = "",
): Promise<string> {
  try {
    const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    const held = /^(?:dns_cache_entries|dnsdist_pool_cache_entries\{pool="_default_"\}) (\d+)/m
      .exec(text)?.[1];
    const full = Number(held) >= room ? " (full: it could not keep every answer)" : "";
    return `${held ?? "?"}${after}${full}`;
  } catch (error) {
    return `unread (${(error as Error).message})`;
  }
}

/** dnsdist's configuration lines serving its metrics on `port` (read by `cacheEntriesHeld`). */
export function dnsdistMetrics(port: number): string[] {
  return [
    `webserver("127.0.0.1:${port}")`,
    'setWebserverConfig({password="bench", statsRequireAuthentication=false})',
  ];
}

/** A server the benchmark starts: its name, its port and, once started, its process. */
export interface BenchPeer {
  name: string;
  port: number;
  process?: Deno.ChildProcess;
}

/**
 * The command line of this proxy (or another checkout's `entry`) listening on `port` and
 * forwarding to `upstream`, quiet, with prefetch off; `extra` flags appended.
 */
export function triadCommand(
  port: number,
  upstream: string,
  extra: string[],
  entry = new URL("../main.ts", import.meta.url).pathname,
): string[] {
  return [
    Deno.execPath(),
    "run",
    "-A",
    "--unstable-net",
    entry,
    "--listen",
    `127.0.0.1:${port}`,
    "--upstream",
    upstream,
    "--log.level",
    "error",
    "--cache.prefetch-hits",
    "0",
    ...extra,
  ];
}

/** Starts every peer's command pinned to `cpu` (output discarded) and waits until each answers. */
export async function startPinned(
  peers: BenchPeer[],
  commands: Record<string, string[]>,
  cpu: string,
): Promise<void> {
  for (const peer of peers) {
    peer.process = new Deno.Command("taskset", {
      args: ["-c", cpu, ...commands[peer.name]!],
      stdout: "null",
      stderr: "null",
    }).spawn();
  }
  for (const peer of peers) await waitReady(peer.port);
}

/** Writes dnsperf's cache-hit query file in `dir` (100 names of unbound's bench zone); its path. */
export async function writeHitFile(dir: string): Promise<string> {
  const path = `${dir}/hit.txt`;
  await Deno.writeTextFile(path, Array.from({ length: 100 }, (_, i) => `h${i}.bench A\n`).join(""));
  return path;
}
