/**
 * Checks Kubernetes manifests without a cluster: renders a kustomization (the subset this
 * repository uses: `resources` and JSON 6902 `patches` with a `target`), validates each object
 * against the Kubernetes API's schemas (the npm `kubernetes-models` package, generated from the
 * API's OpenAPI document), and checks pod security against a per-workload policy.
 *
 * @module
 */
import { join, relative } from "node:path";
import { parseAllDocuments } from "yaml";
import fastJsonPatch from "fast-json-patch";
import type { Operation } from "fast-json-patch";
import { DaemonSet, Deployment } from "kubernetes-models/apps/v1";
import { ConfigMap, Namespace, Service } from "kubernetes-models/v1";
import { PodDisruptionBudget } from "kubernetes-models/policy/v1";
import * as clientModels from "@kubernetes/client-node";

/** A Kubernetes object and where it came from. */
export interface Manifest {
  /** The file, relative to the repository root, and the document's line. */
  readonly source: string;
  // deno-lint-ignore no-explicit-any
  readonly object: any;
}

const root = new URL("../", import.meta.url).pathname;

/** Every file a rendering read (resources and patches), relative to the repository root. */
export type ReadFiles = Set<string>;

function lineOf(text: string, offset: number): number {
  return text.slice(0, offset).split("\n").length;
}

/**
 * Parses every YAML document of a file.
 *
 * @param path The file, absolute.
 * @returns The objects, each with `file:line`.
 * @throws {Error} Naming `file:line:col` of a YAML error.
 */
export async function readYaml(path: string): Promise<Manifest[]> {
  const text = await Deno.readTextFile(path);
  const name = relative(root, path);
  const out: Manifest[] = [];
  for (const document of parseAllDocuments(text)) {
    const error = document.errors[0];
    if (error !== undefined) {
      const [line, col] = error.linePos?.[0]
        ? [error.linePos[0].line, error.linePos[0].col]
        : [0, 0];
      throw new Error(`${name}:${line}:${col}: ${error.message.split("\n")[0]}`);
    }
    const object = document.toJS();
    if (object === null || object === undefined) continue;
    out.push({ source: `${name}:${lineOf(text, document.range[0])}`, object });
  }
  return out;
}

/**
 * Renders a kustomization directory: its `resources` (files, or directories with their own
 * kustomization) in order, then its `patches` (JSON 6902, each with a `target` kind and name).
 * Any other kustomization field is refused rather than ignored.
 *
 * @param dir The directory, absolute.
 * @param read Collects every file read.
 * @returns The rendered objects.
 */
export async function renderKustomization(dir: string, read: ReadFiles): Promise<Manifest[]> {
  const file = join(dir, "kustomization.yaml");
  read.add(relative(root, file));
  const [kustomization] = await readYaml(file);
  const spec = kustomization?.object ?? {};
  const known = new Set(["apiVersion", "kind", "resources", "patches"]);
  for (const key of Object.keys(spec)) {
    if (!known.has(key)) {
      throw new Error(`${relative(root, file)}: "${key}" is not rendered by this check`);
    }
  }
  const objects: Manifest[] = [];
  for (const resource of spec.resources ?? []) {
    const path = join(dir, resource);
    if ((await Deno.stat(path)).isDirectory) {
      objects.push(...await renderKustomization(path, read));
    } else {
      read.add(relative(root, path));
      objects.push(...await readYaml(path));
    }
  }
  for (const patch of spec.patches ?? []) {
    const path = join(dir, patch.path);
    read.add(relative(root, path));
    const operations = (await readYaml(path))[0]?.object as Operation[];
    const targets = objects.filter((m) =>
      m.object.kind === patch.target.kind && m.object.metadata?.name === patch.target.name
    );
    if (targets.length !== 1) {
      throw new Error(
        `${relative(root, path)}: target ${patch.target.kind}/${patch.target.name} matched ` +
          `${targets.length} objects, expected 1`,
      );
    }
    const target = targets[0]!;
    try {
      fastJsonPatch.applyPatch(target.object, operations, true, true);
    } catch (error) {
      throw new Error(`${relative(root, path)}: ${error instanceof Error ? error.message : error}`);
    }
    objects[objects.indexOf(target)] = {
      source: `${target.source} + ${relative(root, path)}`,
      object: target.object,
    };
  }
  return objects;
}

