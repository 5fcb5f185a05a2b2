/**
 * The interface every provider's VM implements.
 *
 * @module
 */
import { runCommand, type RunResult } from "./_command.ts";
import type { ProviderName } from "./options.ts";

/** Options of {@linkcode Machine.exec}. */
export interface ExecOptions {
  /** Kill the command after this long. */
  timeoutMs?: number;
  /** Stream the guest's output to ours as it comes. */
  echo?: boolean;
  /** Abort the command. */
  signal?: AbortSignal;
  /** Return a non-zero exit instead of throwing. */
  allowFailure?: boolean;
}

/**
 * Runs a shell command in the guest over SSH (`ssh -F <config> default -- <command>`), from the
 * network namespace `netns` when one is given.
 *
 * @param sshConfig The SSH configuration file naming the guest `default`.
 * @param command The command line for the guest's shell.
 * @param options Timeout, echo, abort, and whether a non-zero exit is returned.
 * @param netns The network namespace the guest's network lives in.
 */
export function execOverSsh(
  sshConfig: string,
  command: string,
  options: ExecOptions = {},
  netns?: string,
): Promise<RunResult> {
  return runCommand("ssh", ["-F", sshConfig, "default", "--", command], {
    ...options,
    ...(netns ? { netns } : {}),
  });
}

/** A test VM: booted, reachable over SSH as `vagrant`, the repository at `/triad`. */
export interface Machine extends AsyncDisposable {
  /** The provider's name for the machine (libvirt domain, qemu process). */
  readonly name: string;
  /** Which provider runs it. */
  readonly provider: ProviderName;
  /**
   * Boots the guest, waits for SSH, copies the repository to `/triad` and the host's Deno cache
   * to `/var/cache/triad-deno`, and runs the provisioning script.
   */
  up(signal?: AbortSignal): Promise<void>;
  /** Runs a shell command in the guest as `vagrant` (use `sudo` for root). */
  exec(command: string, options?: ExecOptions): Promise<RunResult>;
  /** Whether the guest is running now. */
  running(): Promise<boolean>;
  /** The guest's serial console so far. */
  serialLog(): Promise<string>;
  /** Stops the guest and removes every disk, domain and process made for it. */
  destroy(): Promise<void>;
  /** Human instructions to reach and to remove a kept machine. */
  describeKeep(): string;
}

/** Reads a serial log file, `""` when it does not exist yet. */
export async function readSerialLog(path: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch {
    return "";
  }
}

/** Returns the last lines of a serial log, control sequences removed. */
export function serialTail(log: string, lines = 60): string {
  // deno-lint-ignore no-control-regex
  const clean = log.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, "").replace(/\r/g, "");
  return clean.trimEnd().split("\n").slice(-lines).join("\n");
}

/** Quotes a word for a POSIX shell. */
export function shellQuote(word: string): string {
  return /^[A-Za-z0-9_.\/:=@%+-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}
