/**
 * `${env:NAME}` and `${file:/path}` references in configuration values, resolved into secrets.
 *
 * @module
 */
import type { ConfigIssue } from "./errors.ts";
import type { ConfigFileSystem } from "./file_system.ts";
import type { Layer } from "./layer.ts";
import { originAt } from "./_origin_at.ts";
import { childPath, isPlainObject } from "./_path.ts";
import { Secret } from "./secret.ts";

const REFERENCE = /\$?\$\{(env|file):([^}]+)\}/g;

/**
 * Replaces every string holding a reference with a {@linkcode Secret} of the string with its
 * references resolved (`$${…}` stays a literal `${…}`). Returns the layer unchanged when it has
 * no reference.
 */
export async function resolveSecretReferences(
  layer: Layer,
  env: (name: string) => string | undefined,
  fs: ConfigFileSystem,
): Promise<{ layer: Layer; issues: ConfigIssue[] }> {
  const issues: ConfigIssue[] = [];
  let found = false;
  const resolveString = async (text: string, path: string): Promise<unknown> => {
    if (!text.includes("${")) return text;
    let secret = false;
    let out = "";
    let last = 0;
    for (const match of text.matchAll(REFERENCE)) {
      out += text.slice(last, match.index);
      last = match.index + match[0].length;
      if (match[0].startsWith("$$")) {
        out += match[0].slice(1);
        continue;
      }
      secret = true;
      const [, kind, target] = match as unknown as [string, "env" | "file", string];
      const origin = originAt(layer.origins, path);
      if (kind === "env") {
        const value = env(target);
        if (value === undefined) {
          issues.push({
            path,
            message:
              `secret reference \${env:${target}}: environment variable ${target} is not set`,
            ...(origin === undefined ? {} : { origin }),
          });
          return text;
        }
        out += value;
      } else {
        try {
          out += (await fs.readTextFile(target)).replace(/\r?\n$/, "");
        } catch (error) {
          issues.push({
            path,
            message: `secret reference \${file:${target}}: cannot read ${target}: ${
              (error as Error).message
            }`,
            ...(origin === undefined ? {} : { origin }),
          });
          return text;
        }
      }
    }
    out += text.slice(last);
    if (!secret) return out;
    found = true;
    return new Secret(out);
  };
  const walk = async (value: unknown, path: string): Promise<unknown> => {
    if (typeof value === "string") return await resolveString(value, path);
    if (Array.isArray(value)) {
      return await Promise.all(value.map((v, i) => walk(v, childPath(path, i))));
    }
    if (isPlainObject(value)) {
      const out: Record<string, unknown> = {};
      for (const [key, child] of Object.entries(value)) {
        out[key] = await walk(child, childPath(path, key));
      }
      return out;
    }
    return value;
  };
  if (!JSON.stringify(layer.tree).includes("${")) return { layer, issues };
  const tree = await walk(layer.tree, "") as Record<string, unknown>;
  return { layer: found || issues.length > 0 ? { ...layer, tree } : layer, issues };
}
