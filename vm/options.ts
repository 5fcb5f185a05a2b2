/**
 * Command-line options of `deno task test:vm`.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { parseDuration } from "@triad/core";
import { VmError } from "./errors.ts";
import { DEFAULT_BOX } from "./_paths.ts";

/** Where the VM runs: vagrant-libvirt, VirtualBox through Vagrant, or qemu driven directly. */
export type ProviderName = "libvirt" | "virtualbox" | "qemu";

/** How the guest's CPU runs: KVM, software emulation (TCG), or KVM when it works. */
export type Acceleration = "auto" | "kvm" | "tcg";

/** Parsed options of the harness. */
export interface HarnessOptions {
  /** Which provider runs the VM. @default {"libvirt"} */
  provider: ProviderName;
  /** The Vagrant box. @default {"triad/debian12"} */
  box: string;
  /** Keep the VM (and its namespace and libvirtd) running after the suite. */
  keep: boolean;
  /** KVM or software emulation. @default {"auto"} */
  accel: Acceleration;
  /** Time allowed from start to a working SSH login. @default {600000} */
  bootTimeoutMs: number;
  /** Time allowed for the suite inside. @default {2400000} */
  suiteTimeoutMs: number;
  /** Guest memory. @default {2048} */
  memoryMiB: number;
  /** Guest CPUs. @default {2} */
  cpus: number;
  /** Where the JUnit report, dmesg and serial log are written; `undefined`: the cache. */
  outDir: string | undefined;
  /** Arguments of `deno test` inside the guest (after `--`). @default {["tests/"]} */
  testArgs: string[];
  /** Print usage and exit. */
  help: boolean;
}

/** Usage text of `deno task test:vm`. */
export const HARNESS_USAGE = `usage: deno task test:vm [options] [-- deno test arguments]

Boots a Linux VM with BTF, runs the privileged suite (tests/) inside as root, brings back the exit
code, a JUnit report and the guest's dmesg, then destroys the VM.

  --provider P        libvirt (default), qemu (qemu driven directly) or virtualbox
  --box NAME          Vagrant box (default ${DEFAULT_BOX}, built by deno task vm:box)
  --keep              keep the VM running afterwards (prints how to reach and remove it)
  --accel A           auto (default: KVM when it works), kvm or tcg
  --boot-timeout D    time to a working SSH login (default 10m)
  --timeout D         time for the suite (default 40m)
  --memory MIB        guest memory (default 2048)
  --cpus N            guest CPUs (default 2)
  --out DIR           where junit.xml, dmesg.txt and serial.log go
  -h, --help          this text`;

function positiveInteger(value: string, flag: string): number {
  const number = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(number) || number <= 0) {
    throw new VmError(`${flag}: expected a positive integer, got "${value}"`, {
      code: "bad_argument",
    });
  }
  return number;
}

function duration(value: string, flag: string): number {
  try {
    const ms = parseDuration(value);
    if (ms <= 0) throw new RangeError("not positive");
    return ms;
  } catch (cause) {
    throw new VmError(`${flag}: expected a duration such as "10m" or "90s", got "${value}"`, {
      code: "bad_argument",
      cause,
    });
  }
}

/**
 * Parses the arguments of `deno task test:vm`.
 *
 * @param args The arguments (`Deno.args`).
 * @returns The options, defaults filled in.
 * @throws {VmError} `bad_argument` naming the flag and the value.
 *
 * @example
 * ```ts
 * import { parseHarnessArgs } from "@triad/vm";
 * import assert from "node:assert/strict";
 *
 * const options = parseHarnessArgs(["--provider", "qemu", "--keep", "--", "tests/a_test.ts"]);
 * assert.equal(options.provider, "qemu");
 * assert.equal(options.keep, true);
 * assert.deepEqual(options.testArgs, ["tests/a_test.ts"]);
 * ```
 */
export function parseHarnessArgs(args: readonly string[]): HarnessOptions {
  const split = args.indexOf("--");
  const own = split === -1 ? [...args] : args.slice(0, split);
  const rest = split === -1 ? [] : args.slice(split + 1);
  let parsed;
  try {
    parsed = parseArgs({
      args: own,
      strict: true,
      allowPositionals: false,
      options: {
        provider: { type: "string", default: "libvirt" },
        box: { type: "string", default: DEFAULT_BOX },
        keep: { type: "boolean", default: false },
        accel: { type: "string", default: "auto" },
        "boot-timeout": { type: "string", default: "10m" },
        timeout: { type: "string", default: "40m" },
        memory: { type: "string", default: "2048" },
        cpus: { type: "string", default: "2" },
        out: { type: "string" },
        help: { type: "boolean", short: "h", default: false },
      },
    });
  } catch (cause) {
    throw new VmError(`${(cause as Error).message} (see --help)`, {
      code: "bad_argument",
      cause,
    });
  }
  const { values } = parsed;
  const provider = values.provider;
  if (provider !== "libvirt" && provider !== "virtualbox" && provider !== "qemu") {
    throw new VmError(
      `--provider: expected libvirt, qemu or virtualbox, got "${provider}"`,
      { code: "bad_argument" },
    );
  }
  const accel = values.accel;
  if (accel !== "auto" && accel !== "kvm" && accel !== "tcg") {
    throw new VmError(`--accel: expected auto, kvm or tcg, got "${accel}"`, {
      code: "bad_argument",
    });
  }
  if (!/^[A-Za-z0-9][A-Za-z0-9_.\/-]*$/.test(values.box)) {
    throw new VmError(`--box: "${values.box}" is not a box name`, { code: "bad_argument" });
  }
  return {
    provider,
    box: values.box,
    keep: values.keep,
    accel,
    bootTimeoutMs: duration(values["boot-timeout"], "--boot-timeout"),
    suiteTimeoutMs: duration(values.timeout, "--timeout"),
    memoryMiB: positiveInteger(values.memory, "--memory"),
    cpus: positiveInteger(values.cpus, "--cpus"),
    outDir: values.out,
    testArgs: rest.length > 0 ? rest : ["tests/"],
    help: values.help,
  };
}
