/**
 * A small HTTP server implementing the part of Consul's KV API that `consulSource()` uses, as
 * documented at https://developer.hashicorp.com/consul/api-docs/kv and
 * https://developer.hashicorp.com/consul/api-docs/features/blocking: `GET /v1/kv/<key>`
 * (`recurse`, blocking `index` + `wait` with up to wait/16 of jitter, `X-Consul-Index`, 404 for
 * missing keys), `PUT` and `DELETE`, and ACL tokens (`X-Consul-Token`, 403 otherwise).
 *
 * Consul itself has no package in the registries this project may use (Debian, npm), so the
 * Consul source is tested against this server rather than a real Consul. Test hooks simulate what
 * Consul does in the field: an index that goes backwards (snapshot restore, new cluster), an
 * index of 0, wake-ups without a change, garbage values.
 *
 * ```ts ignore
 * import { startConsul } from "./servers/consul.ts";
 * await using consul = await startConsul();
 * consul.put("app/config", "port: 53");
 * ```
 *
 * @module
 */

/** Options of {@linkcode startConsul}. */
export interface ConsulOptions {
  /** Require this ACL token on every request. */
  readonly token?: string;
}

/** A running KV server. */
export interface ConsulServer extends AsyncDisposable {
  /** The base URL, such as `http://127.0.0.1:41234`. */
  readonly address: string;
  /** Requests served, by method and path, for assertions. */
  readonly requests: { method: string; path: string; index: number; status: number }[];
  /** Writes a key (bumps the index, wakes blocking queries); the same value still bumps. */
  put(key: string, value: string): number;
  /** Deletes a key or, with `recurse`, a prefix. */
  delete(key: string, recurse?: boolean): number;
  /** Rewrites every key with its own value: indexes move, contents do not. */
  touch(): number;
  /** Renumbers everything so indexes go backwards (as after a snapshot restore). */
  rewindIndex(to: number): void;
  /** Makes the next responses carry `X-Consul-Index: <value>` regardless of the data. */
  forceIndex(value: number | undefined): void;
}

interface Entry {
  value: Uint8Array;
  createIndex: number;
  modifyIndex: number;
}

const MAX_WAIT_MS = 10 * 60 * 1000;

function parseWait(text: string | null): number {
  if (text === null || text === "") return 5 * 60 * 1000;
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text);
  if (match === null) return 5 * 60 * 1000;
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[match[2] ?? "s"] ?? 1000;
  return Math.min(MAX_WAIT_MS, Number(match[1]) * unit);
}

const toBase64 = (bytes: Uint8Array) => {
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary);
};

/**
 * Starts the KV server on a free loopback port.
 *
 * @param options An ACL token to require.
 * @returns The server; dispose it to stop it (open blocking queries are answered first).
 */
