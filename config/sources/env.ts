/**
 * The environment layer: one variable per schema leaf, names derived from the schema.
 *
 * @module
 */
import type { Logger } from "@triad/core";
import { issuesError } from "../errors.ts";
import type { ConfigIssue } from "../errors.ts";
import type { ConfigFileSystem } from "../file_system.ts";
import type { Layer } from "../layer.ts";
import type { Source, SourceLayer } from "../source.ts";
import { envVarName } from "../names.ts";
import type { Origin } from "../origin.ts";
import { Secret } from "../secret.ts";
import { getAt, isPlainObject, setAt } from "../_path.ts";
import { ArrayPatch } from "../_array_patch.ts";
import { coerce } from "../_coerce.ts";
import { closest, nearest, type SchemaInfo } from "../_schema_info.ts";

/** A variable under the prefix that matches no key. */
interface UnknownEnvVar {
  /** The variable. */
  readonly name: string;
  /** A known variable close enough to be a typo of it (edit distance), if any. */
  readonly hint: string | undefined;
  /** The key whose variable is nearest to it, however far, if any. */
  readonly nearest: { readonly variable: string; readonly key: string } | undefined;
}

/** The environment layer and the problems found building it. */
interface EnvLayerResult {
  readonly layer: Layer;
  /** Problems with variables that bind a key (a secret file that cannot be read). */
  readonly issues: ConfigIssue[];
  /** Variables under the prefix that bind no key; the caller warns or fails. */
  readonly unknown: UnknownEnvVar[];
}

/**
 * Builds the environment layer: for every schema leaf, `<PREFIX>_<PATH>` (coerced to the leaf's
 * type) or `<PREFIX>_<PATH>_FILE` (a file whose contents become a {@linkcode Secret}). With a
 * prefix, variables under it that match no leaf are returned in `unknown`, each with the
 * variable it is likely a typo of and the nearest key.
 */
export async function buildEnvLayer(
  info: SchemaInfo,
  vars: Readonly<Record<string, string | undefined>>,
  prefix: string,
  fs: ConfigFileSystem,
  reserved: ReadonlySet<string>,
): Promise<EnvLayerResult> {
  const tree: Record<string, unknown> = {};
  const origins = new Map<string, Origin>();
  const issues: ConfigIssue[] = [];
  const known = new Set<string>(reserved);
  const keyOf = new Map<string, string>();
  for (const leaf of info.leaves()) {
    const name = envVarName(prefix, leaf.segments);
    known.add(name);
    keyOf.set(name, leaf.segments.join("."));
    known.add(`${name}_FILE`);
    const path = leaf.segments.join(".");
    const text = vars[name];
    const file = vars[`${name}_FILE`];
    if (text !== undefined) {
      setAt(tree, leaf.segments, coerce(text, leaf.node, info));
      origins.set(path, { layer: "env", name });
    } else if (file !== undefined) {
      const origin: Origin = { layer: "env", name: `${name}_FILE`, file };
      try {
        const content = (await fs.readTextFile(file)).replace(/\r?\n$/, "");
        setAt(tree, leaf.segments, new Secret(content));
        origins.set(path, origin);
      } catch (error) {
        issues.push({
          path,
          message: `cannot read secret file ${file}: ${(error as Error).message}`,
          origin,
        });
      }
    }
  }
  // Arrays of objects also bind per item: <NAME>__<index>__<FIELD> (APP_UPSTREAMS__0__ADDRESS).
  for (const leaf of info.leaves()) {
    if (info.typeOf(leaf.node) !== "array") continue;
    const itemLeaves = info.leavesOf(info.child(leaf.node, 0));
    if (itemLeaves.length === 0) continue;
    const name = envVarName(prefix, leaf.segments);
    const byName = new Map(itemLeaves.map((item) => [envVarName("", item.segments), item]));
    const pattern = new RegExp(`^${name.replace(/[^A-Za-z0-9_]/g, "\\$&")}__(\\d{1,4})__(.+)$`);
    const matches = Object.entries(vars)
      .map(([key, value]) => ({ key, value, match: pattern.exec(key) }))
      .filter((m) => m.match !== null && m.value !== undefined)
      .sort((a, b) => Number(a.match![1]) - Number(b.match![1]));
    let patch: ArrayPatch | undefined;
    const whole = getAt(tree, leaf.segments);
    for (const { key, value, match } of matches) {
      const item = byName.get(match![2]!);
      if (item === undefined) continue;
      known.add(key);
      const index = Number(match![1]);
      const coerced = coerce(value!, item.node, info);
      if (Array.isArray(whole)) {
        // The whole array is set too: patch it in this layer.
        if (!isPlainObject(whole[index])) whole[index] = {};
        setAt(whole[index] as Record<string, unknown>, item.segments, coerced);
      } else {
        patch ??= new ArrayPatch();
        const target = (patch.items.get(index) ?? {}) as Record<string, unknown>;
        setAt(target, item.segments, coerced);
        patch.items.set(index, target);
      }
      origins.set([...leaf.segments, index, ...item.segments].join("."), {
        layer: "env",
        name: key,
      });
    }
    if (patch !== undefined) setAt(tree, leaf.segments, patch);
  }
  const unknown: UnknownEnvVar[] = [];
  if (prefix !== "" && info.root !== undefined) {
    for (const name of Object.keys(vars)) {
      if (!name.startsWith(`${prefix}_`) || known.has(name)) continue;
      const hint = closest(name, [...known].filter((k) => !k.endsWith("_FILE")));
      const near = nearest(name, keyOf.keys())?.candidate;
      unknown.push({
        name,
        hint,
        nearest: near === undefined ? undefined : { variable: near, key: keyOf.get(near)! },
      });
    }
  }
  return { layer: { kind: "env", name: "env", tree, origins }, issues, unknown };
}

