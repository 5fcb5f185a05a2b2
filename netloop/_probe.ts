/**
 * Picks the backend for `backend: "auto"` (uring → epoll → portable) and says why.
 *
 * @module
 */
import type { BackendName } from "./event_handler.ts";
import { NetloopError } from "./errors.ts";
import { ffiAllowed } from "./_ffi.ts";

/** The chosen backend and the reason, for the log line. */
interface BackendChoice {
  backend: BackendName;
  reason: string;
}

function ffiReason(): string | undefined {
  if (Deno.build.os !== "linux") return `the OS is ${Deno.build.os}, not Linux`;
  if (!ffiAllowed()) return "FFI is not allowed (run with --allow-ffi)";
  return undefined;
}

/**
 * Checks the uring and epoll backends can run and picks one.
 *
 * @param requested The `backend` option.
 * @param disabled uring features turned off by the caller.
 * @returns The backend and why.
 * @throws {NetloopError} `backend_unavailable` when a backend named explicitly cannot run.
 */
export async function chooseBackend(
  requested: "auto" | BackendName,
  disabled: readonly string[],
): Promise<BackendChoice> {
  if (requested === "portable") return { backend: "portable", reason: "requested" };
  const noFfi = ffiReason();
  if (noFfi !== undefined) {
    if (requested !== "auto") {
      throw new NetloopError(`Backend "${requested}" cannot run: ${noFfi}`, {
        code: "backend_unavailable",
      });
    }
    return { backend: "portable", reason: noFfi };
  }
  if (requested === "epoll") return { backend: "epoll", reason: "requested" };
  const { probeUring } = await import("./backends/uring/probe.ts");
  const probe = probeUring(disabled);
  if (probe.ok) {
    return {
      backend: "uring",
      reason: `${requested === "uring" ? "requested" : "io_uring is available"}; ${probe.summary}`,
    };
  }
  if (requested === "uring") {
    throw new NetloopError(`Backend "uring" cannot run: ${probe.summary}`, {
      code: "backend_unavailable",
    });
  }
  return { backend: "epoll", reason: `io_uring unusable: ${probe.summary}` };
}
