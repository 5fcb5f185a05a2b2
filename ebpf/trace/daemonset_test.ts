import assert from "node:assert/strict";
import { parseAllDocuments } from "yaml";

// deploy/daemonset.yaml is documented as least privilege: these are the promises it makes.
const path = new URL("./deploy/daemonset.yaml", import.meta.url);

interface Container {
  args?: string[];
  securityContext?: {
    privileged?: boolean;
    allowPrivilegeEscalation?: boolean;
    readOnlyRootFilesystem?: boolean;
    capabilities?: { drop?: string[]; add?: string[] };
  };
  volumeMounts?: { name: string; mountPath: string; readOnly?: boolean }[];
}

Deno.test("deploy/daemonset.yaml runs the tracer with least privilege", async (t) => {
  const documents = parseAllDocuments(await Deno.readTextFile(path));
  for (const document of documents) assert.deepEqual(document.errors, []);
  const objects = documents.map((d) => d.toJS());
  const daemonSet = objects.find((o) => o.kind === "DaemonSet");
  assert.ok(daemonSet, "a DaemonSet");
  const pod = daemonSet.spec.template.spec;
  const containers = pod.containers as Container[];
  await t.step("one container, not privileged, no escalation", () => {
    assert.equal(containers.length, 1);
    assert.equal(pod.initContainers, undefined);
    const security = containers[0]!.securityContext!;
    assert.equal(security.privileged, false);
    assert.equal(security.allowPrivilegeEscalation, false);
    assert.equal(security.readOnlyRootFilesystem, true);
  });
  await t.step("capabilities: all dropped but BPF, PERFMON, SYS_RESOURCE", () => {
    const capabilities = containers[0]!.securityContext!.capabilities!;
    assert.deepEqual(capabilities.drop, ["ALL"]);
    assert.deepEqual([...capabilities.add!].sort(), ["BPF", "PERFMON", "SYS_RESOURCE"]);
  });
  await t.step("hostPID, and no host network or IPC", () => {
    assert.equal(pod.hostPID, true);
    assert.notEqual(pod.hostNetwork, true);
    assert.notEqual(pod.hostIPC, true);
  });
  await t.step("BTF and tracefs mounted read-only from the host, nothing else from it", () => {
    const mounts = containers[0]!.volumeMounts!;
    const hostPaths = Object.fromEntries(
      (pod.volumes as { name: string; hostPath?: { path: string } }[])
        .filter((v) => v.hostPath).map((v) => [v.name, v.hostPath!.path]),
    );
    assert.deepEqual(Object.values(hostPaths).sort(), ["/sys/kernel/btf", "/sys/kernel/tracing"]);
    for (const [name, hostPath] of Object.entries(hostPaths)) {
      const mount = mounts.find((m) => m.name === name)!;
      assert.equal(mount.mountPath, hostPath);
      assert.equal(mount.readOnly, true, `${hostPath} is mounted read-only`);
    }
  });
  await t.step("JSON Lines on stdout", () => {
    assert.ok(containers[0]!.args!.includes("--json"));
  });
});
