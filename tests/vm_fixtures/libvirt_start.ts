/**
 * Starts the harness's libvirtd (`LibvirtDaemon.start`) in a network namespace of its own, prints
 * how long it took to answer and the CPUs its threads may then use as JSON on stdout (progress
 * lines go to stderr), then stops it.
 * `tests/vm_libvirt_daemon_test.ts` runs it in a private mount namespace whose /run and libvirt
 * directories (the capability cache among them) are empty, so it never meets the host's libvirt.
 *
 * @module
 */
import { LibvirtDaemon } from "../../vm/_libvirt_daemon.ts";
import { NetworkNamespace } from "../../vm/_network_namespace.ts";

const started = Date.now();
await using ns = await NetworkNamespace.create(`triad-lvtest-${Deno.pid}`);
const daemon = await LibvirtDaemon.start(ns.name, {
  log: (line) => console.error(line),
  progressEveryMs: 5_000,
});
const seconds = (Date.now() - started) / 1000;
// The CPUs libvirtd (and so the QEMU it starts) may run on once it answers, every thread
const cpus = [...Deno.readDirSync(`/proc/${daemon.pids[1]}/task`)].map((task) =>
  /^Cpus_allowed_list:\s*(\S+)/m.exec(
    Deno.readTextFileSync(`/proc/${daemon.pids[1]}/task/${task.name}/status`),
  )?.[1]
);
await daemon.stop();
console.log(JSON.stringify({ seconds, cpus: [...new Set(cpus)] }));
