/**
 * Drives `conns_load.c` (compiled here with the C compiler on `PATH`): several processes, each
 * holding its share of N echo connections from loopback source addresses of its own.
 *
 * @module
 */
import { compileC } from "../../tests/servers/compile_c.ts";

/**
 * The command line of netloop's echo example on one loop of `backend` (the server the benches
 * and scale tests measure).
 */
export function echoCommand(backend: string, port: number, udp = false): string[] {
  return [
    Deno.execPath(),
    "run",
    "-A",
    new URL("../examples/echo.ts", import.meta.url).pathname,
    "--port",
    String(port),
    "--backend",
    backend,
    "--loops",
    "1",
    ...(udp ? ["--udp"] : []),
  ];
}

/**
 * Compiles the load tool into `dir`; returns the executable's path. With `tls`, it can also speak
 * DNS over TLS (linked with OpenSSL: needs libssl-dev).
 */
export async function buildLoadTool(dir: string, options: { tls?: boolean } = {}): Promise<string> {
  const source = new URL("./conns_load.c", import.meta.url).pathname;
  if (!options.tls) {
    const output = `${dir}/conns_load`;
    await compileC(source, output);
    return output;
  }
  const output = `${dir}/conns_load_tls`;
  await Deno.writeTextFile(
    `${output}.c`,
    `#define CONNS_TLS 1\n#include ${JSON.stringify(source)}\n`,
  );
  await compileC(`${output}.c`, output, ["ssl", "crypto"]);
  return output;
}

/** One process of the fleet: its stdin and its stdout lines. */
class LoadProcess {
  readonly #child: Deno.ChildProcess;
  readonly #writer: WritableStreamDefaultWriter<Uint8Array>;
  readonly #lines: ReadableStreamDefaultReader<string>;
  #buffered = "";

  constructor(
    tool: string,
    port: number,
    count: number,
    slice: number,
    interval: number,
    cpu?: string,
    mode: "echo" | "dns" | "dot" = "echo",
  ) {
    const args = [String(port), String(count), String(slice)];
    if (interval > 0 || mode !== "echo") args.push(String(interval));
    if (mode !== "echo") args.push(mode);
    this.#child = new Deno.Command(cpu === undefined ? tool : "taskset", {
      args: cpu === undefined ? args : ["-c", cpu, tool, ...args],
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    this.#writer = this.#child.stdin.getWriter();
    this.#lines = this.#child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  }

  get pid(): number {
    return this.#child.pid;
  }

  async send(line: string): Promise<void> {
    await this.#writer.write(new TextEncoder().encode(line + "\n"));
  }

  /** The next line that starts with `word`, as numbers after it. */
  async expect(word: string): Promise<number[]> {
    for (;;) {
      const at = this.#buffered.indexOf("\n");
      if (at >= 0) {
        const line = this.#buffered.slice(0, at).trim();
        this.#buffered = this.#buffered.slice(at + 1);
        const [first, ...rest] = line.split(" ");
        if (first === word) return rest.map(Number);
        continue;
      }
      const { value, done } = await this.#lines.read();
      if (done) throw new Error(`conns_load ended before printing "${word}"`);
      this.#buffered += value;
    }
  }

  async stop(): Promise<void> {
    try {
      await this.#writer.close();
    } catch { /* gone */ }
    try {
      this.#child.kill("SIGKILL");
    } catch { /* exited */ }
    await this.#child.status;
    await this.#lines.cancel();
  }
}

/** What opening the fleet's connections gave. */
export interface Opened {
  held: number;
  failed: number;
  /** Connections established per second (all processes, from their start to the last echo). */
  rate: number;
}

/** N connections held by several `conns_load` processes. */
export class LoadFleet implements AsyncDisposable {
  readonly #processes: LoadProcess[];

  private constructor(processes: LoadProcess[]) {
    this.#processes = processes;
  }

  /**
   * Starts the processes; each opens its share at once.
   *
   * @param tool From {@linkcode buildLoadTool}.
   * @param port The server's port on 127.0.0.1.
   * @param total Connections in all.
   * @param options Processes (default 3), the message interval in seconds (0: none), the first
   *   source slice (127.SLICE.x.1; default 10), a CPU list for taskset, DNS queries instead of
   *   echoed bytes, and those over TLS (`tls`; the tool built with `tls`).
   */
  static start(
    tool: string,
    port: number,
    total: number,
    options: {
      processes?: number;
      interval?: number;
      slice?: number;
      cpu?: string;
      dns?: boolean;
      tls?: boolean;
    } = {},
  ): LoadFleet {
    const n = options.processes ?? 3;
    const processes: LoadProcess[] = [];
    for (let i = 0; i < n; i++) {
      const share = Math.floor(total / n) + (i < total % n ? 1 : 0);
      processes.push(
        new LoadProcess(
          tool,
          port,
          share,
          (options.slice ?? 10) + i,
          options.interval ?? 0,
          options.cpu,
          options.tls ? "dot" : options.dns ? "dns" : "echo",
        ),
      );
    }
    return new LoadFleet(processes);
  }

