/**
 * End to end through the VM harness (`@triad/vm`): real VMs on libvirt (through Vagrant, in a
 * network namespace) and on qemu directly, each checked to leave nothing behind. Takes minutes
 * under software emulation, so it runs only when asked: `deno task test:vm:e2e`
 * (TRIAD_VM_E2E=1).
 *
 * @module
 */
import assert from "node:assert/strict";
import { runSuite, VmError } from "@triad/vm";
import { command, type Requirement, root, testWith } from "./requirements.ts";

const asked: Requirement = {
  name: "TRIAD_VM_E2E",
  check: () =>
    Deno.env.get("TRIAD_VM_GUEST") === "1"
      ? "runs on the host only, this is the test VM"
      : Deno.env.get("TRIAD_VM_E2E") === "1"
      ? undefined
      : "boots VMs for minutes: run deno task test:vm:e2e (TRIAD_VM_E2E=1)",
};
const qemu = command("qemu-system-x86_64", "qemu-system-x86");
const libvirt = [
  command("libvirtd", "libvirt-daemon"),
  command("virsh", "libvirt-clients"),
  command("vagrant"),
];
const REPO = new URL("..", import.meta.url).pathname;

async function output(program: string, args: string[]): Promise<string> {
  const { stdout } = await new Deno.Command(program, { args, stdout: "piped", stderr: "null" })
    .output();
  return new TextDecoder().decode(stdout);
}

/** The ids of the runs named in the harness's log lines (`triad-vm-<id>-...`). */
function runIds(log: string): string[] {
  const ids = [...log.matchAll(/triad-vm-([0-9a-z]+)-/g)].map((m) => m[1]!);
  return [...new Set(ids)].filter((id) => !["e2e", "validate", "test"].includes(id));
}

async function daemons(): Promise<Set<number>> {
  const pids = new Set<number>();
  for (const line of (await output("ps", ["-eo", "pid,comm"])).split("\n")) {
    const [pid, comm] = line.trim().split(/\s+/);
    if (comm === "libvirtd" || comm === "virtlogd") pids.add(Number(pid));
  }
  return pids;
}

/**
 * What the runs could leave behind: their namespaces, processes, bridges, temporary directories,
 * and any libvirtd/virtlogd that was not running before. Other harness runs on the machine (other
 * ids) are not ours to judge.
 */
async function leftovers(ids: string[], daemonsBefore: Set<number>): Promise<string[]> {
  assert.ok(ids.length > 0, "the harness's log names its run");
  const found: string[] = [];
  const netns = await output("ip", ["netns", "list"]);
  const processes = await output("ps", ["-eo", "pid,args"]);
  const links = await output("ip", ["-o", "link"]);
  const dirs = [...Deno.readDirSync("/tmp")].map((entry) => entry.name);
  for (const id of ids) {
    const name = `triad-vm-${id}`;
    for (const line of netns.split("\n")) {
      if (line.split(" ")[0] === name) found.push(`namespace ${name}`);
    }
    for (const line of processes.split("\n")) {
      if (line.includes(`${name}-`) && !/\bps\b/.test(line)) found.push(`process ${line.trim()}`);
    }
    const bridge = `tvm${id}`.slice(0, 15);
    for (const line of links.split("\n")) {
      if (line.split(":")[1]?.trim().split("@")[0] === bridge) found.push(`bridge ${bridge}`);
    }
    for (const dir of dirs) if (dir.startsWith(`${name}-`)) found.push(`directory /tmp/${dir}`);
  }
  for (const pid of await daemons()) {
    if (!daemonsBefore.has(pid)) found.push(`libvirtd/virtlogd process ${pid}`);
  }
  return found;
}

