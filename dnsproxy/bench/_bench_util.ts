/**
 * What the benchmarks share: a free port, a process's CPU ticks, medians.
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
