/**
 * The `libvirt` and `virtualbox` providers: the VM made by `vagrant up` from `vm/Vagrantfile`.
 *
 * @module
 */
import { runCommand, type RunResult } from "./_command.ts";
import { VmError } from "./errors.ts";
import type { ExecOptions, Machine } from "./_machine.ts";
import { execOverSsh, readSerialLog, serialTail } from "./_machine.ts";
import { VM_DIR } from "./_paths.ts";

/** Options of {@linkcode VagrantMachine}. */
interface VagrantMachineOptions {
  provider: "libvirt" | "virtualbox";
  box: string;
  /** A private directory: Vagrant's machine state, serial log, SSH config. */
  workDir: string;
  /** Run vagrant, ssh and virsh inside this network namespace (libvirt). */
  netns?: string;
  /** libvirt driver: `kvm` or `qemu` (software emulation). */
  driver: "kvm" | "qemu";
  /** Unique prefix of the libvirt domain name. */
  prefix: string;
  /** libvirt storage pool for the disks. */
  pool?: string;
  /** libvirt management network (isolated). */
  network?: string;
  /** Host Deno cache copied to `/var/cache/triad-deno`. */
  denoDir?: string;
  memoryMiB: number;
  cpus: number;
  bootTimeoutMs: number;
  /** Stream vagrant's output to ours. @default {true} */
  echo?: boolean;
  log?: (line: string) => void;
}

/**
 * A VM managed by Vagrant. Everything Vagrant keeps for it (`.vagrant/`) lives in `workDir`, never
 * in the repository, so several runs can coexist; the libvirt domain is `<prefix>default`.
 *
 * @example
 * ```ts ignore
 * import { VagrantMachine } from "./_vagrant_machine.ts";
 * await using vm = new VagrantMachine({ provider: "libvirt", box: "triad/debian12", workDir,
 *   driver: "qemu", prefix: "triad-vm-1-", memoryMiB: 2048, cpus: 2, bootTimeoutMs: 600_000 });
 * await vm.up();
 * ```
 */
export class VagrantMachine implements Machine {
  readonly provider: "libvirt" | "virtualbox";
  readonly name: string;
  #options: VagrantMachineOptions;
  #serial: string;
  #sshConfig: string;
  #created = false;

  /** @param options Provider, box, directories and sizes. */
  constructor(options: VagrantMachineOptions) {
    this.#options = options;
    this.provider = options.provider;
    this.name = `${options.prefix}default`;
    this.#serial = `${options.workDir}/serial.log`;
    this.#sshConfig = `${options.workDir}/ssh_config`;
  }

  /** The environment vagrant runs with (read by `vm/Vagrantfile`). */
  environment(): Record<string, string> {
    const o = this.#options;
    const env: Record<string, string> = {
      VAGRANT_CWD: VM_DIR,
      VAGRANT_DOTFILE_PATH: `${o.workDir}/.vagrant`,
      VAGRANT_DEFAULT_PROVIDER: o.provider,
      VAGRANT_CHECKPOINT_DISABLE: "1",
      VAGRANT_NO_COLOR: "1",
      TRIAD_VM_BOX: o.box,
      TRIAD_VM_DRIVER: o.driver,
      TRIAD_VM_MEMORY: String(o.memoryMiB),
      TRIAD_VM_CPUS: String(o.cpus),
      TRIAD_VM_SERIAL_LOG: this.#serial,
      TRIAD_VM_PREFIX: o.prefix,
      TRIAD_VM_BOOT_TIMEOUT: String(Math.ceil(o.bootTimeoutMs / 1000)),
    };
    // the guest sits on an isolated network inside a namespace: nothing else can reach it
    if (o.netns) env.TRIAD_VM_INSERT_KEY = "0";
    if (o.pool) env.TRIAD_VM_POOL = o.pool;
    if (o.network) env.TRIAD_VM_NETWORK = o.network;
    if (o.denoDir) env.TRIAD_VM_DENO_DIR = o.denoDir;
    return env;
  }

  #vagrant(args: string[], options: { timeoutMs: number; signal?: AbortSignal; echo?: boolean }) {
    return runCommand("vagrant", args, {
      env: this.environment(),
      timeoutMs: options.timeoutMs,
      ...(options.signal ? { signal: options.signal } : {}),
      ...(options.echo ? { echo: true } : {}),
      ...(this.#options.netns ? { netns: this.#options.netns } : {}),
    });
  }