/** What the environment source reads. */
interface EnvSourceOptions {
  readonly info: SchemaInfo;
  /** `false` for no environment layer (an empty one). */
  readonly enabled: boolean;
  readonly prefix: string;
  /** The variables; the process environment at each read when absent. */
  readonly vars?: Readonly<Record<string, string | undefined>> | undefined;
  /** Fail on unknown variables under the prefix instead of warning once about each. */
  readonly strict: boolean;
  /** Where the warnings go. */
  readonly logger: () => Logger;
  /** The file system for `NAME_FILE` (the configuration's, recording secret files). */
  readonly fs: ConfigFileSystem;
}

/** The environment as a {@linkcode Source}: one variable per schema leaf. */
export class EnvSource implements Source {
  readonly name = "env";
  readonly #options: EnvSourceOptions;
  /** Unknown variables already warned about (once each, not at every reload). */
  readonly #warned = new Set<string>();

  constructor(options: EnvSourceOptions) {
    this.#options = options;
  }

  /** The variables: the given ones, else the process environment (`{}` without access). */
  vars(): Readonly<Record<string, string | undefined>> {
    if (!this.#options.enabled) return {};
    if (this.#options.vars !== undefined) return this.#options.vars;
    try {
      return Deno.env.toObject();
    } catch {
      return {};
    }
  }

  /** @throws {ConfigError} Naming every problem. */
  async load(): Promise<SourceLayer> {
    const issues: ConfigIssue[] = [];
    const layer = await this.read(issues);
    if (issues.length > 0) throw issuesError(issues, "Cannot read the environment");
    return layer;
  }

  /** Reads the layer, adding problems (and, when strict, unknown variables) to `issues`. */
  async read(issues: ConfigIssue[]): Promise<Layer> {
    const { info, prefix, strict } = this.#options;
    if (!this.#options.enabled) return { kind: "env", name: "env", tree: {}, origins: new Map() };
    const reserved = new Set<string>([`${prefix}_PROFILE`]);
    const result = await buildEnvLayer(info, this.vars(), prefix, this.#options.fs, reserved);
    issues.push(...result.issues);
    for (const { name, hint, nearest } of result.unknown) {
      if (strict) {
        issues.push({
          path: "",
          message: `unknown environment variable ${name}${hint ? `, did you mean ${hint}?` : ""}`,
          origin: { layer: "env", name },
        });
        continue;
      }
      if (this.#warned.has(name)) continue;
      this.#warned.add(name);
      const suggestion = nearest === undefined
        ? ""
        : nearest.variable === hint
        ? `; did you mean ${hint} (${nearest.key})?`
        : hint !== undefined
        ? `; did you mean ${hint}?`
        : `; the closest key is ${nearest.key} (${nearest.variable})`;
      this.#options.logger().warn(`unknown environment variable ${name} ignored${suggestion}`, {
        variable: name,
        ...(nearest === undefined ? {} : { closest: nearest.variable, key: nearest.key }),
      });
    }
    return result.layer;
  }
}
