/**
 * What the bench runners share: a process's CPU ticks, stopping a server, medians.
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
 * A process's CPU time in nanoseconds and how many times its threads were scheduled in: the sums
 * of the first and third fields of every `/proc/PID/task/TID/schedstat` (run time in ns and
 * timeslices). Unlike the tick-based utime and stime (10 ms ticks) this resolves one wake-up of an
 * idle server; threads that exit between two readings drop out of the later one.
 */
export function cpuNanos(pid: number): { ns: number; runs: number } {
  let ns = 0;
  let runs = 0;
  for (const task of Deno.readDirSync(`/proc/${pid}/task`)) {
    let text: string;
    try {
      text = Deno.readTextFileSync(`/proc/${pid}/task/${task.name}/schedstat`);
    } catch {
      continue; // the thread exited meanwhile
    }
    const fields = text.split(" ");
    ns += Number(fields[0]);
    runs += Number(fields[2]);
  }
  return { ns, runs };
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