// deno-lint-ignore no-explicit-any
type ModelClass = new (data: any) => { validate(): void };
const MODELS: Record<string, ModelClass> = {
  "apps/v1/Deployment": Deployment,
  "apps/v1/DaemonSet": DaemonSet,
  "v1/ConfigMap": ConfigMap,
  "v1/Namespace": Namespace,
  "v1/Service": Service,
  "policy/v1/PodDisruptionBudget": PodDisruptionBudget,
};

/**
 * Validates an object against the Kubernetes API schema of its apiVersion and kind.
 *
 * @param manifest The object.
 * @returns `undefined`, or the error naming the source, kind/name and the invalid path.
 */
export function schemaError(manifest: Manifest): string | undefined {
  const { object, source } = manifest;
  const key = `${object.apiVersion}/${object.kind}`;
  const Model = MODELS[key];
  const what = `${source}: ${object.kind}/${object.metadata?.name}`;
  if (Model === undefined) {
    return `${what}: no schema for ${key} in tests/k8s_manifests.ts (add its kubernetes-models class)`;
  }
  try {
    new Model(structuredClone(object)).validate();
    return undefined;
  } catch (error) {
    return `${what}: ${error instanceof Error ? error.message : String(error)}`;
  }
}

interface Attribute {
  baseName: string;
  type: string;
}
const models = clientModels as unknown as Record<
  string,
  { getAttributeTypeMap?: () => Attribute[] } | undefined
>;

function unknownFieldsIn(value: unknown, type: string, path: string, out: string[]): void {
  if (value === null || typeof value !== "object") return;
  const element = /^Array<(.+)>$/.exec(type)?.[1];
  if (element !== undefined) {
    if (Array.isArray(value)) {
      value.forEach((item, i) => unknownFieldsIn(item, element, `${path}[${i}]`, out));
    }
    return;
  }
  const entry = /^\{ \[key: string\]: (.+); \}$/.exec(type)?.[1];
  if (entry !== undefined) {
    for (const [key, item] of Object.entries(value)) {
      unknownFieldsIn(item, entry, `${path}.${key}`, out);
    }
    return;
  }
  const attributes = models[type]?.getAttributeTypeMap?.();
  if (attributes === undefined) return; // a scalar, IntOrString, or free-form object
  const fields = new Map(attributes.map((a) => [a.baseName, a.type]));
  for (const [key, item] of Object.entries(value)) {
    const field = fields.get(key);
    if (field === undefined) out.push(`${path}.${key}: unknown field (not in ${type})`);
    else unknownFieldsIn(item, field, `${path}.${key}`, out);
  }
}

/**
 * Finds fields the Kubernetes API does not know (what `kubectl apply --validate=strict`
 * refuses; the schemas of {@linkcode schemaError} allow them), from the field lists of the npm
 * `@kubernetes/client-node` models.
 *
 * @param manifest The object.
 * @returns One error per unknown field, naming the source and the field's path.
 */
export function unknownFields(manifest: Manifest): string[] {
  const { object, source } = manifest;
  const version = String(object.apiVersion).split("/").pop()!;
  const type = `${version[0]!.toUpperCase()}${version.slice(1)}${object.kind}`;
  if (models[type]?.getAttributeTypeMap === undefined) {
    return [`${source}: no model ${type} in @kubernetes/client-node`];
  }
  const out: string[] = [];
  unknownFieldsIn(object, type, "", out);
  return out.map((error) => `${source}: ${object.kind}/${object.metadata?.name}: ${error}`);
}

/** What one workload may have. */
export interface PodPolicy {
  /** Capabilities it may add (all others are dropped with `drop: [ALL]`). */
  capabilities: string[];
  /** It must run as a non-root user. */
  nonRoot: boolean;
  /** The seccomp profile type it must have. */
  seccomp: "RuntimeDefault" | "Localhost" | "Unconfined";
  /** It may share the host's PID namespace. @default {false} */
  hostPID?: boolean;
}

