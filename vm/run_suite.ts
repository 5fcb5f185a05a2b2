/**
 * The harness: boot a VM, run the privileged suite inside as root, bring back the results, and
 * remove everything made for the run.
 *
 * @module
 */
import { runCommand } from "./_command.ts";
import { CleanupStack } from "./cleanup_stack.ts";
import { VmError } from "./errors.ts";
import { kvmUsable } from "./acceleration.ts";
import { buildBox } from "./box/build_box.ts";
import { LibvirtDaemon } from "./_libvirt_daemon.ts";
import { type Machine, serialTail, shellQuote } from "./_machine.ts";
import { NetworkNamespace } from "./_network_namespace.ts";
import type { HarnessOptions } from "./options.ts";
import { QemuMachine } from "./_qemu_machine.ts";
import { VagrantMachine } from "./_vagrant_machine.ts";
import { type JunitSummary, summarizeJunit } from "./junit_summary.ts";
import { DEFAULT_BOX, defaultCacheDir, REPO_ROOT } from "./_paths.ts";
import { addedBoxImage, insecurePrivateKey, probeKernel, vagrantHasBox } from "./_locate.ts";

/** Options of {@linkcode runSuite}: the parsed command line plus the run's plumbing. */
export interface SuiteOptions extends Partial<HarnessOptions> {
  /** Progress lines (the harness's own, not the guest's output). */
  log?: (line: string) => void;
  /** Stream the guest's test output to ours. @default {true} */
  echo?: boolean;
  /** Aborting (SIGINT) stops the run; everything made for it is still removed. */
  signal?: AbortSignal;
  /** Cache directory (boxes, the Deno cache for the guest). */
  cacheDir?: string;
}

/** What a run brought back. */
export interface SuiteResult {
  /** Exit code of `deno test` in the guest. */
  exitCode: number;
  /** The guest's kernel release (`uname -r`). */
  kernel: string;
  /** The JUnit report written by `deno test` in the guest. */
  junit: string;
  /** Its counts. */
  summary: JunitSummary;
  /** The `SKIP <test>: <reason>` lines the guest printed (features this kernel lacks). */
  skips: string[];
  /** The guest's kernel log after the suite. */
  dmesg: string;
  /** The guest's serial console. */
  serialLog: string;
  /** Where `junit.xml`, `dmesg.txt`, `serial.log` and `result.json` were written. */
  outDir: string;
  /** How the guest ran. */
  provider: string;
  /** `kvm` or `tcg`. */
  accel: "kvm" | "tcg";
  /** Seconds from start to a working SSH login, and for the suite. */
  seconds: { boot: number; suite: number; total: number };
}

const GUEST_JUNIT = "/tmp/triad-vm-junit.xml";
const CRASH_PATTERN = /Kernel panic - not syncing|end Kernel panic/;

/** A short id unique enough for names of namespaces, pools, bridges and domains. */
function runId(): string {
  const random = crypto.getRandomValues(new Uint8Array(3));
  return `${Deno.pid.toString(36)}${
    Array.from(random, (b) => b.toString(16).padStart(2, "0")).join("")
  }`;
}

/** Runs `fn`, watching the guest: a panic or a guest that stops running aborts it with the log. */
async function watched<T>(
  machine: Machine,
  what: string,
  outer: AbortSignal | undefined,
  fn: (signal: AbortSignal) => Promise<T>,
): Promise<T> {
  const controller = new AbortController();
  const forward = () => controller.abort();
  outer?.addEventListener("abort", forward, { once: true });
  let crash: string | undefined;
  let seenRunning = false;
  let checking = false;
  const timer = setInterval(async () => {
    if (checking || crash) return;
    checking = true;
    try {
      const serial = await machine.serialLog();
      const running = await machine.running();
      if (running) seenRunning = true;
      if (CRASH_PATTERN.test(serial)) crash = "the kernel panicked";
      else if (seenRunning && !running) crash = "the VM stopped running";
      if (crash) controller.abort();
    } finally {
      checking = false;
    }
  }, 3000);
  try {
    return await fn(controller.signal);
  } catch (error) {
    if (crash) {
      throw new VmError(`The guest crashed during ${what}: ${crash}`, {
        code: "guest_crashed",
        cause: error,
        serialLog: serialTail(await machine.serialLog()),
      });
    }
    if (outer?.aborted) {
      throw new VmError(`Interrupted during ${what}`, { code: "interrupted", cause: error });
    }
    throw error;
  } finally {
    clearInterval(timer);
    outer?.removeEventListener("abort", forward);
  }
}

