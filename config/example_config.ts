/**
 * A commented example configuration file and a `.env.example`, generated from the schema.
 *
 * @module
 */
import { ConfigError } from "./errors.ts";
import { envVarName, flagName } from "./names.ts";
import { describeType, type JsonSchema, SchemaInfo, standardJsonSchema } from "./_schema_info.ts";
import { isPlainObject } from "./_path.ts";

/** Options of {@linkcode exampleConfig} and {@linkcode envExample}. */
export interface ExampleOptions {
  /** The environment variable prefix, `""` for none. @default {"APP"} */
  readonly prefix?: string;
  /** The JSON Schema, for validators without Standard JSON Schema. */
  readonly jsonSchema?: Record<string, unknown>;
}

function infoOf(schema: unknown, options: ExampleOptions): SchemaInfo {
  const json = options.jsonSchema ?? standardJsonSchema(schema);
  if (json === undefined) {
    throw new ConfigError("The schema does not implement Standard JSON Schema; pass jsonSchema", {
      code: "bad_option",
    });
  }
  return new SchemaInfo(json as JsonSchema);
}

function yamlScalar(value: unknown): string {
  if (typeof value === "string") {
    return /^[A-Za-z0-9_./:@-][A-Za-z0-9_./:@ -]*$/.test(value) &&
        !/^(true|false|null|yes|no|on|off|~|[-+]?[\d.]+(e[-+]?\d+)?)$/i.test(value) &&
        !value.endsWith(" ")
      ? value
      : JSON.stringify(value);
  }
  return JSON.stringify(value);
}

/**
 * Generates a commented example YAML configuration: every key with its description, type,
 * environment variable and flag; keys with a default are set to it, keys without one are left
 * commented out. The output loads with `createConfig()` as it is.
 *
 * @param schema The configuration schema (zod 4 or any Standard JSON Schema validator).
 * @param options The environment variable prefix.
 * @returns YAML text.
 *
 * @example
 * ```ts
 * import { exampleConfig } from "@triad/config";
 * import { z } from "zod";
 * import assert from "node:assert/strict";
 *
 * const yaml = exampleConfig(z.object({
 *   cache: z.object({ size: z.number().int().default(100).describe("Entries") }).prefault({}),
 * }), { prefix: "DNS" });
 * assert.match(yaml, / {2}# Entries\n {2}# integer; env DNS_CACHE__SIZE; flag --cache\.size\n {2}size: 100\n/);
 * ```
 */
export function exampleConfig(schema: unknown, options: ExampleOptions = {}): string {
  const info = infoOf(schema, options);
  const prefix = options.prefix ?? "APP";
  const lines: string[] = [];
  const walk = (node: JsonSchema | undefined, segments: string[], indent: string) => {
    const resolved = info.resolve(node);
    const properties = resolved?.["properties"];
    if (!isPlainObject(properties)) return;
    for (const [key, raw] of Object.entries(properties)) {
      const child = info.resolve(isPlainObject(raw) ? raw : {}) ?? {};
      const path = [...segments, key];
      const description = child["description"];
      if (lines.length > 0 && segments.length === 0) lines.push("");
      if (typeof description === "string") {
        for (const line of description.split("\n")) lines.push(`${indent}# ${line}`);
      }
      const name = /^[A-Za-z0-9_-]+$/.test(key) ? key : JSON.stringify(key);
      if (isPlainObject(child["properties"])) {
        lines.push(`${indent}${name}:`);
        walk(child, path, `${indent}  `);
        continue;
      }
      const secret = child["writeOnly"] === true ? "; secret" : "";
      lines.push(
        `${indent}# ${describeType(child, info)}; env ${envVarName(prefix, path)}; flag ${
          flagName(path)
        }${secret}`,
      );
      const fallback = child["default"];
      if (fallback === undefined) {
        lines.push(`${indent}# ${name}: <${info.typeOf(child)}>`);
      } else if (isPlainObject(fallback) || Array.isArray(fallback)) {
        lines.push(`${indent}${name}: ${JSON.stringify(fallback)}`);
      } else {
        lines.push(`${indent}${name}: ${yamlScalar(fallback)}`);
      }
    }
  };
  walk(info.root, [], "");
  return `${lines.join("\n")}\n`;
}

/**
 * Generates a `.env.example`: one commented variable per key, with its description, type and
 * default.
 *
 * @param schema The configuration schema.
 * @param options The environment variable prefix.
 * @returns The file's text.
 *
 * @example
 * ```ts
 * import { envExample } from "@triad/config";
 * import { z } from "zod";
 * import assert from "node:assert/strict";
 *
 * const text = envExample(z.object({ port: z.number().int().default(53).describe("UDP port") }), { prefix: "DNS" });
 * assert.equal(text, "# port: UDP port (integer)\n# DNS_PORT=53\n");
 * ```
 */
export function envExample(schema: unknown, options: ExampleOptions = {}): string {
  const info = infoOf(schema, options);
  const prefix = options.prefix ?? "APP";
  const blocks = info.leaves().map((leaf) => {
    const description = typeof leaf.node["description"] === "string"
      ? `${leaf.node["description"]} `
      : "";
    const fallback = leaf.node["default"];
    const value = fallback === undefined
      ? ""
      : typeof fallback === "string"
      ? fallback
      : JSON.stringify(fallback);
    const name = envVarName(prefix, leaf.segments);
    const secret = leaf.node["writeOnly"] === true ? `; or ${name}_FILE=/run/secrets/…` : "";
    return `# ${leaf.segments.join(".")}: ${description}(${
      describeType(leaf.node, info)
    }${secret})\n# ${name}=${value}\n`;
  });
  return blocks.join("");
}
