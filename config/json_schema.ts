/**
 * The configuration schema as JSON Schema and as an OpenAPI component.
 *
 * @module
 */
import { ConfigError } from "./errors.ts";
import { isPlainObject } from "./_path.ts";
import { standardJsonSchema } from "./_schema_info.ts";

/** A JSON Schema document. */
export type JsonSchemaObject = Record<string, unknown>;

/**
 * Returns the JSON Schema (draft 2020-12) of what configuration files may hold, from any
 * validator that implements Standard JSON Schema (zod 4 does).
 *
 * @param schema The configuration schema.
 * @param options `title` and `$id` to set on the document.
 * @returns The JSON Schema.
 * @throws {ConfigError} With code `bad_option` when the validator cannot produce JSON Schema.
 *
 * @example
 * ```ts
 * import { toJsonSchema } from "@triad/config";
 * import { z } from "zod";
 * import assert from "node:assert/strict";
 *
 * const json = toJsonSchema(z.object({ port: z.number().int().default(53) }), { title: "DNS" });
 * assert.equal(json.title, "DNS");
 * assert.deepEqual((json.properties as Record<string, unknown>).port, {
 *   default: 53,
 *   type: "integer",
 *   minimum: -9007199254740991,
 *   maximum: 9007199254740991,
 * });
 * ```
 */
export function toJsonSchema(
  schema: unknown,
  options: { readonly title?: string; readonly $id?: string } = {},
): JsonSchemaObject {
  const json = standardJsonSchema(schema);
  if (json === undefined) {
    throw new ConfigError(
      "The schema does not implement Standard JSON Schema (~standard.jsonSchema); zod 4 does",
      { code: "bad_option" },
    );
  }
  const out: JsonSchemaObject = { ...json };
  if (options.$id !== undefined) out["$id"] = options.$id;
  if (options.title !== undefined) out["title"] = options.title;
  return out;
}

/**
 * Returns the schema as an OpenAPI 3.1 component (`components.schemas.<name>`), with its `$defs`
 * hoisted next to it and references rewritten to `#/components/schemas/…`.
 *
 * @param schema The configuration schema.
 * @param name The component name, such as `"DnsProxyConfig"`.
 * @returns `{ components: { schemas: { [name]: … } } }`, ready to merge into an OpenAPI document.
 *
 * @example
 * ```ts
 * import { toOpenApiComponent } from "@triad/config";
 * import { z } from "zod";
 * import assert from "node:assert/strict";
 *
 * const doc = toOpenApiComponent(z.object({ port: z.number() }), "Config");
 * assert.deepEqual(doc.components.schemas.Config, {
 *   type: "object",
 *   properties: { port: { type: "number" } },
 *   required: ["port"],
 * });
 * ```
 */
export function toOpenApiComponent(
  schema: unknown,
  name: string,
): { components: { schemas: Record<string, JsonSchemaObject> } } {
  const json = toJsonSchema(schema);
  const schemas: Record<string, JsonSchemaObject> = {};
  const rewrite = (value: unknown): unknown => {
    if (Array.isArray(value)) return value.map(rewrite);
    if (!isPlainObject(value)) return value;
    const out: Record<string, unknown> = {};
    for (const [key, child] of Object.entries(value)) {
      if (key === "$schema" || key === "$defs" || key === "definitions") continue;
      out[key] = key === "$ref" && typeof child === "string"
        ? child.replace(/^#\/(\$defs|definitions)\//, "#/components/schemas/").replace(
          /^#$/,
          `#/components/schemas/${name}`,
        )
        : rewrite(child);
    }
    return out;
  };
  for (const defsKey of ["$defs", "definitions"]) {
    const defs = json[defsKey];
    if (isPlainObject(defs)) {
      for (const [defName, def] of Object.entries(defs)) {
        schemas[defName] = rewrite(def) as JsonSchemaObject;
      }
    }
  }
  schemas[name] = rewrite(json) as JsonSchemaObject;
  return { components: { schemas } };
}
