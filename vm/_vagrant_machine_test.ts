import assert from "node:assert/strict";
import { VagrantMachine } from "./_vagrant_machine.ts";
import { hasProgram, runCommand } from "./_command.ts";
import { SYNC_EXCLUDES } from "./_sync.ts";
import { VM_DIR } from "./_paths.ts";

function machine(overrides: Partial<ConstructorParameters<typeof VagrantMachine>[0]> = {}) {
  return new VagrantMachine({
    provider: "libvirt",
    box: "triad/debian12",
    workDir: "/tmp/triad-vm-x",
    netns: "triad-vm-x",
    driver: "qemu",
    prefix: "triad-vm-x-",
    pool: "triad-vm-x",
    network: "triad-vm-x",
    denoDir: "/cache/deno-dir",
    memoryMiB: 3072,
    cpus: 2,
    bootTimeoutMs: 300_000,
    ...overrides,
  });
}

Deno.test("VagrantMachine.environment() drives vm/Vagrantfile and keeps state out of the repo", () => {
  const env = machine().environment();
  assert.equal(env.VAGRANT_CWD, VM_DIR);
  assert.equal(env.VAGRANT_DOTFILE_PATH, "/tmp/triad-vm-x/.vagrant");
  assert.equal(env.VAGRANT_DEFAULT_PROVIDER, "libvirt");
  assert.equal(env.TRIAD_VM_BOX, "triad/debian12");
  assert.equal(env.TRIAD_VM_DRIVER, "qemu");
  assert.equal(env.TRIAD_VM_MEMORY, "3072");
  assert.equal(env.TRIAD_VM_SERIAL_LOG, "/tmp/triad-vm-x/serial.log");
  assert.equal(env.TRIAD_VM_PREFIX, "triad-vm-x-");
  assert.equal(env.TRIAD_VM_POOL, "triad-vm-x");
  assert.equal(env.TRIAD_VM_NETWORK, "triad-vm-x");
  assert.equal(env.TRIAD_VM_DENO_DIR, "/cache/deno-dir");
  assert.equal(env.TRIAD_VM_BOOT_TIMEOUT, "300");
  const bare = new VagrantMachine({
    provider: "virtualbox",
    box: "bento/debian-12",
    workDir: "/tmp/triad-vm-y",
    driver: "kvm",
    prefix: "triad-vm-y-",
    memoryMiB: 2048,
    cpus: 2,
    bootTimeoutMs: 60_000,
  });
  assert.equal(bare.environment().TRIAD_VM_POOL, undefined);
  assert.equal(bare.environment().VAGRANT_DEFAULT_PROVIDER, "virtualbox");
  assert.equal(machine().name, "triad-vm-x-default");
});

Deno.test("VagrantMachine.describeKeep() says how to reach and remove a kept VM", () => {
  const text = machine().describeKeep();
  assert.match(text, /ip netns exec triad-vm-x ssh -F \/tmp\/triad-vm-x\/ssh_config default/);
  assert.match(text, /vagrant destroy -f/);
});

Deno.test("vm/Vagrantfile syncs the repository with the same excludes as the qemu provider", async () => {
  const ruby = await Deno.readTextFile(`${VM_DIR}/Vagrantfile`);
  const list = /rsync__exclude: \[([^\]]*)\]/.exec(ruby)?.[1] ?? "";
  const excludes = [...list.matchAll(/"([^"]+)"/g)].map((m) => m[1]);
  assert.deepEqual(excludes, [...SYNC_EXCLUDES]);
  assert.match(ruby, /config\.vm\.provider :libvirt/);
  assert.match(ruby, /config\.vm\.provider :virtualbox/);
  assert.match(ruby, /provision\/provision\.sh/);
});

Deno.test("vm/Vagrantfile validates with vagrant for each driver and provider", async (t) => {
  if (!hasProgram("vagrant")) {
    console.error("SKIP vm/Vagrantfile validation: needs vagrant (apt-get install vagrant)");
    return;
  }
  const workDir = await Deno.makeTempDir({ prefix: "triad-vm-validate-" });
  try {
    for (
      const [provider, driver] of [["libvirt", "qemu"], ["libvirt", "kvm"], ["virtualbox", "kvm"]]
    ) {
      await t.step(`${provider} (${driver})`, async () => {
        const env = machine({
          provider: provider as "libvirt" | "virtualbox",
          driver: driver as "kvm" | "qemu",
          workDir,
          denoDir: workDir,
        }).environment();
        const { stdout } = await runCommand("vagrant", ["validate", "--ignore-provider"], {
          env,
          timeoutMs: 60_000,
        });
        assert.match(stdout, /validated successfully/);
      });
    }
  } finally {
    await Deno.remove(workDir, { recursive: true });
  }
});
