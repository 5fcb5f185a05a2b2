/**
 * etcd v3 as a remote configuration source, through etcd's JSON gateway over plain `fetch`.
 *
 * @module
 */
import { ConfigError } from "../errors.ts";
import type { BackoffOptions, RemoteContext, RemoteLayer, RemoteSource } from "../source.ts";
import type { ConfigFormat } from "./parsers.ts";
import {
  backoffDelay,
  fromBase64,
  readChunks,
  readText,
  type RemoteEntry,
  remoteError,
  remoteLayer,
  sleep,
  toBase64,
} from "./_remote.ts";

/** Options of {@linkcode etcdSource}: exactly one of `key` and `prefix`. */
export interface EtcdSourceOptions {
  /** Client URLs, such as `["http://127.0.0.1:2379"]`; tried in turn on failure. */
  readonly endpoints: readonly string[];
  /** One key holding a whole YAML/JSON/TOML document. */
  readonly key?: string;
  /** A key prefix mapped to a tree: `<prefix>dns/cache/size` → `dns.cache.size`. */
  readonly prefix?: string;
  /** The document format of `key`. @default {"yaml"} (which reads JSON too) */
  readonly format?: ConfigFormat;
  /** Fail `createConfig()` when etcd is unreachable at start. @default {false} */
  readonly required?: boolean;
  /** User for token authentication (`/v3/auth/authenticate`). */
  readonly username?: string;
  /** Password for token authentication. */
  readonly password?: string;
  /** Reconnect delays. */
  readonly backoff?: BackoffOptions;
  /**
   * Reconnect when the watch stream is silent this long (ms): a half-open connection. Set it
   * above etcd's `--experimental-watch-progress-notify-interval` (10 minutes by default).
   * `0` disables. @default {0}
   */
  readonly idleTimeout?: number;
  /** How long one request may take before it is abandoned (ms). @default {5000} */
  readonly requestTimeout?: number;
  /** The `fetch` to use instead of the configuration's. */
  readonly fetch?: typeof fetch;
}

interface EtcdKv {
  key?: string;
  value?: string;
  mod_revision?: string;
}

interface WatchResult {
  header?: { revision?: string };
  created?: boolean;
  canceled?: boolean;
  compact_revision?: string;
  cancel_reason?: string;
  events?: { type?: "PUT" | "DELETE"; kv?: EtcdKv }[];
}

/** Returns the key just after every key that starts with `prefix` (etcd's `range_end`). */
function prefixEnd(prefix: string): Uint8Array {
  const bytes = new TextEncoder().encode(prefix);
  for (let i = bytes.length - 1; i >= 0; i--) {
    if (bytes[i]! < 0xff) {
      const end = bytes.slice(0, i + 1);
      end[i]!++;
      return end;
    }
  }
  return new Uint8Array([0]);
}

function bytesToBase64(bytes: Uint8Array): string {
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary);
}

class CompactedError extends Error {}

/**
 * An etcd v3 source: a range read, then a streaming watch (`/v3/watch`) resumed from the last
 * revision + 1 after a disconnect. When the revision it needs has been compacted away, it reads
 * the range again and the configuration emits the diff. Progress notifications advance the
 * resume revision; token authentication and jittered exponential backoff are built in.
 *
 * @param options Endpoints, `key` or `prefix`, auth, backoff.
 * @returns The source, for `createConfig({ remote: [...] })`.
 *
 * @example
 * ```ts ignore
 * import { createConfig, etcdSource } from "@triad/config";
 * const config = await createConfig({
 *   schema,
 *   remote: [etcdSource({ endpoints: ["http://127.0.0.1:2379"], prefix: "/app/" })],
 * });
 * await config.watch();
 * ```
 */
export function etcdSource(options: EtcdSourceOptions): RemoteSource {
  if ((options.key === undefined) === (options.prefix === undefined)) {
    throw new ConfigError("etcdSource() needs exactly one of key and prefix", {
      code: "bad_option",
    });
  }
  if (options.endpoints.length === 0) {
    throw new ConfigError("etcdSource() needs at least one endpoint", { code: "bad_option" });
  }
  return new EtcdSource(options);
}

class EtcdSource implements RemoteSource {
  readonly name: string;
  readonly required: boolean;
  readonly #options: EtcdSourceOptions;
  readonly #keyB64: string;
  readonly #rangeEndB64: string | undefined;
  #endpoint = 0;
  #token: string | undefined;
  #kvs = new Map<string, RemoteEntry>();
  #revision = 0;
  #loaded = false;

