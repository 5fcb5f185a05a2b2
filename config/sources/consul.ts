/**
 * Consul KV as a remote configuration source, with blocking queries over plain `fetch`.
 *
 * @module
 */
import { ConfigError } from "../errors.ts";
import type { BackoffOptions, RemoteContext, RemoteLayer, RemoteSource } from "../source.ts";
import { parseDuration } from "@triad/core";
import type { ConfigFormat } from "./parsers.ts";
import {
  backoffDelay,
  fromBase64,
  readText,
  type RemoteEntry,
  remoteError,
  remoteLayer,
  sleep,
} from "./_remote.ts";

/** Options of {@linkcode consulSource}: exactly one of `key` and `prefix`. */
export interface ConsulSourceOptions {
  /** The agent's HTTP address, such as `http://127.0.0.1:8500`. */
  readonly address: string;
  /** One key holding a whole YAML/JSON/TOML document, such as `app/config`. */
  readonly key?: string;
  /** A key prefix mapped to a tree: `<prefix>dns/cache/size` → `dns.cache.size`. */
  readonly prefix?: string;
  /** The document format of `key`. @default {"yaml"} (which reads JSON too) */
  readonly format?: ConfigFormat;
  /** Fail `createConfig()` when Consul is unreachable at start. @default {false} */
  readonly required?: boolean;
  /** ACL token, sent as `X-Consul-Token`. */
  readonly token?: string;
  /** Datacenter to query. */
  readonly datacenter?: string;
  /** How long one blocking query may wait (Consul caps it at 10 minutes). @default {"5m"} */
  readonly wait?: string;
  /** Retry delays after errors, and the pause after queries that return early with no progress. */
  readonly backoff?: BackoffOptions;
  /** The `fetch` to use instead of the configuration's. */
  readonly fetch?: typeof fetch;
}

interface ConsulKv {
  Key?: string;
  Value?: string | null;
  ModifyIndex?: number;
}

/**
 * A Consul KV source using blocking queries (`?index=&wait=`, `X-Consul-Index`), following
 * Consul's documented rules: the index is reset to 0 when it goes backwards, never used when
 * below 1, and queries that return early without progress are rate-limited. Contents are compared
 * before anything is emitted, so a wake-up without a real change reports nothing.
 *
 * @param options Address, `key` or `prefix`, token, wait, backoff.
 * @returns The source, for `createConfig({ remote: [...] })`.
 *
 * @example
 * ```ts ignore
 * import { consulSource, createConfig } from "@triad/config";
 * const config = await createConfig({
 *   schema,
 *   remote: [consulSource({ address: "http://127.0.0.1:8500", key: "app/config" })],
 * });
 * await config.watch();
 * ```
 */
export function consulSource(options: ConsulSourceOptions): RemoteSource {
  if ((options.key === undefined) === (options.prefix === undefined)) {
    throw new ConfigError("consulSource() needs exactly one of key and prefix", {
      code: "bad_option",
    });
  }
  return new ConsulSource(options);
}

class ConsulSource implements RemoteSource {
  readonly name: string;
  readonly required: boolean;
  readonly #options: ConsulSourceOptions;
  readonly #waitMs: number;
  #index = 0;
  #entries = new Map<string, RemoteEntry>();
  #emitted: string | undefined;

  constructor(options: ConsulSourceOptions) {
    this.#options = options;
    this.required = options.required ?? false;
    this.#waitMs = parseDuration(options.wait ?? "5m");
    this.name = `consul ${options.address} ${options.key ?? options.prefix}`;
  }

  async load(context: RemoteContext): Promise<RemoteLayer> {
    await this.#query(context, 0);
    const layer = this.#layer();
    this.#emitted = this.#fingerprint();
    return layer;
  }