  async up(signal?: AbortSignal): Promise<void> {
    this.#created = true;
    // boot timeout covers the boot; rsync and the provisioning check get time of their own
    const timeoutMs = this.#options.bootTimeoutMs + 10 * 60_000;
    try {
      await this.#vagrant(["up", `--provider=${this.provider}`, "--no-tty"], {
        timeoutMs,
        echo: this.#options.echo ?? true,
        ...(signal ? { signal } : {}),
      });
    } catch (error) {
      if (error instanceof VmError && error.code === "command_failed") {
        const serial = await this.serialLog();
        const timedOut = /Timed out while waiting for the machine to boot/.test(error.message);
        throw new VmError(
          timedOut
            ? `Boot of ${this.name} timed out: no SSH login within ${
              Math.round(this.#options.bootTimeoutMs / 1000)
            } s`
            : `vagrant up of ${this.name} failed: ${error.message}`,
          {
            code: timedOut ? "timeout" : "boot_failed",
            cause: error,
            serialLog: serialTail(serial),
          },
        );
      }
      throw error;
    }
    const { stdout } = await this.#vagrant(["ssh-config"], { timeoutMs: 120_000 });
    await Deno.writeTextFile(
      this.#sshConfig,
      stdout + "  ServerAliveInterval 15\n  ServerAliveCountMax 8\n  LogLevel ERROR\n",
    );
  }

  exec(command: string, options: ExecOptions = {}): Promise<RunResult> {
    return execOverSsh(this.#sshConfig, command, options, this.#options.netns);
  }

  async running(): Promise<boolean> {
    if (this.provider === "libvirt") {
      const { stdout } = await runCommand(
        "virsh",
        ["-c", "qemu:///system", "domstate", this.name],
        {
          allowFailure: true,
          timeoutMs: 10_000,
        },
      ).catch(() => ({ stdout: "" }));
      return stdout.trim() === "running";
    }
    const { stdout } = await this.#vagrant(["status", "--machine-readable"], { timeoutMs: 60_000 })
      .catch(() => ({ stdout: "" }));
    return /,state,running/.test(stdout);
  }

  serialLog(): Promise<string> {
    return readSerialLog(this.#serial);
  }

  async destroy(): Promise<void> {
    if (!this.#created) return;
    let failure: unknown;
    try {
      await this.#vagrant(["destroy", "--force"], { timeoutMs: 5 * 60_000 });
    } catch (error) {
      failure = error;
    }
    if (this.provider === "libvirt") {
      // whatever vagrant could not remove, libvirt removes (a half-created domain, its disks)
      const virsh = (args: string[]) =>
        runCommand("virsh", ["-c", "qemu:///system", ...args], {
          allowFailure: true,
          timeoutMs: 60_000,
        });
      const { stdout } = await virsh(["list", "--all", "--name"]);
      for (const domain of stdout.split("\n").map((line) => line.trim())) {
        if (domain === "" || !domain.startsWith(this.#options.prefix)) continue;
        await virsh(["destroy", domain]);
        await virsh(["undefine", domain, "--remove-all-storage", "--nvram"]);
      }
      const left = (await virsh(["list", "--all", "--name"])).stdout.split("\n")
        .filter((line) => line.trim().startsWith(this.#options.prefix));
      if (left.length > 0) {
        throw new VmError(`libvirt domain ${left.join(", ")} could not be removed`, {
          code: "cleanup_failed",
          cause: failure,
        });
      }
      this.#created = false;
      return;
    }
    this.#created = false;
    if (failure) throw failure;
  }

  describeKeep(): string {
    const env = Object.entries(this.environment()).map(([k, v]) => `${k}=${v}`).join(" ");
    const netns = this.#options.netns ? `ip netns exec ${this.#options.netns} ` : "";
    return [
      `VM ${this.name} kept (${this.provider}), serial log ${this.#serial}`,
      `  reach it:  ${netns}ssh -F ${this.#sshConfig} default`,
      `  remove it: ${netns}env ${env} vagrant destroy -f`,
    ].join("\n");
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.destroy();
  }
}
