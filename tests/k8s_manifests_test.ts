import assert from "node:assert/strict";
import { parseDnsConfig } from "@triad/dnsproxy";
import { parseAllDocuments } from "yaml";
import {
  deployFiles,
  fromRoot,
  isWorkload,
  type Manifest,
  type PodPolicy,
  policyViolations,
  type ReadFiles,
  readYaml,
  renderKustomization,
  schemaError,
  unknownFields,
} from "./k8s_manifests.ts";

/** What each workload may have: the grants the READMEs document, and no more. */
const PROXY: PodPolicy = {
  capabilities: ["NET_BIND_SERVICE"],
  nonRoot: true,
  seccomp: "RuntimeDefault",
};
const BUNDLES: {
  name: string;
  render: (read: ReadFiles) => Promise<Manifest[]>;
  policies: Record<string, PodPolicy>;
}[] = [
  {
    name: "dnsproxy/deploy (kustomize base)",
    render: (read) => renderKustomization(fromRoot("dnsproxy/deploy"), read),
    policies: { "Deployment/dnsproxy": PROXY },
  },
  {
    name: "dnsproxy/deploy/xdp (overlay)",
    render: (read) => renderKustomization(fromRoot("dnsproxy/deploy/xdp"), read),
    policies: {
      "Deployment/dnsproxy": {
        capabilities: ["NET_BIND_SERVICE", "BPF", "NET_ADMIN"],
        nonRoot: false,
        seccomp: "RuntimeDefault",
      },
    },
  },
  {
    name: "ebpf/trace/deploy/daemonset.yaml",
    render: (read) => {
      read.add("ebpf/trace/deploy/daemonset.yaml");
      return readYaml(fromRoot("ebpf/trace/deploy/daemonset.yaml"));
    },
    policies: {
      "DaemonSet/tcp-trace": {
        capabilities: ["BPF", "PERFMON", "SYS_RESOURCE"],
        nonRoot: false,
        seccomp: "Unconfined", // runtimes' default profiles refuse perf_event_open() to it
        hostPID: true,
      },
    },
  },
];

const rendered = new Map<string, Manifest[]>();
const read: ReadFiles = new Set();
for (const bundle of BUNDLES) rendered.set(bundle.name, await bundle.render(read));

Deno.test("every manifest under a deploy/ directory is rendered by a bundle here", async () => {
  assert.deepEqual((await deployFiles()).filter((file) => !read.has(file)), []);
});

for (const bundle of BUNDLES) {
  const objects = rendered.get(bundle.name)!;
  Deno.test(`${bundle.name}: valid against the Kubernetes API schemas`, () => {
    assert.ok(objects.length > 0);
    assert.deepEqual(objects.map(schemaError).filter((e) => e !== undefined), []);
    assert.deepEqual(objects.flatMap(unknownFields), []);
  });
  Deno.test(`${bundle.name}: pods within their policy (least privilege)`, () => {
    const workloads = objects.filter(isWorkload);
    assert.ok(workloads.length > 0);
    for (const workload of workloads) {
      const key = `${workload.object.kind}/${workload.object.metadata.name}`;
      const policy = bundle.policies[key];
      assert.ok(policy, `${workload.source}: ${key} has no policy in this test`);
      assert.deepEqual(policyViolations(workload, policy), []);
    }
  });
}

Deno.test("the XDP overlay grants BPF and NET_ADMIN as root, which the base policy refuses", () => {
  const xdp = rendered.get("dnsproxy/deploy/xdp (overlay)")!.find((m) =>
    m.object.kind === "Deployment"
  )!;
  const violations = policyViolations(xdp, PROXY).join("\n");
  assert.match(violations, /BPF is beyond/);
  assert.match(violations, /NET_ADMIN is beyond/);
  assert.match(violations, /must run as non-root/);
  const namespace = rendered.get("dnsproxy/deploy/xdp (overlay)")!.find((m) =>
    m.object.kind === "Namespace"
  )!;
  assert.equal(
    namespace.object.metadata.labels["pod-security.kubernetes.io/enforce"],
    "privileged",
  );
});

function proxyDeployment(): Manifest {
  const objects = rendered.get("dnsproxy/deploy (kustomize base)")!;
  const deployment = objects.find((m) => m.object.kind === "Deployment")!;
  return { source: deployment.source, object: structuredClone(deployment.object) };
}

