/**
 * Runs one of deno.json's tasks as its own process (the task's command line, with this Deno
 * binary) and waits until its `/health/live` answers 200: how the container images run them.
 *
 * @module
 */
import { supervise } from "./supervised_child.ts";

/** A running task. */
export interface TaskProcess {
  /** Its stdout, when asked to keep it (`stdout: "piped"`); else it is discarded. */
  readonly stdout: ReadableStream<Uint8Array> | undefined;
  /** What the process wrote to stderr so far. */
  log(): string;
  /** Sends SIGTERM and returns the exit status (SIGKILL after 5 s). Idempotent. */
  stop(): Promise<Deno.CommandStatus>;
}

const root = new URL("../../", import.meta.url);

/**
 * Starts `deno task <task> <args>` and polls `<http>/health/live` until it answers 200.
 *
 * @param task The task's name in deno.json (`dns`, `trace`).
 * @param args Arguments after the task's own.
 * @param http `http://host:port` of its health endpoint.
 * @param stdout `piped` to keep its stdout (unread, it fills the pipe). @default {"null"}
 * @returns The running process.
 * @throws {Error} With its stderr, when it exits or is not live within 30 s.
 */
export async function startTaskProcess(
  task: string,
  args: string[],
  http: string,
  stdout: "null" | "piped" = "null",
): Promise<TaskProcess> {
  const json = JSON.parse(await Deno.readTextFile(new URL("deno.json", root)));
  const words = String(json.tasks[task]).split(/\s+/);
  if (words[0] !== "deno") throw new Error(`deno.json tasks.${task} does not start with deno`);
  const child = new Deno.Command(Deno.execPath(), {
    args: [...words.slice(1), ...args],
    cwd: root,
    env: { NO_COLOR: "1" },
    stdin: "null",
    stdout,
    stderr: "piped",
  }).spawn();
  const { log, exited, stop } = supervise(child);
  const deadline = performance.now() + 30_000; // a cold start compiles the program
  for (;;) {
    const live = await fetch(`${http}/health/live`).then(async (r) => {
      await r.body?.cancel();
      return r.status;
    }, () => 0);
    if (live === 200) break;
    if (exited() || (live !== 0 && live !== 503) || performance.now() > deadline) {
      await stop();
      throw new Error(`deno task ${task} did not come up (status ${live}): ${log()}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return { stdout: stdout === "piped" ? child.stdout : undefined, log, stop };
}