async function withOutDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix: "triad-vm-e2e-" });
  try {
    return await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

testWith(
  "runSuite() on libvirt brings back exit code, JUnit report and dmesg, and removes everything",
  [asked, root, qemu, ...libvirt],
  async () => {
    const before = await daemons();
    let log = "";
    await withOutDir(async (outDir) => {
      const result = await runSuite({
        provider: "libvirt",
        testArgs: ["tests/vm_fixtures/guest_probe.ts"],
        outDir,
        echo: false,
        log: (line) => {
          log += `${line}\n`;
          console.error(`  ${line}`);
        },
      });
      assert.match(result.kernel, /^6\.1\.\d+-\d+-amd64$/);
      assert.equal(result.exitCode, 1, "the deliberate failure makes deno test exit 1");
      assert.deepEqual(result.summary.failures, ["deliberate failure travels back to the host"]);
      assert.equal(result.summary.passed, 4);
      assert.equal(result.summary.skipped, 1);
      assert.deepEqual(result.skips, [
        "SKIP a feature from a future kernel is skipped with the reason: needs a feature from " +
        "the future (Linux 99.0+), kernel is 6.1",
      ]);
      assert.match(result.junit, /guest runs Debian 12(&apos;|')s 6\.1 kernel with BTF/);
      assert.match(result.dmesg, /Linux version 6\.1\./);
      assert.match(result.serialLog, /Linux version 6\.1\./);
      assert.equal(await Deno.readTextFile(`${outDir}/junit.xml`), result.junit);
      assert.match(await Deno.readTextFile(`${outDir}/dmesg.txt`), /Linux version/);
      const brief = JSON.parse(await Deno.readTextFile(`${outDir}/result.json`));
      assert.equal(brief.exitCode, 1);
    });
    assert.deepEqual(await leftovers(runIds(log), before), []);
  },
);

testWith(
  "runSuite() on qemu ends a boot that does not finish in a timeout error with the serial log",
  [asked, root, qemu],
  async () => {
    const before = await daemons();
    let log = "";
    await withOutDir(async (outDir) => {
      const started = Date.now();
      await assert.rejects(
        runSuite({
          provider: "qemu",
          bootTimeoutMs: 5000,
          outDir,
          echo: false,
          log: (line) => log += `${line}\n`,
        }),
        (error: unknown) => {
          assert.ok(error instanceof VmError, String(error));
          assert.equal(error.code, "timeout");
          assert.match(error.message, /Boot timed out: no SSH login within 5 s/);
          // The firmware writes to the serial console at once (graphics=off), so even a boot
          // stopped after 5 s has a log that says how far it got (the error carries its tail).
          assert.match(error.serialLog ?? "", /\S/, "the serial log comes with the error");
          return true;
        },
      );
      assert.ok(Date.now() - started < 120_000, "the timeout is kept");
      assert.match(await Deno.readTextFile(`${outDir}/serial.log`), /SeaBIOS/);
    });
    assert.deepEqual(await leftovers(runIds(log), before), []);
  },
);

testWith(
  "runSuite() on qemu turns a guest kernel panic into a guest_crashed error with the panic",
  [asked, root, qemu],
  async () => {
    const before = await daemons();
    let log = "";
    await withOutDir(async (outDir) => {
      await assert.rejects(
        runSuite({
          provider: "qemu",
          testArgs: ["tests/vm_fixtures/guest_panic.ts"],
          outDir,
          echo: false,
          log: (line) => log += `${line}\n`,
        }),
        (error: unknown) => {
          assert.ok(error instanceof VmError, String(error));
          assert.equal(error.code, "guest_crashed", error.message);
          assert.match(error.serialLog ?? "", /Kernel panic - not syncing/);
          return true;
        },
      );
    });
    assert.deepEqual(await leftovers(runIds(log), before), []);
  },
);

testWith(
  "deno task test:vm removes everything when interrupted with SIGINT during boot",
  [asked, root, qemu, ...libvirt],
  async () => {
    const before = await daemons();
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "vm/main.ts", "--provider", "libvirt"],
      cwd: REPO,
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    let output = "";
    let sent = false;
    const read = async (stream: ReadableStream<Uint8Array>) => {
      const decoder = new TextDecoder();
      for await (const chunk of stream) {
        output += decoder.decode(chunk, { stream: true });
        // interrupt while vagrant is bringing the domain up
        if (!sent && /Starting domain|Waiting for domain/.test(output)) {
          sent = true;
          child.kill("SIGINT");
        }
      }
    };
    await Promise.all([read(child.stdout), read(child.stderr)]);
    const stderr = output;
    const { code } = await child.status;
    assert.ok(sent, `never reached the boot:\n${stderr}`);
    assert.equal(code, 130, stderr);
    assert.match(stderr, /interrupted, removing the VM/);
    assert.deepEqual(await leftovers(runIds(stderr), before), []);
  },
);