Deno.test("the policy check fails on a mutated copy of the proxy's Deployment", async (t) => {
  // deno-lint-ignore no-explicit-any
  const mutations: [string, (container: Record<string, any>) => void, RegExp][] = [
    ["privileged", (c) => c.securityContext.privileged = true, /privileged is true/],
    [
      "an added capability",
      (c) => c.securityContext.capabilities.add.push("SYS_ADMIN"),
      /capabilities.add: SYS_ADMIN is beyond this workload's list \(NET_BIND_SERVICE\)/,
    ],
    [
      "a writable root filesystem",
      (c) => c.securityContext.readOnlyRootFilesystem = false,
      /readOnlyRootFilesystem is not true/,
    ],
    [
      "readOnlyRootFilesystem left out (or misspelt)",
      (c) => {
        delete c.securityContext.readOnlyRootFilesystem;
        c.securityContext.readOnlyRootFileSystem = true;
      },
      /readOnlyRootFilesystem is not true/,
    ],
    [
      "privilege escalation",
      (c) => c.securityContext.allowPrivilegeEscalation = true,
      /allowPrivilegeEscalation is not false/,
    ],
    ["capabilities not dropped", (c) => c.securityContext.capabilities.drop = [], /drop/],
    [
      "root",
      (c) => c.securityContext.runAsNonRoot = false,
      /must run as non-root/,
    ],
  ];
  for (const [what, mutate, message] of mutations) {
    await t.step(what, () => {
      const copy = proxyDeployment();
      assert.deepEqual(policyViolations(copy, PROXY), [], "the original passes");
      mutate(copy.object.spec.template.spec.containers[0]);
      const violations = policyViolations(copy, PROXY);
      assert.equal(violations.length, 1, violations.join("\n"));
      assert.match(violations[0]!, message);
      assert.match(violations[0]!, /^dnsproxy\/deploy\/deployment\.yaml:\d+: Deployment\/dnsproxy/);
    });
  }
  await t.step("hostNetwork, in an init container too", () => {
    const copy = proxyDeployment();
    copy.object.spec.template.spec.hostNetwork = true;
    const init = structuredClone(copy.object.spec.template.spec.containers[0]);
    init.name = "init";
    init.securityContext.privileged = true;
    copy.object.spec.template.spec.initContainers = [init];
    const violations = policyViolations(copy, PROXY).join("\n");
    assert.match(violations, /hostNetwork/);
    assert.match(violations, /container init: securityContext.privileged is true/);
  });
});

Deno.test("the schema check fails on a mutated copy of the proxy's Deployment", async (t) => {
  // deno-lint-ignore no-explicit-any
  const mutations: [string, (object: Record<string, any>) => void, RegExp][] = [
    [
      "a port as a string",
      (o) => o.spec.template.spec.containers[0].ports[0].containerPort = "53",
      /containerPort must be integer/,
    ],
    ["no containers", (o) => delete o.spec.template.spec.containers, /containers/],
    [
      "an unknown protocol",
      (o) => o.spec.template.spec.containers[0].ports[0].protocol = "QUIC",
      /protocol/,
    ],
    ["no selector", (o) => delete o.spec.selector, /selector/],
    [
      "a misspelt probe field",
      (o) => o.spec.template.spec.containers[0].readinessProbe.periodSecond = 5,
      /\.spec\.template\.spec\.containers\[0\]\.readinessProbe\.periodSecond: unknown field \(not in V1Probe\)/,
    ],
    [
      "a misspelt top-level field",
      (o) => o.sepc = {},
      /\.sepc: unknown field \(not in V1Deployment\)/,
    ],
  ];
  for (const [what, mutate, message] of mutations) {
    await t.step(what, () => {
      const copy = proxyDeployment();
      mutate(copy.object);
      const error = schemaError(copy) ?? unknownFields(copy)[0];
      assert.ok(error !== undefined, "refused");
      assert.match(error, message);
      assert.match(error, /^dnsproxy\/deploy\/deployment\.yaml:\d+: Deployment\/dnsproxy: /);
    });
  }
});

/** The listeners of the proxy's configuration (`tls`, `https`, `quic`: dnsproxy/config.ts). */
interface Listeners {
  listen: string;
  metrics: string;
  tls: { listen: string; cert: string; key: string };
  https: { listen: string };
  quic: { listen: string };
}

