/**
 * The VM harness's libvirtd start on a machine where libvirt never ran: an empty QEMU capability
 * cache, so libvirtd probes every QEMU binary before it answers, while both CPUs are busy.
 *
 * @module
 */
import assert from "node:assert/strict";
import { capabilityCacheBlocked } from "../vm/_libvirt_daemon.ts";
import { command, root, testWith } from "./requirements.ts";
import { stopChild } from "./support.ts";

const FIXTURE = new URL("vm_fixtures/libvirt_start.ts", import.meta.url).pathname;

const NEEDS = [
  root,
  command("libvirtd", "libvirt-daemon"),
  command("virtlogd", "libvirt-daemon"),
  command("virsh", "libvirt-clients"),
  command("qemu-system-x86_64", "qemu-system-x86"),
  command("ip", "iproute2"),
  command("unshare", "util-linux"),
  command("nice", "coreutils"),
];

/** /dev/kvm is open to the qemu user, as udev leaves it (`sudo deno task setup` does it here). */
const kvmForQemuUser = { name: "/dev/kvm for group kvm", check: capabilityCacheBlocked };

/**
 * Runs the fixture in a private mount namespace: its own /run (libvirt's sockets and pid files)
 * and empty libvirt state, cache and log directories, so the host's libvirt is never touched.
 */
function startInPrivateNamespace(
  dirs: { cache: string; lib: string; log: string },
  options: { nice?: boolean; libvirtdConf?: string } = {},
): Promise<Deno.CommandOutput> {
  const script = [
    "mount -t tmpfs tmpfs /run",
    `mount --bind ${dirs.cache} /var/cache/libvirt`,
    `mount --bind ${dirs.lib} /var/lib/libvirt`,
    `mount --bind ${dirs.log} /var/log/libvirt`,
    ...(options.libvirtdConf
      ? [`mount --bind ${options.libvirtdConf} /etc/libvirt/libvirtd.conf`]
      : []),
    // nice 10 against the spinners' 0: libvirtd gets about a tenth of a CPU, as when the whole
    // suite competes with it on CI
    `exec ${options.nice ? "nice -n 10 " : ""}"$0" run -A ${FIXTURE}`,
  ].join(" && ");
  return new Deno.Command("unshare", {
    args: ["--mount", "--propagation", "private", "sh", "-c", script, Deno.execPath()],
    stdout: "piped",
    stderr: "piped",
  }).output();
}

async function libvirtDirs(): Promise<{ cache: string; lib: string; log: string; root: string }> {
  const dir = await Deno.makeTempDir({ prefix: "triad-libvirt-" });
  await Deno.chmod(dir, 0o755);
  const dirs = { cache: `${dir}/cache`, lib: `${dir}/lib`, log: `${dir}/log`, root: dir };
  for (const path of [dirs.cache, dirs.lib, dirs.log]) await Deno.mkdir(path, { mode: 0o755 });
  return dirs;
}