/** Fills a Deno cache with everything the suite imports, for the offline guest. */
async function prepareDenoCache(cacheDir: string, log: (line: string) => void): Promise<string> {
  const denoDir = `${cacheDir}/deno-dir`;
  const files: string[] = [];
  const walk = async (dir: string) => {
    for await (const entry of Deno.readDir(dir)) {
      const path = `${dir}/${entry.name}`;
      if (entry.isDirectory && entry.name !== "node_modules" && entry.name !== "fixtures") {
        await walk(path);
      } else if (entry.isFile && /\.(ts|tsx|js|mjs)$/.test(entry.name)) files.push(path);
    }
  };
  await walk(`${REPO_ROOT}/tests`);
  log(`caching the suite's dependencies for the guest in ${denoDir}`);
  // everything in the import map (programs the tests start import from it too), then the tests
  await runCommand(Deno.execPath(), ["install", "--quiet"], {
    cwd: REPO_ROOT,
    env: { DENO_DIR: denoDir },
    timeoutMs: 10 * 60_000,
  });
  await runCommand(Deno.execPath(), ["cache", "--quiet", ...files], {
    cwd: REPO_ROOT,
    env: { DENO_DIR: denoDir },
    timeoutMs: 10 * 60_000,
  });
  return denoDir;
}

/**
 * Boots a VM, runs the privileged suite inside it as root (`deno test -A` over `tests/` by
 * default, with a JUnit report), and brings back the exit code, the report, the guest's dmesg and
 * its serial console. Unless `keep`, the VM and everything made for it are removed afterwards, also
 * on failure and on abort: the libvirt domain and disks, the storage pool, the network, libvirtd
 * and virtlogd, the network namespace, the qemu process, the temporary directory.
 *
 * Providers: `libvirt` (default; libvirtd, its isolated network and vagrant run in a network
 * namespace made for the run), `qemu` (no Vagrant: qemu's user networking restricted to one SSH
 * forward on 127.0.0.1) and `virtualbox` (Vagrant's VirtualBox provider, any box). KVM is used when
 * it runs a kernel here, software emulation otherwise.
 *
 * @param options The command-line options and plumbing.
 * @returns The results; the exit code is the suite's, not an exception.
 * @throws {VmError} When the VM cannot be made or booted (`timeout`, `boot_failed`) or crashes
 * (`guest_crashed`), with the serial log.
 *
 * @example
 * ```ts ignore
 * import { runSuite } from "@triad/vm";
 * const result = await runSuite({ provider: "libvirt", log: console.error });
 * console.log(result.kernel, result.summary, result.exitCode);
 * ```
 */
