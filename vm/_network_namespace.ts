/**
 * A network namespace the harness creates for the VM's network and removes afterwards.
 *
 * @module
 */
import { runCommand } from "./_command.ts";
import { VmError } from "./errors.ts";

/**
 * A named network namespace (`ip netns add`) with only loopback up and no link to the host's
 * network: libvirtd, its bridge, dnsmasq and vagrant run inside, so nothing they start can reach
 * any address outside loopback and this namespace. Dispose kills the processes still inside
 * (the harness started them all) and deletes the namespace.
 *
 * @example
 * ```ts ignore
 * import { NetworkNamespace } from "./_network_namespace.ts";
 * await using ns = await NetworkNamespace.create("triad-vm-test");
 * ```
 */
export class NetworkNamespace implements AsyncDisposable {
  /** The namespace name, for `ip netns exec`. */
  readonly name: string;
  #removed = false;

  private constructor(name: string) {
    this.name = name;
  }

  /**
   * Creates the namespace and brings loopback up.
   *
   * @param name A name not in use (`ip netns list`).
   * @returns The namespace.
   */
  static async create(name: string): Promise<NetworkNamespace> {
    if (!/^[A-Za-z0-9_.-]{1,32}$/.test(name)) {
      throw new VmError(`Network namespace name "${name}" is not valid`, { code: "bad_argument" });
    }
    await runCommand("ip", ["netns", "add", name]);
    const ns = new NetworkNamespace(name);
    try {
      await runCommand("ip", ["link", "set", "lo", "up"], { netns: name });
    } catch (error) {
      await ns.remove();
      throw error;
    }
    return ns;
  }

  /** Returns the ids of processes running inside the namespace. */
  async pids(): Promise<number[]> {
    const { stdout } = await runCommand("ip", ["netns", "pids", this.name], { allowFailure: true });
    return stdout.split(/\s+/).filter((word) => /^\d+$/.test(word)).map(Number);
  }

  /** Kills what still runs inside (SIGTERM, then SIGKILL after 5 s) and deletes the namespace. */
  async remove(): Promise<void> {
    if (this.#removed) return;
    for (const signal of ["SIGTERM", "SIGKILL"] as const) {
      const pids = await this.pids();
      if (pids.length === 0) break;
      for (const pid of pids) {
        try {
          Deno.kill(pid, signal);
        } catch { /* gone */ }
      }
      for (let i = 0; i < 50 && (await this.pids()).length > 0; i++) {
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
    await runCommand("ip", ["netns", "delete", this.name]);
    this.#removed = true;
  }

  /** Same as {@linkcode NetworkNamespace.remove}. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.remove();
  }
}
