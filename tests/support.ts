/**
 * Pieces the integration tests share: whether a path exists, the process's capabilities (parsed
 * by the tracer's own code), stopping a child politely then firmly, and the tracer's event type.
 *
 * @module
 */
export { effectiveCapabilityBits } from "../ebpf/trace/check_trace_prerequisites.ts";
export type { TraceEvent } from "../ebpf/trace/trace_event.ts";

/** Whether something exists at `path` (a file, a directory, a device). */
export function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

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
