/**
 * What the etcd and Consul sources share: turning keys into a layer (one key holding a whole
 * document, or a key prefix mapped to a tree), and jittered exponential backoff.
 *
 * @module
 */
import { ConfigError } from "../errors.ts";
import type { Origin } from "../origin.ts";
import type { BackoffOptions, RemoteLayer } from "../source.ts";
import { setAt } from "../_path.ts";
import type { Segment } from "../_path.ts";
import { parseConfigText } from "./file.ts";
import type { ConfigFormat } from "./parsers.ts";

/** One remote key and its value. */
export interface RemoteEntry {
  readonly key: string;
  readonly value: string;
  readonly revision: number;
}

/** Returns the jittered delay before retry number `attempt` (0-based). */
export function backoffDelay(attempt: number, options: BackoffOptions = {}): number {
  const initial = options.initial ?? 100;
  const max = options.max ?? 10_000;
  const base = Math.min(max, initial * 2 ** Math.min(attempt, 30));
  return base * (0.5 + Math.random() * 0.5);
}

/** Sleeps, waking early (without error) when `signal` aborts. */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done, { once: true });
  });
}

/**
 * Builds a layer from a document key: the value parsed as YAML/JSON/TOML, origins pointing at
 * `key:line:col`.
 *
 * @throws {ConfigError} With code `parse` naming the source, key, revision and position.
 */
function documentLayer(
  source: string,
  name: string,
  entry: RemoteEntry | undefined,
  format: ConfigFormat,
): RemoteLayer {
  if (entry === undefined || entry.value.trim() === "") {
    return { kind: "remote", name, tree: {}, origins: new Map(), coerce: false };
  }
  const label = `${source} key ${entry.key} (revision ${entry.revision})`;
  let parsed;
  try {
    parsed = parseConfigText(entry.value, format, label);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    throw new ConfigError(error.message, { code: "parse", issues: error.issues, cause: error });
  }
  const origins = new Map<string, Origin>();
  for (const [path, origin] of parsed.origins) {
    const at = "line" in origin ? `:${origin.line}:${origin.column}` : "";
    origins.set(path, {
      layer: "remote",
      source,
      key: `${entry.key}${at}`,
      revision: entry.revision,
    });
  }
  origins.set("", { layer: "remote", source, key: entry.key, revision: entry.revision });
  return { kind: "remote", name, tree: parsed.tree, origins, coerce: false };
}

/**
 * Builds a layer from the keys under a prefix: `<prefix>dns/cache/size` → `dns.cache.size`, values
 * as strings (coerced to the schema's types later); numeric segments index arrays.
 */
function prefixLayer(
  source: string,
  name: string,
  prefix: string,
  entries: Iterable<RemoteEntry>,
): RemoteLayer {
  const tree: Record<string, unknown> = {};
  const origins = new Map<string, Origin>();
  const sorted = [...entries].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  for (const entry of sorted) {
    const rest = entry.key.slice(prefix.length);
    const segments: Segment[] = rest.split("/").filter((s) => s !== "").map((s) =>
      /^(0|[1-9]\d{0,5})$/.test(s) ? Number(s) : s
    );
    if (segments.length === 0) continue;
    try {
      setAt(tree, segments, entry.value);
    } catch {
      continue; // a key below a scalar: the scalar wins
    }
    origins.set(segments.join("."), {
      layer: "remote",
      source,
      key: entry.key,
      revision: entry.revision,
    });
  }
  return { kind: "remote", name, tree, origins, coerce: true };
}

/**
 * Builds the layer of a remote source from its entries: one key holding a whole document, or the
 * keys under a prefix mapped to a tree.
 */
export function remoteLayer(
  source: string,
  name: string,
  options: { readonly key?: string; readonly prefix?: string; readonly format?: ConfigFormat },
  entries: ReadonlyMap<string, RemoteEntry>,
): RemoteLayer {
  return options.key !== undefined
    ? documentLayer(source, name, entries.get(options.key), options.format ?? "yaml")
    : prefixLayer(source, name, options.prefix!, entries.values());
}

/** Wraps a failure of the remote source `name` in a `ConfigError` (code `remote`) naming it. */
export function remoteError(name: string, error: unknown): ConfigError {
  if (error instanceof ConfigError) return error;
  const message = error instanceof Error ? error.message : String(error);
  return new ConfigError(`${name}: ${message}`, { code: "remote", cause: error });
}

/** Decodes base64 (etcd keys and values, Consul values) as UTF-8. */
export function fromBase64(text: string | undefined | null): string {
  if (text === undefined || text === null || text === "") return "";
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return new TextDecoder().decode(bytes);
}

/** Encodes UTF-8 text as base64. */
export function toBase64(text: string): string {
  let binary = "";
  for (const byte of new TextEncoder().encode(text)) binary += String.fromCharCode(byte);
  return btoa(binary);
}

/**
 * Reads a response body as text, giving up when `signal` aborts even if the `fetch` that made the
 * response does not propagate aborts to its body (a wrapped or injected fetch).
 */
export async function readText(response: Response, signal: AbortSignal): Promise<string> {
  if (response.body === null) return "";
  let text = "";
  for await (const chunk of readChunks(response.body, signal)) text += chunk;
  return text;
}

/**
 * Yields a body's text as it arrives, cancelling the read itself when `signal` aborts (a wrapped
 * or injected fetch may not error its body when aborted); throws the abort reason then.
 */
export async function* readChunks(
  body: ReadableStream<Uint8Array>,
  signal: AbortSignal,
): AsyncGenerator<string, void> {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  const cancel = () => void reader.cancel(signal.reason).catch(() => {});
  signal.addEventListener("abort", cancel, { once: true });
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (signal.aborted) throw signal.reason;
      if (done) return;
      yield value;
    }
  } finally {
    signal.removeEventListener("abort", cancel);
    reader.cancel().catch(() => {});
  }
}
