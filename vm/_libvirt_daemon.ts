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

/** Where libvirtd keeps what it learnt by probing each QEMU binary (one XML file per binary). */
const CAPABILITY_CACHE = "/var/cache/libvirt/qemu/capabilities";

/** Options of {@linkcode LibvirtDaemon.start}. */
interface LibvirtStartOptions {
  /**
   * How long libvirtd gets to answer. A first start probes every QEMU binary before it answers
   * (about 12 s on an idle 2-CPU machine, several times that under load). @default {600000}
   */
  timeoutMs?: number;
  /** Receives a line saying what is awaited, every `progressEveryMs` while waiting. */
  log?: (line: string) => void;
  /** @default {15000} */
  progressEveryMs?: number;
  /** Stops waiting (and the daemons) when aborted. */
  signal?: AbortSignal;
}

/** The tail of what a daemon printed, kept while it runs. */
class OutputTail {
  #lines: string[] = [];
  readonly done: Promise<void>;

  constructor(stream: ReadableStream<Uint8Array>) {
    this.done = (async () => {
      let partial = "";
      for await (const text of stream.pipeThrough(new TextDecoderStream())) {
        const lines = (partial + text).split("\n");
        partial = lines.pop() ?? "";
        this.#lines.push(...lines);
        if (this.#lines.length > 40) this.#lines.splice(0, this.#lines.length - 20);
      }
      if (partial) this.#lines.push(partial);
    })().catch(() => {});
  }

  text(lines = 20): string {
    return this.#lines.slice(-lines).join("\n");
  }
}

/** The CPUs this process may run on, as `taskset -c` takes them (such as `0-1`). */
function allowedCpus(): string {
  const status = Deno.readTextFileSync("/proc/self/status");
  return /^Cpus_allowed_list:\s*(\S+)/m.exec(status)?.[1] ?? "0";
}

function socketExists(): boolean {
  try {
    return Deno.statSync(SOCKET).isSocket === true;
  } catch {
    return false;
  }
}

/**
 * Why libvirtd cannot keep its QEMU capability cache, or `undefined`: where /dev/kvm is root's
 * alone (no udev gave it to group kvm), libvirtd finds KVM when it probes QEMU (with
 * CAP_DAC_OVERRIDE) and not when it checks its cache as the qemu user, so every lookup probes
 * again; a first start then may not answer for many minutes under load.
 */
export function capabilityCacheBlocked(): string | undefined {
  let mode: number;
  let gid: number;
  try {
    const stat = Deno.statSync("/dev/kvm");
    mode = stat.mode ?? 0;
    gid = stat.gid ?? -1;
  } catch {
    return undefined; // no KVM: nothing for the probe and the check to disagree about
  }
  const kvmGroup = /^kvm:[^:]*:(\d+):/m.exec(Deno.readTextFileSync("/etc/group"))?.[1];
  if ((mode & 0o006) === 0o006 || ((mode & 0o060) === 0o060 && String(gid) === kvmGroup)) {
    return undefined;
  }
  return "/dev/kvm is not open to group kvm (the qemu user's), so libvirtd probes QEMU again " +
    "at every capability lookup: sudo deno task setup gives it to group kvm, as udev does";
}

/** What libvirtd is doing while it does not answer yet, for the progress lines. */
function waitingFor(): string {
  if (!socketExists()) return `its socket ${SOCKET} (not there yet)`;
  let cached = 0;
  try {
    for (const entry of Deno.readDirSync(CAPABILITY_CACHE)) {
      if (entry.name.endsWith(".xml")) cached++;
    }
  } catch { /* not made yet */ }
  const blocked = capabilityCacheBlocked();
  return `an answer on ${SOCKET}: it is probing QEMU's capabilities (capability files in ` +
    `${CAPABILITY_CACHE}: ${cached}; ${
      blocked ?? "a first start probes each QEMU binary, under load it takes minutes"
    })`;
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
 * await using daemon = await LibvirtDaemon.start(ns.name, { log: console.error });
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
   * Starts virtlogd and libvirtd inside a namespace and waits until libvirtd answers, however
   * long its QEMU probe takes, up to `timeoutMs`; fails at once, with its last output, when either
   * daemon exits before that.
   *
   * @param netns The namespace.
   * @param options Bound, progress lines, abort.
   */
  static async start(netns: string, options: LibvirtStartOptions = {}): Promise<LibvirtDaemon> {
    const { timeoutMs = 600_000, log = () => {}, progressEveryMs = 15_000, signal } = options;
    if (await answering()) {
      throw new VmError(
        `A libvirtd is already running (${SOCKET}): stop it first, the harness runs its own ` +
          `inside a network namespace so the VM's network stays off the host`,
        { code: "busy" },
      );
    }
    const blocked = capabilityCacheBlocked();
    if (blocked) log(`libvirtd: ${blocked}`);
    const children: Deno.ChildProcess[] = [];
    const exited: Promise<string>[] = [];
    // libvirtd reads the host's CPUID once at start and re-probes every QEMU binary when it
    // differs from what the cache recorded; leaf 1 and leaf 0xb carry the APIC ID of the CPU that
    // runs the instruction, so a libvirtd started on another CPU than last time probed again
    // (seen here: "Outdated capabilities ...: host cpuid changed", 8 s). It starts on the first
    // CPU this process may use, and gets them all back once it answers (QEMU inherits them).
    const cpus = allowedCpus();
    const firstCpu = /^\d+/.exec(cpus)?.[0] ?? "0";
    const spawn = (program: string, pin?: string) => {
      const child = new Deno.Command("ip", {
        args: ["netns", "exec", netns, ...(pin ? ["taskset", "-c", pin] : []), program],
        stdin: "null",
        stdout: "null",
        stderr: "piped",
      }).spawn();
      const output = new OutputTail(child.stderr);
      children.push(child);
      exited.push(
        child.status.then(async (status) => {
          await output.done;
          const said = output.text();
          return `${program} exited with ${
            status.signal ? `signal ${status.signal}` : `code ${status.code}`
          } while the harness waited for libvirtd to answer${
            said ? `:\n${said}` : " (it printed nothing)"
          }`;
        }),
      );
    };
    const daemon = new LibvirtDaemon(children);
    const started = Date.now();
    let lastProgress = started;
    try {
      spawn("virtlogd");
      spawn("libvirtd", firstCpu);
      let death: string | undefined;
      const died = Promise.race(exited).then((message) => {
        death = message;
      });
      while (!(await answering())) {
        if (death !== undefined) throw new VmError(death, { code: "command_failed" });
        if (signal?.aborted) {
          throw new VmError("libvirtd's start was interrupted", { code: "interrupted" });
        }
        const waited = Date.now() - started;
        if (waited > timeoutMs) {
          throw new VmError(
            `libvirtd did not answer within ${Math.round(timeoutMs / 1000)} s; ` +
              `waited for ${waitingFor()}`,
            { code: "timeout" },
          );
        }
        if (Date.now() - lastProgress >= progressEveryMs) {
          lastProgress = Date.now();
          log(`libvirtd: ${Math.round(waited / 1000)} s, waiting for ${waitingFor()}`);
        }
        let timer: ReturnType<typeof setTimeout> | undefined;
        await Promise.race([new Promise((resolve) => timer = setTimeout(resolve, 250)), died]);
        clearTimeout(timer);
      }
      log(`libvirtd answered after ${((Date.now() - started) / 1000).toFixed(1)} s`);
      await runCommand("taskset", ["-a", "-p", "-c", cpus, String(children[1]!.pid)]);
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
