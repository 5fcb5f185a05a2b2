/**
 * Runs `deno task trace --json --metrics 127.0.0.1:<port>` as its own process (the task's
 * command line from deno.json), the way the DaemonSet runs it, and waits for `/health/live`.
 * Needs root (or CAP_BPF + CAP_PERFMON), BTF, tracefs and libbpf: check with testWith first.
 *
 * @module
 */
import { freePort } from "./free_port.ts";
import { startTaskProcess } from "./task_process.ts";

/** A running tracer process. */
export interface TraceProcess extends AsyncDisposable {
  /** `http://127.0.0.1:<port>`: `/metrics`, `/health/live`. */
  readonly http: string;
  /** `127.0.0.1:<port>` of the HTTP server (a Prometheus target). */
  readonly httpAddress: string;
  /** Its JSON Lines, when started with `keepStdout` (unread, they fill the pipe). */
  readonly stdout: ReadableStream<Uint8Array> | undefined;
  /** What the process wrote to stderr so far. */
  log(): string;
  /** Sends SIGTERM and returns the exit status (SIGKILL after 5 s). */
  stop(): Promise<Deno.CommandStatus>;
}

/**
 * Starts the tracer and waits until `/health/live` answers 200.
 *
 * @param extra Arguments after `--json --metrics ...` (filters).
 * @param keepStdout Keep its JSON Lines in `stdout` rather than discard them.
 * @returns The running process.
 */
export async function startTraceProcess(
  extra: string[] = [],
  keepStdout = false,
): Promise<TraceProcess> {
  const httpPort = await freePort();
  const http = `http://127.0.0.1:${httpPort}`;
  const args = ["--json", "--metrics", `127.0.0.1:${httpPort}`, ...extra];
  const { stdout, log, stop } = await startTaskProcess(
    "trace",
    args,
    http,
    keepStdout ? "piped" : "null",
  );
  return {
    stdout,
    http,
    httpAddress: `127.0.0.1:${httpPort}`,
    log,
    stop,
    [Symbol.asyncDispose]: async () => {
      await stop();
    },
  };
}
