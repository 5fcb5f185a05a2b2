/**
 * The `qemu` provider: the box's disk booted by qemu directly, user-mode networking restricted to
 * a loopback SSH forward.
 *
 * @module
 */
import { runCommand, type RunResult, stopChild } from "./_command.ts";
import { VmError } from "./errors.ts";
import type { ExecOptions, Machine } from "./_machine.ts";
import { execOverSsh, readSerialLog, serialTail } from "./_machine.ts";
import { syncArgs } from "./_sync.ts";

/** Options of {@linkcode QemuMachine}. */
interface QemuMachineOptions {
  /** The box's qcow2 disk (used as a read-only backing file). */
  boxImage: string;
  /** A private directory for the overlay disk, serial log and SSH config. */
  workDir: string;
  /** The private key of the `vagrant` user (Vagrant's insecure key). */
  privateKey: string;
  /** `kvm` or `tcg`. */
  accel: "kvm" | "tcg";
  memoryMiB: number;
  cpus: number;
  bootTimeoutMs: number;
  /** The repository copied to `/triad`. */
  repoRoot: string;
  /** A Deno cache copied to `/var/cache/triad-deno`, if any. */
  denoDir?: string;
  log?: (line: string) => void;
}

async function freeLoopbackPort(): Promise<number> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return await Promise.resolve(port);
}

/**
 * A VM run by qemu directly. Its network is qemu's user-mode stack with `restrict=on`: the guest
 * cannot open connections anywhere, and its SSH port is forwarded to an ephemeral port on
 * 127.0.0.1 only. The box disk is never written (a qcow2 overlay in `workDir` takes the writes).
 *
 * @example
 * ```ts ignore
 * import { QemuMachine } from "./_qemu_machine.ts";
 * await using vm = new QemuMachine({ boxImage, workDir, privateKey, accel: "tcg", memoryMiB: 2048,
 *   cpus: 2, bootTimeoutMs: 600_000, repoRoot: "." });
 * await vm.up();
 * console.log((await vm.exec("uname -r")).stdout);
 * ```
 */
export class QemuMachine implements Machine {
  readonly provider = "qemu" as const;
  readonly name: string;
  #options: QemuMachineOptions;
  #child: Deno.ChildProcess | undefined;
  #exited = false;
  #serial: string;
  #sshConfig: string;
  #port = 0;

  /** @param options Disk, directory, key, accelerator, sizes. */
  constructor(options: QemuMachineOptions) {
    this.#options = options;
    this.name = `qemu:${options.workDir}`;
    this.#serial = `${options.workDir}/serial.log`;
    this.#sshConfig = `${options.workDir}/ssh_config`;
  }

  /** The qemu command line (without the program). */
  qemuArgs(overlay: string, port: number): string[] {
    const o = this.#options;
    return [
      "-name",
      "triad-vm",
      "-accel",
      o.accel,
      "-cpu",
      o.accel === "kvm" ? "host" : "max",
      "-m",
      String(o.memoryMiB),
      "-smp",
      String(o.cpus),
      // graphics=off turns on SeaBIOS's serial console: the firmware's and the boot loader's
      // lines reach the serial log within a second, so a boot that hangs before the kernel
      // prints still leaves a serial log that says where it stopped.
      "-machine",
      "graphics=off",
      "-nodefaults",
      "-display",
      "none",
      "-no-user-config",
      "-drive",
      `file=${overlay},if=virtio,format=qcow2`,
      "-netdev",
      `user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:${port}-:22`,
      "-device",
      "virtio-net-pci,netdev=net0",
      "-device",
      "virtio-rng-pci",
      "-serial",
      `file:${this.#serial}`,
    ];
  }

