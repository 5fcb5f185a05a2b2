/**
 * Keeps a spawned server process's stderr and stops it politely (SIGTERM, then SIGKILL after
 * 5 s): what every test server helper needs from its child.
 *
 * @module
 */
import { stopChild } from "../support.ts";

/** A child process under supervision. */
export interface SupervisedChild {
  /** What it wrote to stderr so far. */
  log(): string;
  /** Whether it has exited. */
  exited(): boolean;
  /** Stops it (idempotent) and returns its status once stderr is read to the end. */
  stop(): Promise<Deno.CommandStatus>;
}

/**
 * Supervises a child spawned with `stderr: "piped"`.
 *
 * @param child The child.
 * @returns Its log, whether it exited, and how to stop it.
 */
export function supervise(child: Deno.ChildProcess): SupervisedChild {
  let stderr = "";
  const reading = (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of child.stderr) stderr += decoder.decode(chunk, { stream: true });
  })();
  let exited: Deno.CommandStatus | undefined;
  const status = child.status.then((s) => exited = s);
  return {
    log: () => stderr,
    exited: () => exited !== undefined,
    stop: async () => {
      if (exited === undefined) {
        await stopChild(child, 5000);
        await status;
      }
      await reading;
      return exited!;
    },
  };
}
