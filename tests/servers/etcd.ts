/**
 * A real etcd (Debian's `etcd-server`) for tests: started on free loopback ports in a temporary
 * data directory, stopped — and its directory removed — on dispose, also when the test fails.
 *
 * ```ts ignore
 * import { startEtcd } from "./servers/etcd.ts";
 * await using etcd = await startEtcd();
 * await etcd.put("/app/port", "53");
 * ```
 *
 * @module
 */

/** Options of {@linkcode startEtcd}. */
export interface EtcdOptions {
  /** How often etcd sends watch progress notifications. @default {"500ms"} */
  readonly progressNotifyInterval?: string;
  /** Where to make the temporary data directory (`/dev/shm` takes disk fsync out of a benchmark). */
  readonly tempRoot?: string;
  /** Pin etcd to these CPUs with `taskset` (for benchmarks), such as `"1"`. */
  readonly cpus?: string;
}

/** A running etcd. */
export interface EtcdServer extends AsyncDisposable {
  /** The client URL, such as `http://127.0.0.1:23790`. */
  readonly endpoint: string;
  /** The process id of the running etcd. */
  readonly pid: number;
  /** Writes a key through the JSON gateway; returns the new revision. */
  put(key: string, value: string): Promise<number>;
  /** Deletes a key (or a prefix with `prefix: true`); returns the new revision. */
  delete(key: string, prefix?: boolean): Promise<number>;
  /** Compacts the history up to a revision (physically). */
  compact(revision: number): Promise<void>;
  /** Stops etcd (SIGTERM, then SIGKILL), keeping its data. */
  stop(): Promise<void>;
  /** Starts etcd again on the same ports and data directory. */
  start(): Promise<void>;
  /** Enables authentication with a root user of this password. */
  enableAuth(password: string): Promise<void>;
}

const live = new Set<Deno.ChildProcess>();
globalThis.addEventListener("unload", () => {
  for (const child of live) {
    try {
      child.kill("SIGKILL");
    } catch {
      // Already gone.
    }
  }
});

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

const b64 = (text: string) => btoa(String.fromCharCode(...new TextEncoder().encode(text)));

/** Returns the key just after every key that starts with `prefix` (etcd's range_end). */
export function prefixEnd(prefix: string): string {
  const bytes = new TextEncoder().encode(prefix);
  for (let i = bytes.length - 1; i >= 0; i--) {
    if (bytes[i]! < 0xff) {
      const end = bytes.slice(0, i + 1);
      end[i]!++;
      return String.fromCharCode(...end);
    }
  }
  return "\0";
}

/**
 * Starts etcd on free loopback ports in a fresh temporary directory and waits until it serves.
 *
 * @param options Progress notification interval.
 * @returns The server; dispose it to stop it and remove its data.
 */
export async function startEtcd(options: EtcdOptions = {}): Promise<EtcdServer> {
  const dir = await Deno.makeTempDir({
    prefix: "triad-etcd-",
    ...(options.tempRoot === undefined ? {} : { dir: options.tempRoot }),
  });
  const clientPort = freePort();
  const peerPort = freePort();
  const endpoint = `http://127.0.0.1:${clientPort}`;
  const peer = `http://127.0.0.1:${peerPort}`;
  let child: Deno.ChildProcess | undefined;
  let token: string | undefined;
  let rootPassword: string | undefined;
  // Our own HTTP client, so no pooled connection outlives the server.
  const client = Deno.createHttpClient({});

  const request = async (path: string, body: unknown): Promise<Record<string, unknown>> => {
    const headers: Record<string, string> = { "content-type": "application/json" };
    if (token !== undefined) headers["authorization"] = token;
    const response = await fetch(`${endpoint}${path}`, {
      client,
      method: "POST",
      headers,
      body: JSON.stringify(body),
    });
    const json = await response.json() as Record<string, unknown>;
    if (!response.ok) throw new Error(`etcd ${path}: ${response.status} ${JSON.stringify(json)}`);
    return json;
  };
  const revisionOf = (json: Record<string, unknown>) =>
    Number((json["header"] as { revision?: string } | undefined)?.revision ?? 0);

  const start = async () => {
    const etcdArgs = [
      "--name=triad-test",
      `--data-dir=${dir}/data`,
      `--listen-client-urls=${endpoint}`,
      `--advertise-client-urls=${endpoint}`,
      `--listen-peer-urls=${peer}`,
      `--initial-advertise-peer-urls=${peer}`,
      `--initial-cluster=triad-test=${peer}`,
      "--initial-cluster-state=new",
      `--experimental-watch-progress-notify-interval=${options.progressNotifyInterval ?? "500ms"}`,
      "--logger=zap",
      "--log-level=error",
      "--log-outputs=stderr",
    ];
    const pinned = options.cpus !== undefined;
    child = new Deno.Command(pinned ? "taskset" : "etcd", {
      args: pinned ? ["-c", options.cpus!, "etcd", ...etcdArgs] : etcdArgs,
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    live.add(child);
    // Drain stderr so etcd never blocks on a full pipe; keep the tail for errors.
    const stderr: string[] = [];
    const proc = child;
    void (async () => {
      try {
        for await (const chunk of proc.stderr.pipeThrough(new TextDecoderStream())) {
          stderr.push(chunk);
          if (stderr.length > 50) stderr.shift();
        }
      } catch {
        // Closed.
      }
    })();
    const deadline = Date.now() + 15_000;
    for (;;) {
      try {
        const response = await fetch(`${endpoint}/health`, { client });
        const body = await response.text();
        if (response.ok && body.includes("true")) {
          if (rootPassword !== undefined) {
            // Simple tokens do not survive a restart.
            token = undefined;
            const json = await request("/v3/auth/authenticate", {
              name: "root",
              password: rootPassword,
            });
            token = json["token"] as string;
          }
          return;
        }
      } catch {
        // Not listening yet.
      }
      if (Date.now() > deadline) {
        await stop();
        throw new Error(`etcd did not become healthy in 15 s: ${stderr.join("").slice(-2000)}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  };

  const stop = async () => {
    const proc = child;
    if (proc === undefined) return;
    child = undefined;
    try {
      proc.kill("SIGTERM");
    } catch {
      // Already exited.
    }
    const timer = setTimeout(() => {
      try {
        proc.kill("SIGKILL");
      } catch {
        // Already exited.
      }
    }, 3_000);
    await proc.status;
    clearTimeout(timer);
    live.delete(proc);
  };

  try {
    await start();
  } catch (error) {
    client.close();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    throw error;
  }

  return {
    endpoint,
    get pid() {
      return child?.pid ?? -1;
    },
    put: async (key, value) =>
      revisionOf(await request("/v3/kv/put", { key: b64(key), value: b64(value) })),
    delete: async (key, prefix = false) =>
      revisionOf(
        await request("/v3/kv/deleterange", {
          key: b64(key),
          ...(prefix ? { range_end: b64(prefixEnd(key)) } : {}),
        }),
      ),
    compact: async (revision) => {
      await request("/v3/kv/compaction", { revision: String(revision), physical: true });
    },
    stop,
    start,
    enableAuth: async (password) => {
      await request("/v3/auth/user/add", { name: "root", password });
      await request("/v3/auth/user/grant", { user: "root", role: "root" });
      await request("/v3/auth/enable", {});
      const json = await request("/v3/auth/authenticate", { name: "root", password });
      token = json["token"] as string;
      rootPassword = password;
    },
    async [Symbol.asyncDispose]() {
      await stop();
      client.close();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}