testWith(
  "LibvirtDaemon.start() waits out a first start's QEMU probe on busy CPUs",
  [...NEEDS, kvmForQemuUser, command("taskset", "util-linux"), command("timeout", "coreutils")],
  async () => {
    const dirs = await libvirtDirs();
    const busy: Deno.ChildProcess[] = [];
    try {
      // One spinner per CPU, each ended by timeout(1) even if this test dies.
      for (const cpu of ["0", "1"]) {
        busy.push(
          new Deno.Command("taskset", {
            args: ["-c", cpu, "timeout", "300", "sh", "-c", "while :; do :; done"],
            stdin: "null",
          }).spawn(),
        );
      }
      const { code, stdout, stderr } = await startInPrivateNamespace(dirs, { nice: true });
      const progress = new TextDecoder().decode(stderr);
      assert.equal(code, 0, progress);
      const { seconds } = JSON.parse(new TextDecoder().decode(stdout)) as { seconds: number };
      console.error(`libvirtd answered after ${seconds.toFixed(1)} s with both CPUs busy`);
      // the load lasted the whole start
      for (const child of busy) {
        assert.equal(
          await Promise.race([child.status.then(() => "exited"), Promise.resolve("running")]),
          "running",
        );
      }
      // it probed: the cache it started without now holds one file per QEMU binary
      const cached = [...Deno.readDirSync(`${dirs.cache}/qemu/capabilities`)];
      assert.ok(cached.length >= 1, "no capabilities were cached");
      if (seconds > 6) assert.match(progress, /waiting for .*libvirt-sock/);
    } finally {
      const spinners = busy.flatMap((child) => {
        try {
          return Deno.readTextFileSync(`/proc/${child.pid}/task/${child.pid}/children`).trim()
            .split(" ").filter(Boolean);
        } catch {
          return [];
        }
      });
      for (const child of busy) {
        // SIGTERM: timeout(1) passes it on to its spinner and reaps it (a SIGKILL would orphan
        // the spinner)
        await stopChild(child);
      }
      const left = spinners.filter((pid) => {
        try {
          return Deno.statSync(`/proc/${pid}`).isDirectory;
        } catch {
          return false;
        }
      });
      assert.equal(spinners.length, busy.length, "a spinner did not run");
      assert.deepEqual(left, [], "spinners left running");
      await Deno.remove(dirs.root, { recursive: true });
    }
  },
);

testWith(
  "LibvirtDaemon.start() fails at once, with libvirtd's words, when libvirtd exits",
  NEEDS,
  async () => {
    const dirs = await libvirtDirs();
    try {
      const conf = `${dirs.root}/libvirtd.conf`;
      await Deno.writeTextFile(conf, "listen_tls = [broken\n");
      const started = Date.now();
      const { code, stderr } = await startInPrivateNamespace(dirs, { libvirtdConf: conf });
      const text = new TextDecoder().decode(stderr);
      assert.notEqual(code, 0);
      assert.match(
        text,
        /libvirtd exited with code \d+ while the harness waited for libvirtd to answer:\n[\s\S]*syntax error: \/etc\/libvirt\/libvirtd\.conf/,
      );
      assert.ok(Date.now() - started < 60_000, `took ${Date.now() - started} ms`);
    } finally {
      await Deno.remove(dirs.root, { recursive: true });
    }
  },
);

testWith(
  "libvirtd keeps its QEMU capability cache across starts",
  [...NEEDS, kvmForQemuUser],
  async () => {
    const dirs = await libvirtDirs();
    try {
      const modified = () =>
        [...Deno.readDirSync(`${dirs.cache}/qemu/capabilities`)].map((entry) =>
          `${entry.name} ${
            Deno.statSync(`${dirs.cache}/qemu/capabilities/${entry.name}`).mtime?.getTime()
          }`
        ).sort();
      const first = await startInPrivateNamespace(dirs);
      assert.equal(first.code, 0, new TextDecoder().decode(first.stderr));
      const probed = modified();
      assert.ok(probed.length >= 1, "no capabilities were cached");
      const second = await startInPrivateNamespace(dirs);
      assert.equal(second.code, 0, new TextDecoder().decode(second.stderr));
      // a re-probe rewrites every file (libvirtd started on the other CPU did, 1 start in 3)
      assert.deepEqual(modified(), probed);
      // started on one CPU, libvirtd gets them all back once it answers
      const allowed = /^Cpus_allowed_list:\s*(\S+)/m.exec(
        Deno.readTextFileSync("/proc/self/status"),
      )![1];
      for (const start of [first, second]) {
        const { cpus } = JSON.parse(new TextDecoder().decode(start.stdout)) as { cpus: string[] };
        assert.deepEqual(cpus, [allowed]);
      }
    } finally {
      await Deno.remove(dirs.root, { recursive: true });
    }
  },
);