export function startConsul(options: ConsulOptions = {}): Promise<ConsulServer> {
  const store = new Map<string, Entry>();
  const tombstones = new Map<string, number>();
  let index = 1;
  let forced: number | undefined;
  const waiters = new Set<() => void>();
  const requests: ConsulServer["requests"] = [];
  const abort = new AbortController();

  const wake = () => {
    for (const waiter of [...waiters]) waiter();
  };

  /** The index of a query: the highest modify/delete index among matching keys. */
  const queryIndex = (key: string, recurse: boolean) => {
    let max = 0;
    const matches = (k: string) => (recurse ? k.startsWith(key) : k === key);
    for (const [k, entry] of store) if (matches(k)) max = Math.max(max, entry.modifyIndex);
    for (const [k, at] of tombstones) if (matches(k)) max = Math.max(max, at);
    return max === 0 ? index : max;
  };

  const handler = async (request: Request): Promise<Response> => {
    const url = new URL(request.url);
    const key = decodeURIComponent(url.pathname.replace(/^\/v1\/kv\/?/, ""));
    const log = {
      method: request.method,
      path: url.pathname,
      index: Number(url.searchParams.get("index") ?? 0),
      status: 200,
    };
    requests.push(log);
    const reply = (status: number, body: string, headers: Record<string, string> = {}) => {
      log.status = status;
      return new Response(body, { status, headers });
    };
    if (!url.pathname.startsWith("/v1/kv/")) return reply(404, "not found");
    if (options.token !== undefined) {
      const token = request.headers.get("x-consul-token") ?? url.searchParams.get("token");
      if (token !== options.token) {
        return reply(403, token === null ? "Permission denied" : "ACL not found");
      }
    }
    if (request.method === "PUT") {
      const value = new Uint8Array(await request.arrayBuffer());
      put(key, value);
      return reply(200, "true", { "content-type": "application/json" });
    }
    if (request.method === "DELETE") {
      remove(key, url.searchParams.has("recurse"));
      return reply(200, "true", { "content-type": "application/json" });
    }
    if (request.method !== "GET") return reply(405, "method not allowed");
    const recurse = url.searchParams.has("recurse");
    const wanted = Number(url.searchParams.get("index") ?? "0");
    if (wanted > 0 && queryIndex(key, recurse) <= wanted && forced === undefined) {
      const wait = parseWait(url.searchParams.get("wait"));
      const jitter = Math.random() * (wait / 16);
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          waiters.delete(check);
          abort.signal.removeEventListener("abort", done);
          resolve();
        };
        const check = () => {
          if (queryIndex(key, recurse) > wanted) done();
        };
        const timer = setTimeout(done, wait + jitter);
        waiters.add(check);
        abort.signal.addEventListener("abort", done);
        request.signal.addEventListener("abort", done);
      });
    }
    const current = forced ?? queryIndex(key, recurse);
    const headers = {
      "content-type": "application/json",
      "x-consul-index": String(current),
      "x-consul-knownleader": "true",
      "x-consul-lastcontact": "0",
    };
    const matches = [...store.entries()]
      .filter(([k]) => (recurse ? k.startsWith(key) : k === key))
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    if (matches.length === 0) return reply(404, "", headers);
    return reply(
      200,
      JSON.stringify(matches.map(([k, entry]) => ({
        LockIndex: 0,
        Key: k,
        Flags: 0,
        Value: entry.value.length === 0 ? null : toBase64(entry.value),
        CreateIndex: entry.createIndex,
        ModifyIndex: entry.modifyIndex,
      }))),
      headers,
    );
  };

  const put = (key: string, value: Uint8Array) => {
    index++;
    const existing = store.get(key);
    store.set(key, { value, createIndex: existing?.createIndex ?? index, modifyIndex: index });
    tombstones.delete(key);
    wake();
    return index;
  };
  const remove = (key: string, recurse: boolean) => {
    index++;
    for (const k of [...store.keys()]) {
      if (recurse ? k.startsWith(key) : k === key) {
        store.delete(k);
        tombstones.set(k, index);
      }
    }
    wake();
    return index;
  };

  const server = Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    signal: abort.signal,
    onListen: () => {},
  }, handler);
  const address = `http://127.0.0.1:${server.addr.port}`;
  return Promise.resolve({
    address,
    requests,
    put: (key, value) => put(key, new TextEncoder().encode(value)),
    delete: (key, recurse = false) => remove(key, recurse),
    touch: () => {
      // Every key rewritten with the same value: indexes move, contents do not.
      index++;
      for (const entry of store.values()) entry.modifyIndex = index;
      wake();
      return index;
    },
    rewindIndex: (to) => {
      index = to;
      for (const entry of store.values()) {
        entry.createIndex = Math.min(entry.createIndex, to);
        entry.modifyIndex = Math.min(entry.modifyIndex, to);
      }
      tombstones.clear();
      wake();
    },
    forceIndex: (value) => {
      forced = value;
      wake();
    },
    async [Symbol.asyncDispose]() {
      abort.abort();
      await server.finished;
    },
  });
}
