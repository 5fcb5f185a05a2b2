/**
 * Pieces the integration tests share: whether a path exists, the process's capabilities (parsed
 * by the tracer's own code), stopping a child politely then firmly, the tracer's event type, and
 * writing to a TCP server in parts it is sure to read apart.
 *
 * @module
 */
import { pollUntil } from "./wait_for.ts";

export { exists } from "../ebpf/_exists.ts";
export { effectiveCapabilityBits } from "../ebpf/trace/check_trace_prerequisites.ts";
export type { TraceEvent } from "../ebpf/trace/trace_event.ts";

/** Whether `path` is a regular file. */
export function isFile(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}

/**
 * Stops a child: SIGTERM, then SIGKILL if it has not exited after `graceMs`.
 *
 * @param child The child process.
 * @param graceMs How long it has to exit on SIGTERM. @default {5000}
 * @returns Its exit status.
 */
export async function stopChild(
  child: Deno.ChildProcess,
  graceMs = 5000,
): Promise<Deno.CommandStatus> {
  const kill = (signal: Deno.Signal) => {
    try {
      child.kill(signal);
    } catch { /* already exited */ }
  };
  kill("SIGTERM");
  const timer = setTimeout(() => kill("SIGKILL"), graceMs);
  try {
    return await child.status;
  } finally {
    clearTimeout(timer);
  }
}

/** A TCP socket's queues in bytes, as `/proc/net/tcp` shows them. */
interface TcpQueues {
  /** Sent and not yet acknowledged by the peer. */
  readonly tx: number;
  /** Received and not yet read by the program. */
  readonly rx: number;
}

/**
 * The queues of the established TCP socket with these ports in this network namespace, from
 * `/proc/net/tcp` and `/proc/net/tcp6`; `undefined` when there is none.
 */
async function tcpQueues(localPort: number, remotePort: number): Promise<TcpQueues | undefined> {
  const portOf = (address: string) => parseInt(address.slice(address.indexOf(":") + 1), 16);
  for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    const text = await Deno.readTextFile(table);
    for (const line of text.split("\n").slice(1)) {
      const [, local, remote, state, queues] = line.trim().split(/\s+/);
      if (local === undefined || remote === undefined || queues === undefined) continue;
      if (state !== "01" || portOf(local) !== localPort || portOf(remote) !== remotePort) continue;
      const [tx, rx] = queues.split(":").map((hex) => parseInt(hex, 16));
      return { tx: tx!, rx: rx! };
    }
  }
  return undefined;
}

/**
 * Writes `bytes` to a TCP server in this network namespace and waits until the server has read
 * them all: first until the server's kernel has acknowledged them (the client socket's send
 * queue is empty), then until the server socket's receive queue is empty. The next write then
 * reaches the server in a read of its own, whatever the kernel would have merged: the barrier
 * for tests that split a message across writes. Sets `TCP_NODELAY`.
 *
 * @param conn The client's connection.
 * @param bytes What to write.
 */
export async function writeAndWaitUntilRead(conn: Deno.TcpConn, bytes: Uint8Array): Promise<void> {
  conn.setNoDelay(true);
  for (let written = 0; written < bytes.length;) {
    written += await conn.write(bytes.subarray(written));
  }
  const client = conn.localAddr.port;
  const server = conn.remoteAddr.port;
  await pollUntil(
    async () => (await tcpQueues(client, server))?.tx === 0,
    `the server on port ${server} to acknowledge ${bytes.length} bytes from port ${client}`,
    5000,
    1,
  );
  await pollUntil(
    async () => (await tcpQueues(server, client))?.rx === 0,
    `the server on port ${server} to read ${bytes.length} bytes from port ${client}`,
    5000,
    1,
  );
}

/**
 * Compiles a C test fixture with clang.
 *
 * @param source The `.c` file.
 * @param output The executable to write.
 * @param flags Flags before `-o`, such as `["-O1", "-g"]`.
 * @throws {Error} With clang's messages when it fails.
 */
export async function compileWithClang(
  source: string,
  output: string,
  flags: readonly string[],
): Promise<void> {
  const { success, stderr } = await new Deno.Command("clang", {
    args: [...flags, "-o", output, source],
    stderr: "piped",
  }).output();
  if (!success) throw new Error(`clang ${source}: ${new TextDecoder().decode(stderr)}`);
}