export async function runSuite(options: SuiteOptions = {}): Promise<SuiteResult> {
  const started = Date.now();
  const log = options.log ?? (() => {});
  const provider = options.provider ?? "libvirt";
  const box = options.box ?? DEFAULT_BOX;
  const cacheDir = options.cacheDir ?? defaultCacheDir();
  const memoryMiB = options.memoryMiB ?? 2048;
  const cpus = options.cpus ?? 2;
  const bootTimeoutMs = options.bootTimeoutMs ?? 10 * 60_000;
  const suiteTimeoutMs = options.suiteTimeoutMs ?? 40 * 60_000;
  const testArgs = options.testArgs ?? ["tests/"];
  const outDir = options.outDir ?? `${REPO_ROOT}/vm/.cache/results`;
  const signal = options.signal;
  const id = runId();

  if (provider !== "virtualbox" && Deno.uid() !== 0) {
    throw new VmError(`The ${provider} provider needs root (libvirtd, network namespaces)`, {
      code: "bad_argument",
    });
  }
  // the default box is built when missing (a no-op when cached); others must be added already
  if (box === DEFAULT_BOX && provider !== "virtualbox") {
    await buildBox({ name: box, cacheDir, log, ...(signal ? { signal } : {}) });
  } else if (provider !== "qemu" && !(await vagrantHasBox(box, provider))) {
    throw new VmError(
      `Vagrant has no box ${box} for ${provider}: vagrant box add ${box} (or deno task vm:box)`,
      { code: "bad_argument" },
    );
  }
  let accel: "kvm" | "tcg" = options.accel === "kvm" ? "kvm" : "tcg";
  if ((options.accel ?? "auto") === "auto" && provider !== "virtualbox") {
    const kernel = await probeKernel(cacheDir);
    accel = kernel && await kvmUsable(kernel) ? "kvm" : "tcg";
    log(`KVM ${accel === "kvm" ? "runs guests here" : "does not run guests here"}: using ${accel}`);
  }
  const denoDir = await prepareDenoCache(cacheDir, log);

  const cleanup = new CleanupStack();
  let machine: Machine | undefined;
  const keepNotes: string[] = [];
  try {
    const workDir = await Deno.makeTempDir({ prefix: `triad-vm-${id}-` });
    // the qemu user (libvirt-qemu) must reach the pool and write nothing else
    await Deno.chmod(workDir, 0o755);
    cleanup.defer(
      `temporary directory ${workDir}`,
      () => Deno.remove(workDir, { recursive: true }),
    );

    // What either Vagrant provider's machine is given.
    const vagrant = {
      box,
      workDir,
      prefix: `triad-vm-${id}-`,
      denoDir,
      memoryMiB,
      cpus,
      bootTimeoutMs,
      echo: options.echo ?? true,
      log,
    };
    if (provider === "libvirt") {
      const ns = await NetworkNamespace.create(`triad-vm-${id}`);
      cleanup.defer(`network namespace ${ns.name}`, () => ns.remove());
      log(`libvirtd and virtlogd in network namespace ${ns.name}`);
      const daemon = await LibvirtDaemon.start(ns.name, { log, ...(signal ? { signal } : {}) });
      cleanup.defer("libvirtd", () => daemon.stop());
      keepNotes.push(
        `  then:      kill ${daemon.pids.join(" ")}; ip netns delete ${ns.name}; rm -r ${workDir}`,
      );
      const pool = `triad-vm-${id}`;
      await Deno.mkdir(`${workDir}/pool`, { mode: 0o755 });
      await daemon.createPool(pool, `${workDir}/pool`);
      cleanup.defer(`storage pool ${pool}`, () => daemon.removePool(pool));
      const network = `triad-vm-${id}`;
      await daemon.createIsolatedNetwork(network, `tvm${id}`.slice(0, 15), "192.168.121");
      cleanup.defer(`network ${network}`, () => daemon.removeNetwork(network));
      machine = new VagrantMachine({
        ...vagrant,
        provider,
        netns: ns.name,
        driver: accel === "kvm" ? "kvm" : "qemu",
        pool,
        network,
      });
    } else if (provider === "virtualbox") {
      machine = new VagrantMachine({ ...vagrant, provider, driver: "kvm" });
    } else {
      const image = await addedBoxImage(box);
      if (!image) {
        throw new VmError(`No libvirt disk for box ${box}: deno task vm:box`, {
          code: "bad_argument",
        });
      }
      const key = `${workDir}/insecure_key`;
      await Deno.copyFile(await insecurePrivateKey(), key);
      await Deno.chmod(key, 0o600);
      machine = new QemuMachine({
        boxImage: image,
        workDir,
        privateKey: key,
        accel,
        memoryMiB,
        cpus,
        bootTimeoutMs,
        repoRoot: REPO_ROOT,
        denoDir,
        log,
      });
    }
    const vm = machine;
    cleanup.defer(`VM ${vm.name}`, () => vm.destroy());

    log(`booting ${box} with ${provider} (${accel})`);
    await watched(vm, "boot", signal, (s) => vm.up(s));
    const booted = Date.now();
    const kernel = (await vm.exec("uname -r", { timeoutMs: 60_000 })).stdout.trim();
    log(`guest is up in ${Math.round((booted - started) / 1000)} s: kernel ${kernel}`);

    const command = [
      `rm -f ${GUEST_JUNIT};`,
      "cd /triad &&",
      `sudo -n env TRIAD_VM_GUEST=1 TRIAD_VM_ACCEL=${accel} DENO_DIR=/var/cache/triad-deno NO_COLOR=1`,
      "deno test -A --no-check --cached-only",
      `--junit-path=${GUEST_JUNIT}`,
      ...testArgs.map(shellQuote),
    ].join(" ");
    log(`running in the guest as root: ${command}`);
    const run = await watched(vm, "the suite", signal, (s) =>
      vm.exec(command, {
        timeoutMs: suiteTimeoutMs,
        echo: options.echo ?? true,
        allowFailure: true,
        signal: s,
      }));
    if (run.code === 255 && !(await vm.running())) {
      throw new VmError("The guest crashed during the suite: SSH dropped and the VM is gone", {
        code: "guest_crashed",
        serialLog: serialTail(await vm.serialLog()),
      });
    }
    const suiteDone = Date.now();
    const junit = (await vm.exec(`sudo cat ${GUEST_JUNIT}`, {
      allowFailure: true,
      timeoutMs: 120_000,
    })).stdout;
    const dmesg = (await vm.exec("sudo dmesg", { timeoutMs: 120_000, allowFailure: true })).stdout;
    const serialLog = await vm.serialLog();
    const summary = summarizeJunit(junit);
    const skips = [
      ...new Set(
        `${run.stdout}\n${run.stderr}`.split("\n")
          .map((line) => line.trim())
          .filter((line) => line.startsWith("SKIP ")),
      ),
    ];
    const result: SuiteResult = {
      exitCode: run.code,
      kernel,
      junit,
      summary,
      skips,
      dmesg,
      serialLog,
      outDir,
      provider,
      accel,
      seconds: {
        boot: Math.round((booted - started) / 1000),
        suite: Math.round((suiteDone - booted) / 1000),
        total: Math.round((Date.now() - started) / 1000),
      },
    };
    await Deno.mkdir(outDir, { recursive: true });
    await Deno.writeTextFile(`${outDir}/junit.xml`, junit);
    await Deno.writeTextFile(`${outDir}/dmesg.txt`, dmesg);
    await Deno.writeTextFile(`${outDir}/serial.log`, serialLog);
    const { junit: _j, dmesg: _d, serialLog: _s, ...brief } = result;
    await Deno.writeTextFile(`${outDir}/result.json`, JSON.stringify(brief, null, 2) + "\n");
    return result;
  } catch (error) {
    if (error instanceof VmError && error.serialLog) {
      await Deno.mkdir(outDir, { recursive: true });
      await Deno.writeTextFile(
        `${outDir}/serial.log`,
        (await machine?.serialLog()) ?? error.serialLog,
      );
    }
    throw error;
  } finally {
    if (options.keep && machine) {
      log([machine.describeKeep(), ...keepNotes].join("\n"));
    } else {
      log(`removing: ${cleanup.pending.join(", ")}`);
      await cleanup.run();
    }
  }
}
