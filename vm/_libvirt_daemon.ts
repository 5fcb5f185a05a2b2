/**
 * A private libvirtd (and virtlogd) started inside the harness's network namespace.
 *
 * @module
 */
import { runCommand, stopChild } from "./_command.ts";
import { VmError } from "./errors.ts";

const SOCKET = "/run/libvirt/libvirt-sock";
const URI = "qemu:///system";

async function answering(): Promise<boolean> {
  const { code } = await runCommand("virsh", ["-c", URI, "version"], {
    allowFailure: true,
    timeoutMs: 5000,
  }).catch(() => ({ code: 1 }));
  return code === 0;
}

/**
 * libvirtd and virtlogd running as children of this process inside a network namespace, so the
 * networks libvirt makes (bridges, dnsmasq, NAT rules) exist only there. Refuses to start when
 * another libvirtd already answers on the system socket (it would own the VMs' network in the
 * host's namespace). Dispose stops both daemons.
 *
 * @example
 * ```ts ignore
 * import { LibvirtDaemon } from "./_libvirt_daemon.ts";
 * import { NetworkNamespace } from "./_network_namespace.ts";
 * await using ns = await NetworkNamespace.create("triad-vm-x");
 * await using daemon = await LibvirtDaemon.start(ns.name);
 * ```
 */
export class LibvirtDaemon implements AsyncDisposable {
  /** The connection URI. */
  readonly uri: string = URI;
  #children: Deno.ChildProcess[];

  private constructor(children: Deno.ChildProcess[]) {
    this.#children = children;
  }

  /** Process ids of libvirtd and virtlogd. */
  get pids(): number[] {
    return this.#children.map((child) => child.pid);
  }

  /**
   * Starts virtlogd and libvirtd inside a namespace and waits until libvirtd answers.
   *
   * @param netns The namespace.
   * @param timeoutMs How long libvirtd gets to answer. @default {30000}
   */
  static async start(netns: string, timeoutMs = 30_000): Promise<LibvirtDaemon> {
    if (await answering()) {
      throw new VmError(
        `A libvirtd is already running (${SOCKET}): stop it first, the harness runs its own ` +
          `inside a network namespace so the VM's network stays off the host`,
        { code: "busy" },
      );
    }
    const spawn = (program: string) =>
      new Deno.Command("ip", {
        args: ["netns", "exec", netns, program],
        stdin: "null",
        stdout: "null",
        stderr: "null",
      }).spawn();
    const children: Deno.ChildProcess[] = [];
    const daemon = new LibvirtDaemon(children);
    try {
      children.push(spawn("virtlogd"));
      children.push(spawn("libvirtd"));
      const deadline = Date.now() + timeoutMs;
      while (!(await answering())) {
        if (Date.now() > deadline) {
          throw new VmError(`libvirtd did not answer on ${SOCKET} within ${timeoutMs / 1000} s`, {
            code: "timeout",
          });
        }
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
    } catch (error) {
      await daemon.stop();
      throw error;
    }
    return daemon;
  }

  /**
   * Creates a transient isolated network: a bridge with DHCP and no forwarding, so guests reach
   * nothing but the namespace's own address; DNS is off (the suite needs none).
   *
   * @param name Network name.
   * @param bridge Bridge name (at most 15 characters).
   * @param prefix The /24, such as `192.168.121`.
   */
  async createIsolatedNetwork(name: string, bridge: string, prefix: string): Promise<void> {
    const xml = `<network>
  <name>${name}</name>
  <bridge name='${bridge}' stp='on' delay='0'/>
  <dns enable='no'/>
  <ip address='${prefix}.1' netmask='255.255.255.0'>
    <dhcp><range start='${prefix}.2' end='${prefix}.254'/></dhcp>
  </ip>
</network>
`;
    await runCommand("virsh", ["-c", this.uri, "net-create", "/dev/stdin"], { stdin: xml });
  }

  /** Destroys a network made by {@linkcode LibvirtDaemon.createIsolatedNetwork}. */
  async removeNetwork(name: string): Promise<void> {
    const { stdout } = await runCommand("virsh", ["-c", this.uri, "net-list", "--all", "--name"]);
    if (!stdout.split("\n").some((line) => line.trim() === name)) return;
    await runCommand("virsh", ["-c", this.uri, "net-destroy", name]);
  }

  /**
   * Creates a transient directory storage pool.
   *
   * @param name Pool name.
   * @param dir Its directory (must exist, readable by the qemu user).
   */
  async createPool(name: string, dir: string): Promise<void> {
    await runCommand("virsh", ["-c", this.uri, "pool-create-as", name, "dir", "--target", dir]);
  }

  /** Deletes the volumes of a pool made by {@linkcode LibvirtDaemon.createPool}, then the pool. */
  async removePool(name: string): Promise<void> {
    const { stdout } = await runCommand("virsh", ["-c", this.uri, "pool-list", "--all", "--name"]);
    if (!stdout.split("\n").some((line) => line.trim() === name)) return;
    const volumes = await runCommand("virsh", ["-c", this.uri, "vol-list", name, "--name"], {
      allowFailure: true,
    });
    for (const volume of volumes.stdout.split("\n").map((line) => line.trim())) {
      if (volume) {
        await runCommand("virsh", ["-c", this.uri, "vol-delete", volume, "--pool", name]);
      }
    }
    await runCommand("virsh", ["-c", this.uri, "pool-destroy", name]);
  }

  /** Stops libvirtd, then virtlogd (SIGTERM, SIGKILL after 10 s). */
  async stop(): Promise<void> {
    for (const child of this.#children.reverse()) {
      await stopChild(child);
    }
    this.#children = [];
  }

  /** Same as {@linkcode LibvirtDaemon.stop}. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}
