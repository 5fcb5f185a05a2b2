/**
 * `@triad/vm`: run the privileged triad suite inside a Linux VM with BTF — on Debian 12's 6.1
 * kernel by default — so eBPF and io_uring are tested against kernels other than the host's.
 *
 * - {@linkcode runSuite}: boot (libvirt through Vagrant in a private network namespace, qemu
 *   directly, or VirtualBox), run `deno test` as root inside, bring back exit code, JUnit report,
 *   dmesg and serial log, and remove everything. `deno task test:vm`.
 * - {@linkcode buildBox}: build the libvirt box offline from Debian packages (debootstrap), with
 *   the provisioning baked in, and `vagrant box add` it. `deno task vm:box`.
 *
 * @example Parse the command line of `deno task test:vm`
 * ```ts
 * import { parseHarnessArgs } from "@triad/vm";
 * import assert from "node:assert/strict";
 *
 * const options = parseHarnessArgs(["--provider", "qemu", "--timeout", "20m"]);
 * assert.equal(options.suiteTimeoutMs, 20 * 60_000);
 * assert.deepEqual(options.testArgs, ["tests/"]);
 * ```
 *
 * @module
 */
export { VmError } from "./errors.ts";
export {
  type Acceleration,
  HARNESS_USAGE,
  type HarnessOptions,
  parseHarnessArgs,
  type ProviderName,
} from "./options.ts";
export { CleanupStack } from "./cleanup_stack.ts";
export { type JunitSummary, summarizeJunit } from "./junit_summary.ts";
export { kvmUsable } from "./acceleration.ts";
export { runSuite, type SuiteOptions, type SuiteResult } from "./run_suite.ts";
export {
  type BoxMetadata,
  boxMetadata,
  boxVagrantfile,
  type BoxVagrantfileOptions,
  debianMirror,
} from "./box/box_files.ts";
export {
  buildBox,
  type BuildBoxOptions,
  type BuiltBox,
  hostDebianMirror,
} from "./box/build_box.ts";
