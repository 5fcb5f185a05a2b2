/**
 * Helpers for tests that watch another process: run one under a low `ulimit -n` with its log in a
 * file, count its descriptors, read its CPU time.
 *
 * @module
 */

/** A child process under `ulimit -n LIMIT`, its stdin and stdout lines, and its log file. */
export interface LimitedChild extends AsyncDisposable {
  pid: number;
  log: string;
  /** The next line the child prints. */
  line(): Promise<string>;
  /** Writes a command line to the child. */
  send(line: string): Promise<void>;
}

/**
 * Starts `deno run -A <script> <args>` under `ulimit -n <limit>` with stderr in a file.
 *
 * @param script The script's path.
 * @param args Its arguments.
 * @param limit The descriptor limit.
 */
export async function limitedChild(
  script: string,
  args: string[],
  limit: number,
): Promise<LimitedChild> {
  const log = await Deno.makeTempFile({ prefix: "exhaustion-", suffix: ".log" });
  const child = new Deno.Command("sh", {
    args: [
      "-c",
      `ulimit -n ${limit} && exec "$0" run -A "$@" 2>"${log}"`,
      Deno.execPath(),
      script,
      ...args,
    ],
    stdin: "piped",
    stdout: "piped",
  }).spawn();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const writer = child.stdin.getWriter();
  let buffered = "";
  return {
    pid: child.pid,
    log,
    async line() {
      for (;;) {
        const at = buffered.indexOf("\n");
        if (at >= 0) {
          const line = buffered.slice(0, at);
          buffered = buffered.slice(at + 1);
          return line;
        }
        const { value, done } = await lines.read();
        if (done) throw new Error(`child ended; its log: ${await tail(log)}`);
        buffered += value;
      }
    },
    async send(line) {
      await writer.write(new TextEncoder().encode(line + "\n"));
    },
    async [Symbol.asyncDispose]() {
      try {
        await writer.close();
      } catch { /* gone */ }
      const timer = setTimeout(() => {
        try {
          child.kill("SIGKILL");
        } catch { /* exited */ }
      }, 10_000);
      await child.status;
      clearTimeout(timer);
      await lines.cancel();
      await Deno.remove(log);
    },
  };
}

export async function tail(path: string): Promise<string> {
  const text = await Deno.readTextFile(path);
  return text.slice(-2000);
}

/** Descriptors the process holds. */
export function fdCount(pid: number): number {
  let n = 0;
  for (const _ of Deno.readDirSync(`/proc/${pid}/fd`)) n++;
  return n;
}

/** The process's CPU time (user plus system), in seconds. */
export function cpuSeconds(pid: number): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // Fields 14 and 15 (utime, stime) are the 12th and 13th after the command name.
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** Lines in a file. */
export async function lineCount(path: string): Promise<number> {
  const text = await Deno.readTextFile(path);
  return text.split("\n").filter((line) => line.length > 0).length;
}
