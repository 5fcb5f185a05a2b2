/**
 * The {@linkcode Source} interface: what every source of configuration provides to a
 * {@linkcode Config} — one or more layers with the origin of each value, read once with `load()`
 * and, optionally, followed with `watch()`. Every built-in source (defaults, files, environment,
 * flags, etcd, Consul) implements it; so can a user's own. `createConfig()`'s options stand for a
 * list of sources, which the configuration loads, reloads and merges alike.
 *
 * @module
 */
import type { ConfigError } from "./errors.ts";
import type { ConfigFileSystem } from "./file_system.ts";
import type { Layer } from "./layer.ts";

/** What a source gets from the configuration that runs it. */
export interface SourceContext {
  /** The `fetch` to use (injectable for tests). */
  readonly fetch: typeof fetch;
  /** Aborted when the configuration is disposed. */
  readonly signal: AbortSignal;
  /** The file system to read (injectable for tests). */
  readonly fs: ConfigFileSystem;
}

/** A layer read from a source. */
export interface SourceLayer extends Layer {
  /**
   * Leaves are strings to coerce to the schema's types (a key space mapped to a tree, as etcd's
   * and Consul's prefixes are). @default {false}
   */
  readonly coerce?: boolean;
}

/**
 * A source of configuration: reads its contents into layers, and optionally watches them and
 * hands over new layers after every change. Each layer's `kind` says where it goes in the layer
 * order (`"remote"` for etcd and Consul); its origins say where each value came from, for
 * `explain()`, `dump({ origins: true })` and error messages. Strings in it may hold secret
 * references (`${file:…}`, `${env:…}`), resolved by the configuration.
 *
 * Pass sources to {@linkcode createConfig} as `sources` (or `remote`).
 *
 * @example A source of your own
 * ```ts
 * import { createConfig, type Source } from "@triad/config";
 * import { z } from "zod";
 * import assert from "node:assert/strict";
 *
 * const vault = new Map([["kv/app/port", "8053"]]);
 * const vaultSource: Source = {
 *   name: "vault kv/app",
 *   required: true,
 *   load: () =>
 *     Promise.resolve({
 *       kind: "remote",
 *       name: "vault kv/app",
 *       tree: { port: vault.get("kv/app/port") },
 *       origins: new Map([["port", { layer: "remote", source: "vault", key: "kv/app/port" }]]),
 *       coerce: true, // "8053" becomes the number the schema wants
 *     }),
 * };
 * await using config = await createConfig({
 *   schema: z.object({ port: z.number().int().default(53) }),
 *   env: false,
 *   sources: [vaultSource],
 * });
 * assert.equal(config.get("port"), 8053);
 * assert.equal(String(config.explain("port")), "port = 8053 from vault key kv/app/port");
 * ```
 */
export interface Source {
  /** A name for messages and change causes, such as `etcd http://127.0.0.1:2379/app/`. */
  readonly name: string;
  /** Whether configuration fails to start when the source cannot be read. @default {false} */
  readonly required?: boolean;
  /**
   * Reads the current contents once: one layer, or several (a file source's file, profile file
   * and config directory).
   *
   * @throws {ConfigError} With code `remote` when unreachable, `parse` on garbage.
   */
  load(context: SourceContext): Promise<SourceLayer | readonly SourceLayer[]>;
  /**
   * Watches until `context.signal` aborts: reports every change with `onLayer` (the new contents,
   * and optionally the change's cause, such as `file /etc/app/app.yaml`; the source's `name` when
   * left out), and every failure with `onError` (a remote source then retries with backoff).
   * Resolves once aborted. The configuration calls it from `watch()` (and, for a source
   * unreachable at start, right away); a source without it is read at start and by `reload()`.
   */
  watch?(
    context: SourceContext,
    onLayer: (layers: SourceLayer | readonly SourceLayer[], cause?: string) => void,
    onError: (error: ConfigError) => void,
  ): Promise<void>;
}

/**
 * A {@linkcode Source} that loads one layer and always watches, as etcd and Consul do (the type
 * `etcdSource()` and `consulSource()` return).
 */
export interface RemoteSource extends Source {
  /** Whether configuration fails to start when the source is unreachable. */
  readonly required: boolean;
  /** Reads the current contents once. */
  load(context: SourceContext): Promise<SourceLayer>;
  /** Watches until `context.signal` aborts, as {@linkcode Source.watch} does. */
  watch(
    context: SourceContext,
    onLayer: (layer: SourceLayer) => void,
    onError: (error: ConfigError) => void,
  ): Promise<void>;
}
/** A {@linkcode SourceContext} (its earlier name). */
export type RemoteContext = SourceContext;
/** A {@linkcode SourceLayer} (its earlier name). */
export type RemoteLayer = SourceLayer;

/** Backoff between retries: `initial` doubling up to `max`, each delay jittered to 50–100 %. */
export interface BackoffOptions {
  /** First delay in ms. @default {100} */
  readonly initial?: number;
  /** Largest delay in ms. @default {10000} */
  readonly max?: number;
}