  async watch(
    context: RemoteContext,
    onLayer: (layer: RemoteLayer) => void,
    onError: (error: ConfigError) => void,
  ): Promise<void> {
    let attempt = 0;
    let idle = 0;
    while (!context.signal.aborted) {
      const before = this.#index;
      const started = performance.now();
      try {
        await this.#query(context, this.#index);
        attempt = 0;
      } catch (error) {
        if (context.signal.aborted) break;
        onError(this.#error(error));
        await sleep(backoffDelay(attempt++, this.#options.backoff), context.signal);
        continue;
      }
      const fingerprint = this.#fingerprint();
      if (fingerprint !== this.#emitted) {
        try {
          const layer = this.#layer();
          this.#emitted = fingerprint;
          onLayer(layer);
        } catch (error) {
          this.#emitted = fingerprint; // report garbage once, not on every wake-up
          onError(this.#error(error));
        }
      }
      // Consul's advice: rate-limit queries that come back at once without progress, so a
      // misbehaving index can never become a tight loop.
      const progressed = this.#index > before;
      if (!progressed && performance.now() - started < 50) {
        await sleep(backoffDelay(idle++, this.#options.backoff), context.signal);
      } else {
        idle = 0;
      }
    }
  }

  #fingerprint(): string {
    return JSON.stringify([...this.#entries.values()].map((e) => [e.key, e.value]));
  }

  #layer(): RemoteLayer {
    return remoteLayer("consul", this.name, this.#options, this.#entries);
  }

  #error(error: unknown): ConfigError {
    return remoteError(this.name, error);
  }

  async #query(context: RemoteContext, index: number) {
    const fetchFn = this.#options.fetch ?? context.fetch;
    const key = this.#options.key ?? this.#options.prefix!;
    const url = new URL(
      `${this.#options.address.replace(/\/+$/, "")}/v1/kv/${
        key.split("/").map(encodeURIComponent).join("/")
      }`,
    );
    if (this.#options.prefix !== undefined) url.searchParams.set("recurse", "true");
    if (this.#options.datacenter !== undefined) {
      url.searchParams.set("dc", this.#options.datacenter);
    }
    if (index > 0) {
      url.searchParams.set("index", String(index));
      url.searchParams.set("wait", `${Math.ceil(this.#waitMs / 1000)}s`);
    }
    const headers: Record<string, string> = {};
    if (this.#options.token !== undefined) headers["x-consul-token"] = this.#options.token;
    // Consul adds up to wait/16 of jitter: allow for it before giving up on the request.
    const timeout = index > 0 ? this.#waitMs + this.#waitMs / 16 + 5_000 : 10_000;
    const signal = AbortSignal.any([context.signal, AbortSignal.timeout(timeout)]);
    const response = await fetchFn(url, { headers, signal });
    const text = await readText(response, signal);
    if (response.status !== 200 && response.status !== 404) {
      throw new Error(`GET ${url.pathname} answered ${response.status}: ${text.slice(0, 200)}`);
    }
    let entries: ConsulKv[] = [];
    if (response.status === 200) {
      try {
        const json = JSON.parse(text);
        if (!Array.isArray(json)) throw new Error("not an array");
        entries = json;
      } catch (error) {
        throw new Error(`GET ${url.pathname} answered garbage: ${(error as Error).message}`);
      }
    }
    const next = new Map<string, RemoteEntry>();
    for (const kv of entries) {
      if (typeof kv.Key !== "string") continue;
      next.set(kv.Key, { key: kv.Key, value: fromBase64(kv.Value), revision: kv.ModifyIndex ?? 0 });
    }
    this.#entries = next;
    const returned = Number(response.headers.get("x-consul-index"));
    if (!Number.isFinite(returned) || returned < 1) {
      // An index of 0 (a known Consul bug) or garbage would make the next query return at once.
      this.#index = 1;
    } else if (returned < this.#index) {
      // The index went backwards (snapshot restore, new cluster): start over.
      this.#index = 0;
    } else {
      this.#index = returned;
    }
  }
}