  async up(signal?: AbortSignal): Promise<void> {
    const o = this.#options;
    const log = o.log ?? (() => {});
    const overlay = `${o.workDir}/disk.qcow2`;
    await runCommand("qemu-img", [
      "create",
      "-q",
      "-f",
      "qcow2",
      "-F",
      "qcow2",
      "-b",
      o.boxImage,
      overlay,
    ]);
    this.#port = await freeLoopbackPort();
    await Deno.writeTextFile(
      this.#sshConfig,
      `Host default
  HostName 127.0.0.1
  Port ${this.#port}
  User vagrant
  IdentityFile ${o.privateKey}
  IdentitiesOnly yes
  StrictHostKeyChecking no
  UserKnownHostsFile /dev/null
  LogLevel ERROR
  ConnectTimeout 10
  ServerAliveInterval 15
  ServerAliveCountMax 8
`,
    );
    log(`qemu (${o.accel}) booting ${o.boxImage}, ssh on 127.0.0.1:${this.#port}`);
    this.#child = new Deno.Command("qemu-system-x86_64", {
      args: this.qemuArgs(overlay, this.#port),
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    const stderr = new Response(this.#child.stderr).text();
    this.#child.status.then(() => this.#exited = true);
    const deadline = Date.now() + o.bootTimeoutMs;
    for (;;) {
      if (signal?.aborted) throw new VmError("Boot was interrupted", { code: "interrupted" });
      if (this.#exited) {
        throw new VmError(
          `qemu exited during boot: ${(await stderr).trim()}`,
          { code: "boot_failed", serialLog: serialTail(await this.serialLog()) },
        );
      }
      const serial = await this.serialLog();
      if (/Kernel panic/.test(serial)) {
        throw new VmError("The guest kernel panicked during boot", {
          code: "guest_crashed",
          serialLog: serialTail(serial),
        });
      }
      if (Date.now() > deadline) {
        throw new VmError(
          `Boot timed out: no SSH login within ${Math.round(o.bootTimeoutMs / 1000)} s`,
          { code: "timeout", serialLog: serialTail(serial) },
        );
      }
      // slirp accepts the connection before the guest listens: bound the wait for the banner
      const left = Math.max(1000, Math.min(20_000, deadline - Date.now()));
      const probe = await this.exec("true", { allowFailure: true, timeoutMs: left }).catch(
        () => undefined,
      );
      if (probe?.code === 0) break;
      await new Promise((resolve) => setTimeout(resolve, 2000));
    }
    log("guest is up; copying the repository");
    await this.exec(
      "sudo install -d -o vagrant -g vagrant /triad /var/cache/triad-deno",
    );
    const ssh = `ssh -F ${this.#sshConfig}`;
    await runCommand("rsync", [...syncArgs(), "-e", ssh, `${o.repoRoot}/`, "default:/triad/"], {
      timeoutMs: 10 * 60_000,
    });
    if (o.denoDir) {
      await runCommand("rsync", [
        "-a",
        "--delete",
        "-e",
        ssh,
        `${o.denoDir}/`,
        "default:/var/cache/triad-deno/",
      ], {
        timeoutMs: 10 * 60_000,
      });
    }
    await this.exec("sudo bash /triad/vm/provision/provision.sh", { timeoutMs: 20 * 60_000 });
  }

  exec(command: string, options: ExecOptions = {}): Promise<RunResult> {
    return execOverSsh(this.#sshConfig, command, options);
  }

  running(): Promise<boolean> {
    return Promise.resolve(this.#child !== undefined && !this.#exited);
  }

  serialLog(): Promise<string> {
    return readSerialLog(this.#serial);
  }

  async destroy(): Promise<void> {
    const child = this.#child;
    if (child && !this.#exited) {
      await stopChild(child);
    }
    this.#child = undefined;
    await Deno.remove(`${this.#options.workDir}/disk.qcow2`).catch(() => {});
  }

  describeKeep(): string {
    return [
      `qemu VM kept: pid ${this.#child?.pid}, serial log ${this.#serial}`,
      `  reach it:  ssh -F ${this.#sshConfig} default`,
      `  remove it: kill ${this.#child?.pid} && rm -r ${this.#options.workDir}`,
    ].join("\n");
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.destroy();
  }
}
