/**
 * What the bench runners share: a process's CPU ticks and per-thread counters, stopping a server,
 * medians.
 *
 * @module
 */

/** utime and stime of a process (all threads), in clock ticks. */
export function cpuTicks(pid: number): { user: number; system: number } {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return { user: Number(fields[11]), system: Number(fields[12]) };
}

/**
 * One thread's counters: its name (a Worker's is `worker-N`), and from `schedstat` its run time,
 * its time waiting on a run queue (both ns) and its timeslices, and its context switches
 * (voluntary and not: a wake-up is one or more).
 */
export interface ThreadStats {
  name: string;
  ns: number;
  waitNs: number;
  runs: number;
  switches: number;
}

/**
 * Every thread of a process, by thread id: read before and after a window, then compared with
 * {@linkcode threadsBetween}. Unlike the tick-based utime and stime (10 ms ticks) this resolves one
 * wake-up of an idle server.
 */
export function threadStats(pid: number): Map<string, ThreadStats> {
  const stats = new Map<string, ThreadStats>();
  for (const task of Deno.readDirSync(`/proc/${pid}/task`)) {
    const dir = `/proc/${pid}/task/${task.name}`;
    try {
      const status = Deno.readTextFileSync(`${dir}/status`);
      const count = (name: string) =>
        Number(new RegExp(`^${name}:\\s+(\\d+)`, "m").exec(status)![1]);
      const sched = Deno.readTextFileSync(`${dir}/schedstat`).split(" ");
      stats.set(task.name, {
        name: /^Name:\s+(.*)$/m.exec(status)![1]!,
        ns: Number(sched[0]),
        waitNs: Number(sched[1]),
        runs: Number(sched[2]),
        switches: count("voluntary_ctxt_switches") + count("nonvoluntary_ctxt_switches"),
      });
    } catch {
      // the thread exited meanwhile
    }
  }
  return stats;
}

/** What a process's threads did between two {@linkcode threadStats} readings. */
export interface ThreadsUsed {
  /** Run time, ns. */
  ns: number;
  /** Time waiting on a run queue, ns. */
  waitNs: number;
  /** Timeslices. */
  runs: number;
  /** Context switches. */
  switches: number;
  /** Each thread that was switched to, with its name and count. */
  switched: { name: string; switches: number }[];
  /** The names of the threads that exited meanwhile (not counted). */
  exited: string[];
}

/**
 * The difference of two {@linkcode threadStats} readings, thread by thread: a thread started
 * meanwhile counts from zero, one that exited meanwhile is left out (its counters cannot be read
 * any more). A difference of sums instead lost the whole lifetime of a thread that exited in the
 * window (a runtime's idle blocking threads do, 3-4 in a 10 s idle window): once it went negative.
 */
export function threadsBetween(
  before: Map<string, ThreadStats>,
  after: Map<string, ThreadStats>,
): ThreadsUsed {
  const used: ThreadsUsed = { ns: 0, waitNs: 0, runs: 0, switches: 0, switched: [], exited: [] };
  for (const [tid, now] of after) {
    const then = before.get(tid);
    const switches = now.switches - (then?.switches ?? 0);
    used.ns += now.ns - (then?.ns ?? 0);
    used.waitNs += now.waitNs - (then?.waitNs ?? 0);
    used.runs += now.runs - (then?.runs ?? 0);
    used.switches += switches;
    if (switches > 0) used.switched.push({ name: now.name, switches });
  }
  for (const [tid, then] of before) if (!after.has(tid)) used.exited.push(then.name);
  return used;
}

/** Stops a server: SIGTERM, then SIGKILL after 3 s. */
export async function stop(child: Deno.ChildProcess): Promise<void> {
  try {
    child.kill("SIGTERM");
  } catch { /* gone */ }
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch { /* gone */ }
  }, 3000);
  await child.status;
  clearTimeout(timer);
}

/** The median (NaN for none). */
export function median(values: number[]): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}
