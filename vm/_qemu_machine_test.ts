import assert from "node:assert/strict";
import { QemuMachine } from "./_qemu_machine.ts";

Deno.test("QemuMachine.qemuArgs() keeps the guest off every network but one loopback forward", () => {
  const vm = new QemuMachine({
    boxImage: "/boxes/box.img",
    workDir: "/tmp/triad-vm-q",
    privateKey: "/tmp/triad-vm-q/key",
    accel: "tcg",
    memoryMiB: 2048,
    cpus: 2,
    bootTimeoutMs: 60_000,
    repoRoot: "/repo",
  });
  const args = vm.qemuArgs("/tmp/triad-vm-q/disk.qcow2", 40022);
  const joined = args.join(" ");
  const netdev = args[args.indexOf("-netdev") + 1]!;
  assert.equal(netdev, "user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:40022-:22");
  assert.equal(args.filter((arg) => arg === "-netdev").length, 1);
  assert.match(joined, /-accel tcg -cpu max/);
  assert.match(joined, /file=\/tmp\/triad-vm-q\/disk\.qcow2,if=virtio,format=qcow2/);
  assert.doesNotMatch(joined, /box\.img/, "the box disk is only a backing file, never opened rw");
  assert.match(joined, /-serial file:\/tmp\/triad-vm-q\/serial\.log/);
  assert.match(joined, /-nodefaults/);
  assert.match(joined, /-machine graphics=off/, "firmware and boot loader write to the serial log");
});
