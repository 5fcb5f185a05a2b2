/**
 * `@triad/config`: layered, schema-validated, hot-reloaded configuration — what viper and koanf
 * do, without their known failures: keys stay case-sensitive, every key binds to an environment
 * variable and a flag derived from the schema, reloads swap atomically and emit one change event
 * with a diff, and remote sources (etcd v3, Consul KV) are watched, not polled.
 *
 * Layers, lowest to highest: defaults < files (YAML, JSON, TOML) < profile < config directory <
 * remote < environment < flags < `set()`.
 *
 * @example
 * ```ts
 * import { createConfig } from "@triad/config";
 * import { z } from "zod";
 * import assert from "node:assert/strict";
 *
 * const schema = z.object({
 *   listen: z.string().default("127.0.0.1:5353").describe("Address to serve DNS on"),
 *   cache: z.object({ size: z.number().int().positive().default(10_000) }).prefault({}),
 * });
 * await using config = await createConfig({
 *   schema,
 *   env: { prefix: "DNS", vars: { DNS_CACHE__SIZE: "500" } },
 *   args: ["--listen", "[::1]:53"],
 * });
 * assert.equal(config.get("cache.size"), 500);
 * assert.equal(String(config.explain("listen")), 'listen = "[::1]:53" from flag --listen');
 * ```
 *
 * @module
 */
export { TriadError } from "@triad/core";
export * from "./config.ts";
export * from "./diff.ts";
export * from "./duration.ts";
export * from "./errors.ts";
export * from "./file_system.ts";
export * from "./help.ts";
export * from "./layer.ts";
export * from "./merge.ts";
export * from "./names.ts";
export * from "./origin.ts";
export * from "./remote.ts";
export * from "./secret.ts";
export * from "./standard_schema.ts";
export * from "./zod_schema.ts";
export {
  CONFIG_EXTENSIONS,
  type ConfigFormat,
  type FileLayerKind,
  formatOfFile,
  parseConfigText,
} from "./sources/file.ts";
export * from "./sources/etcd.ts";
export * from "./sources/consul.ts";
export * from "./json_schema.ts";
export * from "./example_config.ts";
