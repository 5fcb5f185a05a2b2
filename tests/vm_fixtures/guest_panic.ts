/**
 * Crashes the guest kernel (sysrq `c`), for the VM end-to-end test of crash detection. Refuses to
 * run anywhere but inside the triad test VM. Not a `*_test.ts` file: never picked up by itself.
 *
 * @module
 */

Deno.test("guest kernel panics on request", async () => {
  const hostname = Deno.hostname();
  if (Deno.env.get("TRIAD_VM_GUEST") !== "1" || hostname !== "triad") {
    throw new Error(`Refusing to crash ${hostname}: not the triad test VM`);
  }
  await Deno.writeTextFile("/proc/sysrq-trigger", "c");
});