/** The ConfigMap's dnsproxy.yaml of a bundle, validated by the proxy's own parser. */
function proxyConfig(bundle: string): Listeners {
  const configMap = rendered.get(bundle)!.find((m) => m.object.kind === "ConfigMap")!;
  const [document] = parseAllDocuments(configMap.object.data["dnsproxy.yaml"]);
  assert.deepEqual(document!.errors, []);
  const config = parseDnsConfig(document!.toJS()) as unknown as Partial<Listeners>;
  for (const key of ["tls", "https", "quic"] as const) {
    assert.ok(config[key], `parseDnsConfig has no ${key}: the proxy lacks DoT/DoH/DoQ (h-edns)`);
  }
  return config as Listeners;
}

interface Port {
  name: string;
  containerPort: number;
  protocol: string;
}
interface ServicePort {
  name: string;
  port: number;
  targetPort: string | number;
  protocol: string;
}

/**
 * What is wrong between the configuration's listeners, the container's ports and the Service's:
 * each enabled listener has a containerPort (and no other containerPort is there), each
 * containerPort a Service port, and the certificate files lie in a read-only Secret mount.
 */
// deno-lint-ignore no-explicit-any
function portProblems(config: Listeners, deployment: any, service: any): string[] {
  const out: string[] = [];
  const port = (address: string) => Number(address.slice(address.lastIndexOf(":") + 1));
  const wanted = new Map<string, string>(); // "853/TCP" → the key enabling it
  const want = (key: string, address: string, protocols: string[]) => {
    if (address === "") return;
    for (const protocol of protocols) wanted.set(`${port(address)}/${protocol}`, key);
  };
  want("listen", config.listen, ["UDP", "TCP"]);
  want("metrics", config.metrics, ["TCP"]);
  want("tls.listen", config.tls.listen, ["TCP"]);
  want("https.listen", config.https.listen, ["TCP"]);
  want("quic.listen", config.quic.listen, ["UDP"]);
  const container = deployment.spec.template.spec.containers[0];
  const ports: Port[] = container.ports;
  const have = new Set(ports.map((p) => `${p.containerPort}/${p.protocol}`));
  for (const [key, value] of wanted) {
    if (!have.has(key)) out.push(`${value} (${key}) has no containerPort`);
  }
  for (const p of ports) {
    const key = `${p.containerPort}/${p.protocol}`;
    if (!wanted.has(key)) out.push(`containerPort ${p.name} (${key}) matches no listener`);
    const exposed = (service.spec.ports as ServicePort[]).some((s) =>
      (s.targetPort === p.name || s.targetPort === p.containerPort) && s.protocol === p.protocol
    );
    if (!exposed) out.push(`containerPort ${p.name} (${key}) is not in the Service`);
  }
  if (config.tls.cert !== "" || config.tls.key !== "") {
    const secrets = new Set<string>(
      deployment.spec.template.spec.volumes
        .filter((v: { secret?: unknown }) => v.secret !== undefined)
        .map((v: { name: string }) => v.name),
    );
    for (const file of [config.tls.cert, config.tls.key]) {
      const mount = container.volumeMounts.find((m: { name: string; mountPath: string }) =>
        secrets.has(m.name) && file.startsWith(`${m.mountPath}/`)
      );
      if (mount === undefined) out.push(`${file} is in no Secret mount`);
      else if (mount.readOnly !== true || mount.subPath !== undefined) {
        out.push(`${file}: its Secret mount is not read-only, or a subPath (never updated)`);
      }
    }
  }
  return out;
}

for (const bundle of ["dnsproxy/deploy (kustomize base)", "dnsproxy/deploy/xdp (overlay)"]) {
  Deno.test(`${bundle}: the ConfigMap's dnsproxy.yaml is a valid proxy configuration`, () => {
    const config = proxyConfig(bundle);
    assert.equal(config.listen, "0.0.0.0:53");
    assert.equal(config.metrics, "0.0.0.0:9153");
    assert.equal(config.tls.listen, "0.0.0.0:853");
    assert.equal(config.https.listen, "0.0.0.0:443");
    assert.equal(config.quic.listen, "0.0.0.0:853");
  });
  Deno.test(`${bundle}: every listener has a containerPort, every containerPort is in the Service`, () => {
    const objects = rendered.get(bundle)!;
    const deployment = objects.find((m) => m.object.kind === "Deployment")!.object;
    const service = objects.find((m) => m.object.kind === "Service")!.object;
    assert.deepEqual(portProblems(proxyConfig(bundle), deployment, service), []);
  });
}