const WORKLOADS = new Set(["Deployment", "DaemonSet", "StatefulSet", "Job", "CronJob", "Pod"]);

/** Whether the object runs pods. */
export function isWorkload(manifest: Manifest): boolean {
  return WORKLOADS.has(manifest.object.kind);
}

/**
 * Checks a workload's pod against its policy: nothing privileged, no privilege escalation, a
 * read-only root filesystem, every capability dropped but the listed ones, the user and seccomp
 * profile the policy says, no host network or IPC, host PID only where listed.
 *
 * @param manifest The workload.
 * @param policy What it may have.
 * @returns Every violation, each naming the source, container and field; empty when none.
 */
export function policyViolations(manifest: Manifest, policy: PodPolicy): string[] {
  const { object, source } = manifest;
  const pod = object.kind === "Pod"
    ? object.spec
    : object.kind === "CronJob"
    ? object.spec?.jobTemplate?.spec?.template?.spec
    : object.spec?.template?.spec;
  const where = `${source}: ${object.kind}/${object.metadata?.name}`;
  if (pod === undefined) return [`${where}: no pod spec`];
  const out: string[] = [];
  if (pod.hostNetwork === true) out.push(`${where}: hostNetwork`);
  if (pod.hostIPC === true) out.push(`${where}: hostIPC`);
  if (pod.hostPID === true && policy.hostPID !== true) out.push(`${where}: hostPID`);
  const podSecurity = pod.securityContext ?? {};
  const containers = [
    ...(pod.initContainers ?? []),
    ...(pod.containers ?? []),
    ...(pod.ephemeralContainers ?? []),
  ];
  for (const container of containers) {
    const at = `${where}: container ${container.name}: securityContext`;
    const security = container.securityContext ?? {};
    if (security.privileged === true) out.push(`${at}.privileged is true`);
    if (security.allowPrivilegeEscalation !== false) {
      out.push(`${at}.allowPrivilegeEscalation is not false`);
    }
    if (security.readOnlyRootFilesystem !== true) {
      out.push(`${at}.readOnlyRootFilesystem is not true (a writable root filesystem)`);
    }
    const drop: string[] = security.capabilities?.drop ?? [];
    if (!drop.includes("ALL")) out.push(`${at}.capabilities.drop does not include ALL`);
    for (const capability of security.capabilities?.add ?? []) {
      const name = String(capability).replace(/^CAP_/, "");
      if (!policy.capabilities.includes(name)) {
        out.push(
          `${at}.capabilities.add: ${capability} is beyond this workload's list ` +
            `(${policy.capabilities.join(", ") || "none"})`,
        );
      }
    }
    const runAsNonRoot = security.runAsNonRoot ?? podSecurity.runAsNonRoot;
    const runAsUser = security.runAsUser ?? podSecurity.runAsUser;
    if (policy.nonRoot && (runAsNonRoot !== true || runAsUser === 0)) {
      out.push(`${at}: must run as non-root (runAsNonRoot: true, runAsUser not 0)`);
    }
    const seccomp = security.seccompProfile?.type ?? podSecurity.seccompProfile?.type;
    if (seccomp !== policy.seccomp) {
      out.push(`${at}.seccompProfile.type is ${seccomp ?? "unset"}, expected ${policy.seccomp}`);
    }
  }
  return out;
}

/**
 * Every `*.yaml`/`*.yml` under a `deploy/` directory of the repository, relative to its root.
 *
 * @returns The paths, sorted.
 */
export async function deployFiles(): Promise<string[]> {
  const out: string[] = [];
  const walk = async (dir: string, inDeploy: boolean) => {
    for await (const entry of Deno.readDir(dir)) {
      if (entry.name.startsWith(".") || entry.name === "node_modules") continue;
      const path = join(dir, entry.name);
      if (entry.isDirectory) await walk(path, inDeploy || entry.name === "deploy");
      else if (inDeploy && /\.ya?ml$/.test(entry.name)) out.push(relative(root, path));
    }
  };
  await walk(root, false);
  return out.sort();
}

/** The directory of a path relative to the repository root, absolute. */
export function fromRoot(path: string): string {
  return join(root, path);
}
