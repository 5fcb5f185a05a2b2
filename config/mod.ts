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
export { type LogFields, type Logger, type LogLevel, TriadError } from "@triad/core";
export {
  type ArgsOptions,
  Config,
  type ConfigChangeEvent,
  type ConfigEvents,
  type ConfigView,
  createConfig,
  type CreateConfigOptions,
  type DeepPartial,
  DEFAULT_LAYER_ORDER,
  type EnvOptions,
} from "./config.ts";
export type { DumpOptions, Explanation } from "./explain.ts";
export type { ConfigLeaf, ConfigPath, ConfigPathDepth, ConfigPathValue } from "./_path.ts";
export { type ConfigChange, diffConfig } from "./diff.ts";
export { duration } from "./duration.ts";
export { ConfigError, type ConfigErrorCode, type ConfigIssue } from "./errors.ts";
export {
  type ConfigDirEntry,
  type ConfigFileSystem,
  type ConfigFsWatcher,
  denoFileSystem,
} from "./file_system.ts";
export { type HelpOptions, helpText } from "./help.ts";
export type { Layer } from "./layer.ts";
export type { ArrayStrategy, OverriddenValue } from "./merge.ts";
export { envVarName, flagName } from "./names.ts";
export { formatOrigin, type LayerName, type Origin } from "./origin.ts";
export type {
  BackoffOptions,
  RemoteContext,
  RemoteLayer,
  RemoteSource,
  Source,
  SourceContext,
  SourceLayer,
} from "./source.ts";
export { REDACTED_TEXT, Secret, secret } from "./secret.ts";
export type {
  SchemaInput,
  SchemaOutput,
  StandardIssue,
  StandardResult,
  StandardSchema,
} from "./standard_schema.ts";
export type { FileSearch } from "./sources/file.ts";
export type { ConfigFormat } from "./sources/parsers.ts";
export { etcdSource, type EtcdSourceOptions } from "./sources/etcd.ts";
export { consulSource, type ConsulSourceOptions } from "./sources/consul.ts";
export { type JsonSchemaObject, toJsonSchema, toOpenApiComponent } from "./json_schema.ts";
export { envExample, exampleConfig, type ExampleOptions } from "./example_config.ts";