  constructor(options: EtcdSourceOptions) {
    this.#options = options;
    this.required = options.required ?? false;
    const key = options.key ?? options.prefix!;
    this.#keyB64 = toBase64(key);
    this.#rangeEndB64 = options.prefix === undefined
      ? undefined
      : bytesToBase64(prefixEnd(options.prefix));
    this.name = `etcd ${options.endpoints[0]} ${key}`;
  }

  async load(context: RemoteContext): Promise<RemoteLayer> {
    const failures: string[] = [];
    for (let tried = 0; tried < this.#options.endpoints.length; tried++) {
      try {
        await this.#readRange(context);
        return this.#layer();
      } catch (error) {
        if (error instanceof ConfigError) throw error;
        failures.push(`${this.#options.endpoints[this.#endpoint]}: ${(error as Error).message}`);
        this.#endpoint = (this.#endpoint + 1) % this.#options.endpoints.length;
      }
    }
    throw new ConfigError(`${this.name}: unreachable (${failures.join("; ")})`, { code: "remote" });
  }

  async watch(
    context: RemoteContext,
    onLayer: (layer: RemoteLayer) => void,
    onError: (error: ConfigError) => void,
  ): Promise<void> {
    let attempt = 0;
    let needRead = !this.#loaded;
    while (!context.signal.aborted) {
      try {
        if (needRead) {
          await this.#readRange(context);
          needRead = false;
          this.#emit(onLayer, onError);
        }
        await this.#stream(context, () => {
          attempt = 0;
        }, () => this.#emit(onLayer, onError));
        // The stream ended: etcd went away or closed it. Resume from revision + 1.
      } catch (error) {
        if (context.signal.aborted) break;
        if (error instanceof CompactedError) {
          needRead = true;
          continue;
        }
        onError(this.#error(error));
        this.#endpoint = (this.#endpoint + 1) % this.#options.endpoints.length;
      }
      if (context.signal.aborted) break;
      await sleep(backoffDelay(attempt++, this.#options.backoff), context.signal);
    }
  }

  #emit(onLayer: (layer: RemoteLayer) => void, onError: (error: ConfigError) => void) {
    let layer: RemoteLayer;
    try {
      layer = this.#layer();
    } catch (error) {
      onError(this.#error(error));
      return;
    }
    onLayer(layer);
  }

  #layer(): RemoteLayer {
    return remoteLayer("etcd", this.name, this.#options, this.#kvs);
  }

  #error(error: unknown): ConfigError {
    return remoteError(this.name, error);
  }

  #url(path: string): string {
    return `${this.#options.endpoints[this.#endpoint]!.replace(/\/+$/, "")}${path}`;
  }

