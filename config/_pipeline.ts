/**
 * The layer pipeline: merge -> validate -> diff, as one pure function ({@linkcode runPipeline});
 * {@linkcode Config} swaps its result in.
 *
 * @module
 */
import { diffConfig } from "./diff.ts";
import type { ConfigChange } from "./diff.ts";
import { ConfigError, issuesError } from "./errors.ts";
import type { ConfigIssue } from "./errors.ts";
import { isSecretPath, show } from "./explain.ts";
import type { Layer } from "./layer.ts";
import { mergeLayers } from "./merge.ts";
import type { ArrayStrategy, MergedLayers } from "./merge.ts";
import { envVarName, flagName } from "./names.ts";
import { REDACTED_TEXT, Secret } from "./secret.ts";
import type { StandardSchema } from "./standard_schema.ts";
import { coerce } from "./_coerce.ts";
import { originAt } from "./_origin_at.ts";
import { childPath, deepFreeze, getAt, isPlainObject } from "./_path.ts";
import type { Segment } from "./_path.ts";
import { closest, describeType } from "./_schema_info.ts";
import type { JsonSchema, SchemaInfo } from "./_schema_info.ts";

/** A validated snapshot: the value, the merged layers it came from, and its secret paths. */
export interface State {
  readonly value: unknown;
  readonly merged: MergedLayers;
  readonly secretPaths: ReadonlySet<string>;
}

/** What the pipeline needs besides the layers. */
export interface PipelineOptions {
  /** The schema that validates (and transforms) the merged tree. */
  readonly schema: StandardSchema;
  /** The schema's structure, for unknown keys, coercion and messages. */
  readonly info: SchemaInfo;
  /** How arrays merge, by path. */
  readonly arrays?: Readonly<Record<string, ArrayStrategy>> | undefined;
  /** Reject keys the schema does not know. @default {true} */
  readonly strict?: boolean | undefined;
  /** The environment prefix for "set it in …" hints; `undefined` without an env layer. */
  readonly envPrefix?: string | undefined;
}

/** A new snapshot and what changed since the previous one (nothing for the first). */
export interface PipelineResult {
  readonly next: State;
  readonly changes: readonly ConfigChange[];
}

/**
 * The pipeline from layers to a snapshot: merge (in the order given), reject unknown keys,
 * validate with the schema, freeze; then the diff against the previous snapshot. Pure: it reads
 * nothing but its arguments and changes none of them.
 *
 * @throws {ConfigError} Naming every unknown key and invalid value with its origin.
 */
export async function runPipeline(
  layers: readonly Layer[],
  previous: State | undefined,
  options: PipelineOptions,
): Promise<PipelineResult> {
  const ordered = layers.map((layer) =>
    (layer as { coerce?: boolean }).coerce === true ? coerceLayer(layer, options.info) : layer
  );
  const merged = mergeLayers(ordered, options.arrays);
  const issues: ConfigIssue[] = [];
  if (options.strict !== false && options.info.root !== undefined) {
    checkUnknownKeys(options.info, merged, issues);
  }
  if (issues.length > 0) throw issuesError(issues, "Invalid configuration");
  const secretPaths = new Set<string>();
  const input = unwrapSecrets(merged.tree, "", secretPaths);
  let result;
  try {
    result = options.schema["~standard"].validate(input);
    if (result instanceof Promise) result = await result;
  } catch (error) {
    // A transform that throws stops the validator without saying where: say what to do.
    throw new ConfigError(
      `Invalid configuration: the schema threw while validating: ${
        (error as Error).message
      } (a transform that throws loses the key and the position; report problems with ` +
        `ctx.issues as duration() does)`,
      { code: "invalid", cause: error },
    );
  }
  if (result.issues !== undefined) {
    for (const issue of result.issues) issues.push(describeIssue(issue, merged, options));
    throw issuesError(issues, "Invalid configuration");
  }
  for (const path of writeOnlyPaths(options.info)) secretPaths.add(path);
  const next: State = { value: deepFreeze(result.value), merged, secretPaths };
  return { next, changes: previous === undefined ? [] : diffConfig(previous.value, next.value) };
}

const writeOnlyCache = new WeakMap<SchemaInfo, string[]>();

/** The paths the schema marks `writeOnly` (secrets), by schema. */
function writeOnlyPaths(info: SchemaInfo): string[] {
  let paths = writeOnlyCache.get(info);
  if (paths === undefined) {
    paths = info.leaves()
      .filter((leaf) => leaf.node["writeOnly"] === true)
      .map((leaf) => leaf.segments.join("."));
    writeOnlyCache.set(info, paths);
  }
  return paths;
}

