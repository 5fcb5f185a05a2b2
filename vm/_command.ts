/**
 * Running the external programs the harness drives (vagrant, virsh, qemu, debootstrap, ssh) with a
 * timeout, an abort signal and errors that carry the tail of their output.
 *
 * @module
 */
import { VmError } from "./errors.ts";

/** Options of {@linkcode runCommand}. */
interface RunOptions {
  /** Working directory. */
  cwd?: string;
  /** Extra environment variables. */
  env?: Record<string, string>;
  /** Kills the program after this many milliseconds (SIGTERM, then SIGKILL 5 s later). */
  timeoutMs?: number;
  /** Kills the program when aborted. */
  signal?: AbortSignal;
  /** Bytes written to stdin. */
  stdin?: string | Uint8Array;
  /** Pass stdout/stderr through to ours while also capturing them. */
  echo?: boolean;
  /** Do not throw on a non-zero exit. */
  allowFailure?: boolean;
  /** Run inside this network namespace (`ip netns exec`). */
  netns?: string;
}

/** What a program did. */
export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

function tail(text: string, lines = 30): string {
  return text.trimEnd().split("\n").slice(-lines).join("\n");
}

/**
 * Runs a program to completion and returns its output; throws {@linkcode VmError} on a non-zero
 * exit (unless `allowFailure`), on a timeout and on abort.
 */
export async function runCommand(
  program: string,
  args: readonly string[],
  options: RunOptions = {},
): Promise<RunResult> {
  const argv = options.netns ? ["ip", "netns", "exec", options.netns, program, ...args] : [
    program,
    ...args,
  ];
  const shown = argv.join(" ");
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(argv[0]!, {
      args: argv.slice(1),
      ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
      env: options.env ?? {},
      stdin: options.stdin === undefined ? "null" : "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
  } catch (cause) {
    const debianPackage = cause instanceof Deno.errors.NotFound
      ? listedPackage(argv[0]!)
      : undefined;
    throw new VmError(
      debianPackage === undefined
        ? `Cannot start ${argv[0]}: ${cause}`
        : `Cannot start ${argv[0]}, it is not installed: apt-get install ${debianPackage} ` +
          `(or sudo deno task setup)`,
      { code: "missing_tool", cause },
    );
  }
  if (options.stdin !== undefined) {
    const writer = child.stdin.getWriter();
    await writer.write(
      typeof options.stdin === "string" ? new TextEncoder().encode(options.stdin) : options.stdin,
    );
    await writer.close();
  }
  let timedOut = false;
  let killTimer: ReturnType<typeof setTimeout> | undefined;
  const kill = () => {
    try {
      child.kill("SIGTERM");
    } catch { /* already gone */ }
    killTimer = setTimeout(() => {
      try {
        child.kill("SIGKILL");
      } catch { /* already gone */ }
    }, 5000);
  };
  const timer = options.timeoutMs === undefined ? undefined : setTimeout(() => {
    timedOut = true;
    kill();
  }, options.timeoutMs);
  const onAbort = () => kill();
  options.signal?.addEventListener("abort", onAbort, { once: true });
  const collect = async (stream: ReadableStream<Uint8Array>, sink: typeof Deno.stdout | null) => {
    const decoder = new TextDecoder();
    let text = "";
    for await (const chunk of stream) {
      if (sink) await sink.write(chunk);
      text += decoder.decode(chunk, { stream: true });
    }
    return text + decoder.decode();
  };
  const [stdout, stderr, status] = await Promise.all([
    collect(child.stdout, options.echo ? Deno.stdout : null),
    collect(child.stderr, options.echo ? Deno.stderr : null),
    child.status,
  ]);
  clearTimeout(timer);
  clearTimeout(killTimer);
  options.signal?.removeEventListener("abort", onAbort);
  const result = { code: status.code, stdout, stderr, timedOut };
  if (timedOut) {
    throw new VmError(
      `${shown} timed out after ${Math.round((options.timeoutMs ?? 0) / 1000)} s\n${
        tail(stderr || stdout)
      }`,
      { code: "timeout" },
    );
  }
  if (options.signal?.aborted) {
    throw new VmError(`${argv[0]} was interrupted`, { code: "interrupted" });
  }
  if (status.code !== 0 && !options.allowFailure) {
    throw new VmError(
      `${shown} failed with exit code ${status.code}\n${tail(stderr || stdout)}`,
      { code: "command_failed" },
    );
  }
  return result;
}

/**
 * The Debian package of a program, from the checkout's `.ci/packages.tsv` (the harness runs from a
 * checkout); `undefined` when the list or the program is not there.
 */
export function listedPackage(program: string): string | undefined {
  let list: string;
  try {
    list = Deno.readTextFileSync(new URL("../.ci/packages.tsv", import.meta.url));
  } catch {
    return undefined;
  }
  for (const line of list.split("\n")) {
    const [what, debianPackage] = line.split("\t");
    if (what === program && debianPackage) return debianPackage;
  }
  return undefined;
}

/** Returns whether a program is on PATH (or in /usr/sbin, /sbin). */
export function hasProgram(name: string): boolean {
  const dirs = [...(Deno.env.get("PATH") ?? "").split(":"), "/usr/sbin", "/sbin"];
  return dirs.some((dir) => {
    if (dir === "") return false;
    try {
      return Deno.statSync(`${dir}/${name}`).isFile;
    } catch {
      return false;
    }
  });
}

/**
 * Stops a child: SIGTERM, then SIGKILL if it is still running after `graceMs`; resolves once it
 * has exited.
 */
export async function stopChild(child: Deno.ChildProcess, graceMs = 10_000): Promise<void> {
  try {
    child.kill("SIGTERM");
  } catch { /* gone */ }
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch { /* gone */ }
  }, graceMs);
  await child.status;
  clearTimeout(timer);
}