  /** The processes' ids. */
  get pids(): number[] {
    return this.#processes.map((p) => p.pid);
  }

  /** Waits until every process has opened (or failed) its share. */
  async opened(): Promise<Opened> {
    const reports = await Promise.all(this.#processes.map((p) => p.expect("open")));
    const held = reports.reduce((sum, r) => sum + r[0]!, 0);
    const failed = reports.reduce((sum, r) => sum + r[1]!, 0);
    const seconds = Math.max(...reports.map((r) => r[2]!)) / 1e6;
    return { held, failed, rate: held / seconds };
  }

  /** One message on every held connection; the time until every echo is back. */
  async ping(): Promise<{ echoed: number; bad: number; ms: number }> {
    const started = performance.now();
    await Promise.all(this.#processes.map((p) => p.send("ping")));
    const reports = await Promise.all(this.#processes.map((p) => p.expect("pong")));
    return {
      echoed: reports.reduce((sum, r) => sum + r[0]!, 0),
      bad: reports.reduce((sum, r) => sum + r[1]!, 0),
      ms: performance.now() - started,
    };
  }

  /** `k` round trips, one at a time, on a new connection: p50, p99 and max, in microseconds. */
  async probe(k = 1000): Promise<{ p50: number; p99: number; max: number }> {
    const first = this.#processes[0]!;
    await first.send(`probe ${k}`);
    const [p50, p99, max] = await first.expect("probe");
    return { p50: p50!, p99: p99!, max: max! };
  }

  /**
   * For `seconds`, every held connection sends a message every `everyMs` (0: as soon as the last
   * is answered); the round trips' p50, p99 and max (µs, the worst process's) and their count.
   */
  async active(
    seconds: number,
    everyMs: number,
  ): Promise<{ messages: number; p50: number; p99: number; max: number }> {
    await Promise.all(this.#processes.map((p) => p.send(`active ${seconds} ${everyMs}`)));
    const reports = await Promise.all(this.#processes.map((p) => p.expect("active")));
    return {
      messages: reports.reduce((sum, r) => sum + r[0]!, 0),
      p50: Math.max(...reports.map((r) => r[1]!)),
      p99: Math.max(...reports.map((r) => r[2]!)),
      max: Math.max(...reports.map((r) => r[3]!)),
    };
  }

  /** Held, lost and bad over every process, and their CPU seconds. */
  async stats(): Promise<{ held: number; lost: number; bad: number; cpu: number }> {
    await Promise.all(this.#processes.map((p) => p.send("stats")));
    const reports = await Promise.all(this.#processes.map((p) => p.expect("stats")));
    const sum = (i: number) => reports.reduce((total, r) => total + r[i]!, 0);
    return { held: sum(0), lost: sum(1), bad: sum(2), cpu: sum(3) };
  }

  /** Closes every connection (each process exits). */
  async close(): Promise<void> {
    await Promise.all(this.#processes.map((p) => p.send("close")));
    await Promise.all(this.#processes.map((p) => p.expect("closed")));
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await Promise.all(this.#processes.map((p) => p.stop()));
  }
}

/** The median of numbers. */
export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

/** A process's resident memory, in KiB. */
export function rssKiB(pid: number): number {
  return Number(/^VmRSS:\s+(\d+)/m.exec(Deno.readTextFileSync(`/proc/${pid}/status`))![1]);
}

/** Waits until something accepts TCP connections on 127.0.0.1:`port` (20 s at most). */
export async function listening(port: number): Promise<void> {
  const until = Date.now() + 20_000;
  while (Date.now() < until) {
    try {
      (await Deno.connect({ hostname: "127.0.0.1", port })).close();
      return;
    } catch { /* not yet */ }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`nothing listens on port ${port}`);
}

/** Kills a server process (if it still runs) and waits for it. */
export async function killed(child: Deno.ChildProcess): Promise<void> {
  try {
    child.kill("SIGKILL");
  } catch { /* gone */ }
  await child.status;
}