function describeIssue(
  issue: {
    message: string;
    path?: ReadonlyArray<PropertyKey | { key: PropertyKey }> | undefined;
  },
  merged: MergedLayers,
  options: PipelineOptions,
): ConfigIssue {
  const segments: Segment[] = (issue.path ?? []).map((p) => {
    const key = typeof p === "object" && p !== null ? (p as { key: PropertyKey }).key : p;
    return typeof key === "number" ? key : String(key);
  });
  const path = segments.join(".");
  const value = getAt(merged.tree, segments);
  const origin = originAt(merged.origins, path);
  const node = options.info.nodeAt(segments);
  const expected = node === undefined ? undefined : describeType(node, options.info);
  const secret = value instanceof Secret ||
    isSecretPath(new Set(writeOnlyPaths(options.info)), path);
  let message: string;
  if (value === undefined) {
    const leafish = segments.every((s) => typeof s === "string");
    const hints = leafish && segments.length > 0
      ? `; set it in a file, ${
        options.envPrefix === undefined
          ? ""
          : `${envVarName(options.envPrefix, segments as string[])} or `
      }${flagName(segments as string[])}`
      : "";
    message = `${path === "" ? "configuration" : path}: missing${
      expected ? `, expected ${expected}` : ""
    } (${lowerFirst(issue.message)})${hints}`;
  } else {
    message = `${path === "" ? "configuration" : path}: ${
      expected ? `expected ${expected}, ` : ""
    }got ${secret ? REDACTED_TEXT : show(value)} (${lowerFirst(issue.message)})`;
  }
  return origin === undefined ? { path, message } : { path, message, origin };
}

function checkUnknownKeys(info: SchemaInfo, merged: MergedLayers, issues: ConfigIssue[]) {
  const walk = (value: unknown, node: JsonSchema | undefined, path: string, depth: number) => {
    if (node === undefined || depth > 32) return;
    if (Array.isArray(value)) {
      if (info.typeOf(node) !== "array") return;
      value.forEach((item, i) => walk(item, info.child(node, i), childPath(path, i), depth + 1));
      return;
    }
    if (!isPlainObject(value)) return;
    for (const [key, child] of Object.entries(value)) {
      const keyPath = childPath(path, key);
      if (!info.allowsKey(node, key)) {
        const hint = closest(key, info.keysOf(node));
        const origin = originAt(merged.origins, keyPath);
        const issue: ConfigIssue = {
          path: keyPath,
          message: `${keyPath}: unknown key${
            hint ? `, did you mean ${childPath(path, hint)}?` : ""
          }`,
        };
        issues.push(origin === undefined ? issue : { ...issue, origin });
        continue;
      }
      walk(child, info.child(node, key), keyPath, depth + 1);
    }
  };
  walk(merged.tree, info.resolve(info.root), "", 0);
}

/** A layer whose string leaves are coerced to the schema's types (remote prefix trees). */
function coerceLayer(layer: Layer, info: SchemaInfo): Layer {
  const walk = (value: unknown, segments: string[]): unknown => {
    if (typeof value === "string") return coerce(value, info.nodeAt(segments), info);
    if (isPlainObject(value)) {
      const out: Record<string, unknown> = {};
      for (const [key, child] of Object.entries(value)) {
        out[key] = walk(child, [...segments, key]);
      }
      return out;
    }
    return value;
  };
  return { ...layer, tree: walk(layer.tree, []) as Record<string, unknown> };
}

/** Replaces secrets with their strings (for validation), sharing every subtree without one. */
function unwrapSecrets(value: unknown, path: string, secretPaths: Set<string>): unknown {
  if (value instanceof Secret) {
    secretPaths.add(path);
    return value.reveal();
  }
  if (Array.isArray(value)) {
    let out: unknown[] | undefined;
    value.forEach((item, i) => {
      const next = unwrapSecrets(item, childPath(path, i), secretPaths);
      if (next !== item) (out ??= [...value])[i] = next;
    });
    return out ?? value;
  }
  if (isPlainObject(value)) {
    let out: Record<string, unknown> | undefined;
    for (const key in value) {
      const child = value[key];
      if (child === null || typeof child !== "object") continue;
      const next = unwrapSecrets(child, childPath(path, key), secretPaths);
      if (next !== child) (out ??= { ...value })[key] = next;
    }
    return out ?? value;
  }
  return value;
}

function lowerFirst(text: string): string {
  return text.charAt(0).toLowerCase() + text.slice(1);
}
