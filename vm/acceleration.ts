/**
 * Whether KVM actually runs guests here.
 *
 * @module
 */
import { runCommand } from "./_command.ts";

/**
 * Probes whether KVM can run a Linux guest on this host. `/dev/kvm` opening is not enough: under
 * broken nested virtualisation the firmware runs but the kernel never prints a line. So this boots
 * the given kernel under KVM with no disk and waits for its banner on the serial console (it
 * panics for want of a root file system a moment later, and qemu exits).
 *
 * @param kernel A bzImage, such as the box's `/boot/vmlinuz-*`.
 * @param timeoutMs How long the kernel gets to print. @default {10000}
 * @returns `true` when a KVM guest kernel ran.
 *
 * @example
 * ```ts ignore
 * import { kvmUsable } from "@triad/vm";
 * console.log((await kvmUsable("/boot/vmlinuz-6.1.0-50-amd64")) ? "kvm" : "tcg");
 * ```
 */
export async function kvmUsable(kernel: string, timeoutMs = 10_000): Promise<boolean> {
  try {
    Deno.openSync("/dev/kvm", { read: true, write: true }).close();
    Deno.statSync(kernel);
  } catch {
    return false;
  }
  const dir = await Deno.makeTempDir({ prefix: "triad-kvm-" });
  try {
    const serial = `${dir}/serial.log`;
    await runCommand("qemu-system-x86_64", [
      "-accel",
      "kvm",
      "-m",
      "256",
      "-display",
      "none",
      "-nodefaults",
      "-no-reboot",
      "-kernel",
      kernel,
      "-append",
      "console=ttyS0 panic=-1",
      "-serial",
      `file:${serial}`,
    ], { timeoutMs, allowFailure: true }).catch(() => undefined);
    const text = await Deno.readTextFile(serial).catch(() => "");
    return /Linux version/.test(text);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
