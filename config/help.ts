/**
 * `--help` text generated from the schema.
 *
 * @module
 */
import { formatHelp } from "./_help.ts";
import { type JsonSchema, SchemaInfo, standardJsonSchema } from "./_schema_info.ts";

/** Options of {@linkcode helpText}. */
export interface HelpOptions {
  /** The program name in the usage line. @default {"app"} */
  readonly program?: string;
  /** The environment variable prefix, `""` for none. @default {"APP"} */
  readonly prefix?: string;
  /** Flag aliases, as given to `createConfig`'s `args.aliases`. */
  readonly aliases?: Readonly<Record<string, string>>;
  /** Defaults to show besides the schema's own. */
  readonly defaults?: Record<string, unknown>;
  /** The JSON Schema, for validators without Standard JSON Schema. */
  readonly jsonSchema?: Record<string, unknown>;
}

/**
 * Generates `--help` text from a schema: one line per flag with its type, description, default
 * and environment variable.
 *
 * @param schema A Standard Schema validator with Standard JSON Schema (zod 4).
 * @param options Program name, prefix, aliases, defaults.
 * @returns The help text.
 *
 * @example
 * ```ts
 * import { helpText } from "@triad/config";
 * import { z } from "zod";
 * import assert from "node:assert/strict";
 *
 * const schema = z.object({ port: z.number().int().default(53).describe("UDP port") });
 * const help = helpText(schema, { program: "dns", prefix: "DNS" });
 * assert.match(help, /--port <integer>\s+UDP port \(default 53; env DNS_PORT\)/);
 * ```
 */
export function helpText(schema: unknown, options: HelpOptions = {}): string {
  const json = options.jsonSchema ?? standardJsonSchema(schema);
  return formatHelp(new SchemaInfo(json as JsonSchema | undefined), {
    program: options.program ?? "app",
    prefix: options.prefix ?? "APP",
    aliases: options.aliases ?? {},
    defaults: options.defaults ?? {},
  });
}