  async #post(
    context: RemoteContext,
    path: string,
    body: unknown,
    signal: AbortSignal,
    retryAuth = true,
  ): Promise<Response> {
    const fetchFn = this.#options.fetch ?? context.fetch;
    if (this.#options.username !== undefined && this.#token === undefined) {
      await this.#authenticate(context, signal);
    }
    const headers: Record<string, string> = { "content-type": "application/json" };
    if (this.#token !== undefined) headers["authorization"] = this.#token;
    const response = await fetchFn(this.#url(path), {
      method: "POST",
      headers,
      body: JSON.stringify(body),
      signal,
    });
    if (!response.ok) {
      const text = await readText(response, signal).catch(() => "");
      if (
        retryAuth && this.#options.username !== undefined &&
        (response.status === 401 || /auth token|unauthenticated/i.test(text))
      ) {
        this.#token = undefined;
        return this.#post(context, path, body, signal, false);
      }
      throw new Error(`${path} answered ${response.status}: ${text.slice(0, 200)}`);
    }
    return response;
  }

  async #authenticate(context: RemoteContext, signal: AbortSignal) {
    const fetchFn = this.#options.fetch ?? context.fetch;
    const response = await fetchFn(this.#url("/v3/auth/authenticate"), {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        name: this.#options.username,
        password: this.#options.password ?? "",
      }),
      signal,
    });
    const json = await readText(response, signal).then(JSON.parse).catch(() => ({})) as {
      token?: string;
      message?: string;
    };
    if (!response.ok || typeof json.token !== "string") {
      throw new Error(
        `authentication as ${this.#options.username} failed: ${json.message ?? response.status}`,
      );
    }
    this.#token = json.token;
  }

  async #readRange(context: RemoteContext) {
    const signal = AbortSignal.any([
      context.signal,
      AbortSignal.timeout(this.#options.requestTimeout ?? 5_000),
    ]);
    const body: Record<string, string> = { key: this.#keyB64 };
    if (this.#rangeEndB64 !== undefined) body["range_end"] = this.#rangeEndB64;
    const response = await this.#post(context, "/v3/kv/range", body, signal);
    const json = JSON.parse(await readText(response, signal)) as {
      header?: { revision?: string };
      kvs?: EtcdKv[];
    };
    const revision = Number(json.header?.revision ?? NaN);
    if (!Number.isFinite(revision)) throw new Error("range answer without a header revision");
    const kvs = new Map<string, RemoteEntry>();
    for (const kv of json.kvs ?? []) {
      const key = fromBase64(kv.key);
      kvs.set(key, { key, value: fromBase64(kv.value), revision: Number(kv.mod_revision ?? 0) });
    }
    this.#kvs = kvs;
    this.#revision = revision;
    this.#loaded = true;
  }

  /** Runs one watch stream until it ends; throws on errors and on compaction. */
  async #stream(context: RemoteContext, onData: () => void, onChange: () => void) {
    const local = new AbortController();
    const signal = AbortSignal.any([context.signal, local.signal]);
    const create: Record<string, unknown> = {
      key: this.#keyB64,
      start_revision: String(this.#revision + 1),
      progress_notify: true,
    };
    if (this.#rangeEndB64 !== undefined) create["range_end"] = this.#rangeEndB64;
    const response = await this.#post(context, "/v3/watch", { create_request: create }, signal);
    if (response.body === null) throw new Error("watch answered without a body");
    const idle = this.#options.idleTimeout ?? 0;
    let idleTimer: ReturnType<typeof setTimeout> | undefined;
    const armIdle = () => {
      if (idle <= 0) return;
      if (idleTimer !== undefined) clearTimeout(idleTimer);
      idleTimer = setTimeout(() => local.abort(new Error(`watch silent for ${idle} ms`)), idle);
    };
    armIdle();
    let buffer = "";
    try {
      for await (const value of readChunks(response.body, signal)) {
        armIdle();
        buffer += value;
        let newline: number;
        while ((newline = buffer.indexOf("\n")) !== -1) {
          const line = buffer.slice(0, newline).trim();
          buffer = buffer.slice(newline + 1);
          if (line !== "") this.#message(line, onData, onChange);
        }
      }
    } catch (error) {
      if (local.signal.aborted && !context.signal.aborted) throw local.signal.reason;
      throw error;
    } finally {
      if (idleTimer !== undefined) clearTimeout(idleTimer);
      local.abort();
    }
  }

  /** An expired or unknown token (etcd restarted, TTL passed): authenticate again next time. */
  #forgetTokenOn(text: string) {
    if (/auth token|unauthenticated|user name is empty/i.test(text)) this.#token = undefined;
  }

  #message(line: string, onData: () => void, onChange: () => void) {
    let message: { result?: WatchResult; error?: { message?: string; http_code?: number } };
    try {
      message = JSON.parse(line);
    } catch {
      throw new Error(`watch sent a line that is not JSON: ${line.slice(0, 100)}`);
    }
    if (message.error !== undefined) {
      const text = message.error.message ?? JSON.stringify(message.error);
      this.#forgetTokenOn(text);
      throw new Error(`watch failed: ${text}`);
    }
    const result = message.result;
    if (result === undefined) return;
    if (result.compact_revision !== undefined && Number(result.compact_revision) > 0) {
      throw new CompactedError(`revision ${this.#revision + 1} was compacted`);
    }
    if (result.canceled) {
      const reason = result.cancel_reason ?? "no reason given";
      this.#forgetTokenOn(reason);
      throw new Error(`watch canceled by etcd: ${reason}`);
    }
    onData();
    const headerRevision = Number(result.header?.revision ?? 0);
    if (result.created) {
      // etcd restarted from an older state (restored backup): our revision is from the future.
      if (headerRevision > 0 && headerRevision < this.#revision) {
        throw new CompactedError(`etcd revision went back to ${headerRevision}`);
      }
      return;
    }
    const events = result.events ?? [];
    if (events.length === 0) {
      // A progress notification: every event up to the header revision has been delivered.
      if (headerRevision > this.#revision) this.#revision = headerRevision;
      return;
    }
    for (const event of events) {
      const kv = event.kv ?? {};
      const key = fromBase64(kv.key);
      const revision = Number(kv.mod_revision ?? 0);
      if (event.type === "DELETE") this.#kvs.delete(key);
      else this.#kvs.set(key, { key, value: fromBase64(kv.value), revision });
      if (revision > this.#revision) this.#revision = revision;
    }
    onChange();
  }
}
