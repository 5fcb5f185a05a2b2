/**
 * The environment layer: one variable per schema leaf, names derived from the schema.
 *
 * @module
 */
import type { ConfigIssue } from "../errors.ts";
import type { ConfigFileSystem } from "../file_system.ts";
import type { Layer } from "../layer.ts";
import { envVarName } from "../names.ts";
import type { Origin } from "../origin.ts";
import { Secret } from "../secret.ts";
import { setAt } from "../_path.ts";
import { coerce } from "../_coerce.ts";
import { closest, type SchemaInfo } from "../_schema_info.ts";

/** The environment layer and the problems found building it. */
export interface EnvLayerResult {
  readonly layer: Layer;
  readonly issues: ConfigIssue[];
}

/**
 * Builds the environment layer: for every schema leaf, `<PREFIX>_<PATH>` (coerced to the leaf's
 * type) or `<PREFIX>_<PATH>_FILE` (a file whose contents become a {@linkcode Secret}). With a
 * prefix, variables under it that match no leaf are reported with a "did you mean".
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
  for (const leaf of info.leaves()) {
    const name = envVarName(prefix, leaf.segments);
    known.add(name);
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
  if (prefix !== "" && info.root !== undefined) {
    for (const name of Object.keys(vars)) {
      if (!name.startsWith(`${prefix}_`) || known.has(name)) continue;
      const hint = closest(name, [...known].filter((k) => !k.endsWith("_FILE")));
      issues.push({
        path: "",
        message: `unknown environment variable ${name}${hint ? `, did you mean ${hint}?` : ""}`,
        origin: { layer: "env", name },
      });
    }
  }
  return { layer: { kind: "env", name: "env", tree, origins }, issues };
}
