/**
 * What a remote configuration source (etcd, Consul) provides to a {@linkcode Config}.
 *
 * @module
 */
import type { ConfigError } from "./errors.ts";
import type { Layer } from "./layer.ts";

/** What a remote source gets from the configuration that runs it. */
export interface RemoteContext {
  /** The `fetch` to use (injectable for tests). */
  readonly fetch: typeof fetch;
  /** Aborted when the configuration is disposed. */
  readonly signal: AbortSignal;
}

/**
 * A remote source: reads its key space into a layer, then watches it and hands over a new layer
 * after every change. Values of a prefix-mapped source are strings, coerced to the schema's types
 * by the configuration (`layer.coerce`).
 */
export interface RemoteSource {
  /** A name for messages and origins, such as `etcd http://127.0.0.1:2379/app/`. */
  readonly name: string;
  /** Whether configuration fails to start when the source is unreachable. */
  readonly required: boolean;
  /**
   * Reads the current contents once.
   *
   * @throws {ConfigError} With code `remote` when unreachable, `parse` on garbage.
   */
  load(context: RemoteContext): Promise<RemoteLayer>;
  /**
   * Watches until `context.signal` aborts: reads the contents (again), then reports every change
   * with `onLayer`, and every failure with `onError` before retrying with backoff. Resolves once
   * aborted.
   */
  watch(
    context: RemoteContext,
    onLayer: (layer: RemoteLayer) => void,
    onError: (error: ConfigError) => void,
  ): Promise<void>;
}

/** A layer read from a remote source. */
export interface RemoteLayer extends Layer {
  /** Leaves are strings to coerce to the schema's types (a key prefix mapped to a tree). */
  readonly coerce: boolean;
}

/** Backoff between retries: `initial` doubling up to `max`, each delay jittered to 50–100 %. */
export interface BackoffOptions {
  /** First delay in ms. @default {100} */
  readonly initial?: number;
  /** Largest delay in ms. @default {10000} */
  readonly max?: number;
}