Deno.test("the port check fails on mutated copies of the proxy's manifests", async (t) => {
  const objects = rendered.get("dnsproxy/deploy (kustomize base)")!;
  const original = {
    config: proxyConfig("dnsproxy/deploy (kustomize base)"),
    deployment: objects.find((m) => m.object.kind === "Deployment")!.object,
    service: objects.find((m) => m.object.kind === "Service")!.object,
  };
  // deno-lint-ignore no-explicit-any
  const mutations: [string, (copy: any) => void, RegExp][] = [
    [
      "DoQ left out of the Service",
      (c) =>
        c.service.spec.ports = c.service.spec.ports.filter((p: ServicePort) =>
          p.name !== "dns-quic"
        ),
      /^containerPort dns-quic \(853\/UDP\) is not in the Service$/,
    ],
    [
      "the Service's DoQ port on TCP",
      (c) => c.service.spec.ports.find((p: ServicePort) => p.name === "dns-quic").protocol = "TCP",
      /^containerPort dns-quic \(853\/UDP\) is not in the Service$/,
    ],
    [
      "DoH moved to 8443 in the ConfigMap only",
      (c) => c.config.https.listen = "0.0.0.0:8443",
      /https\.listen \(8443\/TCP\) has no containerPort|dns-https \(443\/TCP\) matches no listener/,
    ],
    [
      "DoT turned off, its port left open",
      (c) => c.config.tls.listen = "",
      /^containerPort dns-tls \(853\/TCP\) matches no listener$/,
    ],
    [
      "the certificate outside the Secret mount",
      (c) => c.config.tls.cert = "/etc/triad/tls.crt",
      /^\/etc\/triad\/tls\.crt is in no Secret mount$/,
    ],
    [
      "the Secret mounted writable",
      (c) =>
        c.deployment.spec.template.spec.containers[0].volumeMounts
          .find((m: { name: string }) => m.name === "tls").readOnly = false,
      /tls\.crt: its Secret mount is not read-only/,
    ],
  ];
  for (const [what, mutate, message] of mutations) {
    await t.step(what, () => {
      const copy = structuredClone(original);
      mutate(copy);
      const problems = portProblems(copy.config, copy.deployment, copy.service);
      assert.ok(problems.length > 0, "refused");
      assert.match(problems[0]!, message);
    });
  }
});

Deno.test("the proxy's probes, Service and mounts match its configuration", () => {
  const objects = rendered.get("dnsproxy/deploy (kustomize base)")!;
  const deployment = objects.find((m) => m.object.kind === "Deployment")!.object;
  const container = deployment.spec.template.spec.containers[0];
  assert.equal(container.readinessProbe.httpGet.path, "/health/ready");
  assert.equal(container.livenessProbe.httpGet.path, "/health/live");
  assert.equal(container.readinessProbe.httpGet.port, "metrics");
  const service = objects.find((m) => m.object.kind === "Service")!.object;
  const servicePorts = service.spec.ports.map((p: { port: number; protocol: string }) =>
    `${p.port}/${p.protocol}`
  );
  assert.deepEqual(servicePorts, ["53/UDP", "53/TCP", "853/TCP", "443/TCP", "853/UDP", "9153/TCP"]);
  // a directory mount (not subPath) at the path the proxy searches, so ..data swaps are seen
  const mount = container.volumeMounts.find((m: { name: string }) => m.name === "config");
  assert.equal(mount.mountPath, "/etc/triad");
  assert.equal(mount.subPath, undefined);
  const pdb = objects.find((m) => m.object.kind === "PodDisruptionBudget")!.object;
  assert.deepEqual(pdb.spec.selector, deployment.spec.selector);
  assert.ok(pdb.spec.minAvailable < deployment.spec.replicas);
});

Deno.test("the XDP overlay runs the kernel filter on the pod's interface", () => {
  const deployment =
    rendered.get("dnsproxy/deploy/xdp (overlay)")!.find((m) => m.object.kind === "Deployment")!
      .object;
  assert.deepEqual(deployment.spec.template.spec.containers[0].args, ["--xdp", "eth0"]);
});
