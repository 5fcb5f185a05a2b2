/**
 * @triad/config against a real etcd (Debian's etcd-server) on loopback.
 */
import assert from "node:assert/strict";
import { z } from "zod";
import { type ConfigChangeEvent, type ConfigError, createConfig, etcdSource } from "@triad/config";
import { command, testWith } from "./requirements.ts";
import { startEtcd } from "./servers/etcd.ts";
import { pollUntil, waitFor } from "./wait_for.ts";

const schema = z.object({
  dns: z.object({
    port: z.number().int().min(1).max(65535).default(5353),
    cache: z.object({ size: z.number().int().positive().default(100) }).prefault({}),
  }).prefault({}),
  upstreams: z.array(z.string()).default([]),
});

/** What the helpers below listen to: a configuration's events. */
interface Events {
  on(event: "change", listener: (event: ConfigChangeEvent<unknown>) => void): () => void;
  on(event: "error", listener: (error: ConfigError) => void): () => void;
}

/**
 * Runs `action` (a put, a delete) and returns the change event it causes; `when` names it in a
 * timeout's message (`"after the restart"`).
 */
async function changeAfter(
  config: Events,
  action: () => Promise<unknown>,
  when?: string,
  ms?: number,
): Promise<ConfigChangeEvent<unknown>> {
  const what = when === undefined ? "the change" : `the change ${when}`;
  const next = waitFor<ConfigChangeEvent<unknown>>((fn) => config.on("change", fn), what, ms);
  await action();
  return await next;
}

/** Runs `action` and returns the error the configuration reports for it. */
async function errorAfter(config: Events, action: () => Promise<unknown>): Promise<ConfigError> {
  const error = waitFor<ConfigError>((fn) => config.on("error", fn), "the error");
  await action();
  return await error;
}

/**
 * A fetch that counts requests by path and can cut the network (failing new and open requests).
 * It also reads the watch streams as they pass: the highest revision a response header carried,
 * and how many progress notifications (a header, no events) were delivered.
 */
function partitionableFetch() {
  const counts = new Map<string, number>();
  const watchSeen = { revision: 0, progress: 0 };
  const open = new Set<AbortController>();
  const frozen = new Set<AbortController>();
  let down = false;
  const wrapped: typeof fetch = (input, init) => {
    const url = new URL(input instanceof Request ? input.url : String(input));
    counts.set(url.pathname, (counts.get(url.pathname) ?? 0) + 1);
    if (down) return Promise.reject(new TypeError("network is down (test partition)"));
    const controller = new AbortController();
    open.add(controller);
    const signal = init?.signal
      ? AbortSignal.any([init.signal, controller.signal])
      : controller.signal;
    return fetch(input, { ...init, signal }).then((response) => {
      if (response.body === null) {
        open.delete(controller);
        return response;
      }
      const readWatch = url.pathname === "/v3/watch" ? watchReader(watchSeen) : undefined;
      const body = response.body.pipeThrough(
        new TransformStream({
          // A frozen connection stays open and silent, like a half-open TCP connection.
          transform: (chunk, stream) => {
            if (frozen.has(controller)) return;
            readWatch?.(chunk);
            stream.enqueue(chunk);
          },
          flush: () => void open.delete(controller),
        }),
      );
      return new Response(body, { status: response.status, headers: response.headers });
    }, (error) => {
      open.delete(controller);
      throw error;
    });
  };
  return {
    fetch: wrapped,
    count: (path: string) => counts.get(path) ?? 0,
    /** The highest revision seen in a watch response header. */
    watchRevision: () => watchSeen.revision,
    /** Progress notifications delivered on watch streams. */
    progressNotifications: () => watchSeen.progress,
    cut() {
      down = true;
      for (const controller of open) {
        controller.abort(new TypeError("connection reset (test partition)"));
      }
      open.clear();
    },
    heal() {
      down = false;
    },
    /** Open responses stop delivering data but stay open; new requests work. */
    freeze() {
      for (const controller of open) frozen.add(controller);
    },
  };
}

/** Reads etcd's JSON watch stream (one message a line) into `seen`. */
function watchReader(seen: { revision: number; progress: number }) {
  const decoder = new TextDecoder();
  let buffered = "";
  return (chunk: Uint8Array) => {
    buffered += decoder.decode(chunk, { stream: true });
    const lines = buffered.split("\n");
    buffered = lines.pop()!;
    for (const line of lines) {
      let result: {
        header?: { revision?: string };
        events?: unknown[];
        created?: boolean;
        canceled?: boolean;
      };
      try {
        result = JSON.parse(line).result ?? {};
      } catch {
        continue;
      }
      seen.revision = Math.max(seen.revision, Number(result.header?.revision ?? 0));
      const progress = !result.created && !result.canceled && (result.events ?? []).length === 0;
      if (progress) seen.progress++;
    }
  };
}

const etcdRequirement = [command("etcd", "etcd-server")];
const noEnv = { prefix: "APP", vars: {} };
const fast = { initial: 20, max: 200 };

testWith("etcdSource() reads and watches a key prefix", etcdRequirement, async (t) => {
  await using etcd = await startEtcd();
  await etcd.put("/app/dns/port", "5300");
  await etcd.put("/app/upstreams/0", "1.1.1.1:53");
  await etcd.put("/app/upstreams/1", "9.9.9.9:53");
  await etcd.put("/other/dns/port", "1");
  await using config = await createConfig({
    schema,
    env: noEnv,
    remote: [etcdSource({ endpoints: [etcd.endpoint], prefix: "/app/", backoff: fast })],
  });

  await t.step("the range read is merged and coerced to the schema's types", () => {
    assert.equal(config.get("dns.port"), 5300);
    assert.deepEqual(config.get("upstreams"), ["1.1.1.1:53", "9.9.9.9:53"]);
    assert.match(
      String(config.explain("dns.port")),
      /^dns\.port = 5300 from etcd key \/app\/dns\/port \(revision 2\)$/,
    );
  });

  await config.watch();
  const changes: string[][] = [];
  config.on("change", (event) => changes.push(event.changes.map((c) => c.path)));

  await t.step("a put is one change event with the diff", async () => {
    await changeAfter(config, () => etcd.put("/app/dns/cache/size", "42"));
    assert.equal(config.get("dns.cache.size"), 42);
    assert.deepEqual(changes.at(-1), ["dns.cache.size"]);
  });

  await t.step("a put that changes nothing emits nothing", async () => {
    const before = changes.length;
    await etcd.put("/app/dns/cache/size", "42");
    await etcd.put("/other/x", "unrelated");
    // Barrier: the watch delivers in revision order, so an event for the puts above comes first.
    await changeAfter(config, () => etcd.put("/app/dns/cache/size", "43"), "after them");
    assert.equal(changes.length, before + 1);
    assert.deepEqual(changes.at(-1), ["dns.cache.size"]);
  });

  await t.step("a delete falls back to the lower layers", async () => {
    await changeAfter(config, () => etcd.delete("/app/dns/cache/size"));
    assert.equal(config.get("dns.cache.size"), 100);
  });

  await t.step("an invalid value keeps the last good config and names the etcd key", async () => {
    const reported = await errorAfter(config, () => etcd.put("/app/dns/port", "99999"));
    assert.match(
      reported.message,
      /etcd key \/app\/dns\/port \(revision \d+\): dns\.port: expected integer >= 1 and <= 65535, got 99999/,
    );
    assert.equal(config.get("dns.port"), 5300);
    await changeAfter(config, () => etcd.put("/app/dns/port", "5301"));
    assert.equal(config.get("dns.port"), 5301);
  });

  await t.step("an unknown key under the prefix is rejected with a did-you-mean", async () => {
    const reported = await errorAfter(config, () => etcd.put("/app/dns/prot", "53"));
    assert.match(
      reported.message,
      /^etcd key \/app\/dns\/prot \(revision \d+\): dns\.prot: unknown key, did you mean dns\.port\?$/,
    );
    assert.equal(config.get("dns.port"), 5301);
  });
});

testWith("etcdSource() watches one key holding a YAML document", etcdRequirement, async (t) => {
  await using etcd = await startEtcd();
  await etcd.put("/app/config", "dns:\n  port: 5300\n");
  await using config = await createConfig({
    schema,
    env: noEnv,
    remote: [etcdSource({ endpoints: [etcd.endpoint], key: "/app/config", backoff: fast })],
  });
  await config.watch();
  assert.equal(config.get("dns.port"), 5300);
  assert.match(
    String(config.explain("dns.port")),
    /from etcd key \/app\/config:2:3 \(revision 2\)/,
  );

  await t.step("garbage keeps the last good config and reports key:line:col", async () => {
    const reported = await errorAfter(
      config,
      () => etcd.put("/app/config", "dns:\n  port: [5300\n"),
    );
    assert.equal(reported.code, "parse");
    assert.match(reported.message, /^etcd key \/app\/config \(revision 3\):3:1: /);
    assert.equal(config.get("dns.port"), 5300);
  });

  await t.step("a good document after garbage is applied", async () => {
    const event = await changeAfter(
      config,
      () => etcd.put("/app/config", "dns:\n  port: 5400\n  cache:\n    size: 7\n"),
    );
    assert.deepEqual(event.changes.map((c) => c.path), ["dns.port", "dns.cache.size"]);
  });
});

testWith(
  "etcdSource() survives etcd restarts, partitions and compaction",
  etcdRequirement,
  async (t) => {
    await using etcd = await startEtcd({ progressNotifyInterval: "300ms" });
    await etcd.put("/app/dns/port", "5300");
    const net = partitionableFetch();
    await using config = await createConfig({
      schema,
      env: noEnv,
      fetch: net.fetch,
      remote: [etcdSource({ endpoints: [etcd.endpoint], prefix: "/app/", backoff: fast })],
    });
    const errors: string[] = [];
    config.on("error", (error) => errors.push(error.message));
    await config.watch();

    await t.step("a restart of etcd mid-watch resumes the watch without re-reading", async () => {
      await pollUntil(() => net.count("/v3/watch") === 1, "the watch");
      await etcd.stop();
      await pollUntil(() => errors.length > 0, "an error while etcd is down");
      await etcd.start();
      await changeAfter(
        config,
        () => etcd.put("/app/dns/port", "5301"),
        "after the restart",
        10_000,
      );
      assert.equal(config.get("dns.port"), 5301);
      assert.equal(net.count("/v3/kv/range"), 1, "resumed from revision + 1, no second range read");
    });

    await t.step("changes made during a partition arrive after it heals", async () => {
      net.cut();
      await etcd.put("/app/dns/cache/size", "11");
      await etcd.put("/app/dns/cache/size", "12");
      const next = waitFor((fn) => config.on("change", fn), "the change after healing", 10_000);
      net.heal();
      const event = await next as { changes: { path: string; after: unknown }[] };
      assert.deepEqual(event.changes, [{ path: "dns.cache.size", before: 100, after: 12 }]);
      assert.equal(net.count("/v3/kv/range"), 1, "replayed from history, no range read");
    });

    await t.step(
      "progress notifications advance the resume revision past a compaction",
      async () => {
        const ranges = net.count("/v3/kv/range");
        // Writes outside the prefix advance the store; only progress notifications tell the watcher.
        let revision = 0;
        for (let i = 0; i < 3; i++) revision = await etcd.put("/elsewhere/x", String(i));
        await pollUntil(
          () => net.watchRevision() >= revision,
          `a progress notification at revision ${revision}`,
        );
        net.cut();
        await etcd.compact(revision);
        const watches = net.count("/v3/watch");
        net.heal();
        await pollUntil(() => net.count("/v3/watch") > watches, "the watch to resume");
        // Barrier: a change delivered by the resumed watch; a re-read would have come before it.
        await changeAfter(
          config,
          () => etcd.put("/app/dns/cache/size", "13"),
          "over the resumed watch",
        );
        assert.equal(config.get("dns.cache.size"), 13);
        assert.equal(net.count("/v3/kv/range"), ranges, "resumed after the compacted revision");
      },
    );

    await t.step(
      "compaction of a needed revision re-reads the range and emits the diff",
      async () => {
        const ranges = net.count("/v3/kv/range");
        net.cut();
        await etcd.put("/app/dns/port", "6000");
        const revision = await etcd.delete("/app/dns/cache/size");
        await etcd.compact(revision);
        const next = waitFor(
          (fn) => config.on("change", fn),
          "the change after compaction",
          10_000,
        );
        net.heal();
        const event = await next as { changes: { path: string; after: unknown }[] };
        assert.deepEqual(
          event.changes.map((c) => [c.path, c.after]),
          [["dns.port", 6000], ["dns.cache.size", 100]],
        );
        assert.equal(net.count("/v3/kv/range"), ranges + 1, "one range read after compaction");
      },
    );
  },
);

testWith("etcdSource() authenticates with a token", etcdRequirement, async () => {
  await using etcd = await startEtcd();
  await etcd.put("/app/dns/port", "5353");
  await etcd.enableAuth("s3cret");
  await etcd.put("/app/dns/port", "5400");
  await assert.rejects(
    createConfig({
      schema,
      env: noEnv,
      remote: [etcdSource({ endpoints: [etcd.endpoint], prefix: "/app/", required: true })],
    }),
    /etcd .*\/app\/.*(user name|token|permission|401|auth)/i,
  );
  await using config = await createConfig({
    schema,
    env: noEnv,
    remote: [etcdSource({
      endpoints: [etcd.endpoint],
      prefix: "/app/",
      username: "root",
      password: "s3cret",
      backoff: fast,
    })],
  });
  assert.equal(config.get("dns.port"), 5400);
  await config.watch();
  const errors: string[] = [];
  config.on("error", (error) => errors.push(error.message));
  await changeAfter(config, () => etcd.put("/app/dns/port", "5500"));
  assert.equal(config.get("dns.port"), 5500);
  // Simple tokens live in etcd's memory: after a restart the old token is invalid and the
  // source must authenticate again to resume.
  await etcd.stop();
  await etcd.start();
  await changeAfter(
    config,
    () => etcd.put("/app/dns/port", "5600"),
    "after re-authenticating",
    10_000,
  );
  assert.equal(config.get("dns.port"), 5600);
  assert.ok(errors.length < 20, `recovered after ${errors.length} errors`);
});

testWith("etcdSource() unreachable at start", etcdRequirement, async (t) => {
  await using etcd = await startEtcd();
  await etcd.put("/app/dns/port", "5300");

  await t.step("a required source fails createConfig()", async () => {
    const net = partitionableFetch();
    net.cut();
    await assert.rejects(
      createConfig({
        schema,
        env: noEnv,
        fetch: net.fetch,
        remote: [etcdSource({ endpoints: [etcd.endpoint], prefix: "/app/", required: true })],
      }),
      /network is down.*required source/,
    );
  });

  await t.step("endpoints are tried in turn", async () => {
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const dead = `http://127.0.0.1:${(listener.addr as Deno.NetAddr).port}`;
    listener.close();
    await using config = await createConfig({
      schema,
      env: noEnv,
      remote: [etcdSource({ endpoints: [dead, etcd.endpoint], prefix: "/app/", required: true })],
    });
    assert.equal(config.get("dns.port"), 5300);
    await assert.rejects(
      createConfig({
        schema,
        env: noEnv,
        remote: [etcdSource({ endpoints: [dead, dead], prefix: "/app/", required: true })],
      }),
      /unreachable \(http:\/\/127\.0\.0\.1:\d+: .*; http:\/\/127\.0\.0\.1:\d+: .*\) \(required source\)/,
    );
  });

  await t.step("an optional source starts from the other layers and keeps retrying", async () => {
    const net = partitionableFetch();
    net.cut();
    await using config = await createConfig({
      schema,
      env: noEnv,
      fetch: net.fetch,
      remote: [etcdSource({ endpoints: [etcd.endpoint], prefix: "/app/", backoff: fast })],
    });
    config.on("error", () => {});
    assert.equal(config.get("dns.port"), 5353);
    await pollUntil(() => net.count("/v3/kv/range") >= 3, "retries");
    const next = waitFor((fn) => config.on("change", fn), "the change once reachable");
    net.heal();
    await next;
    assert.equal(config.get("dns.port"), 5300);
  });
});

testWith(
  "Config disposal stops every watcher and leaves no etcd process behind",
  etcdRequirement,
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "triad-config-leak-" });
    await Deno.writeTextFile(`${dir}/app.yaml`, "dns:\n  port: 5300\n");
    let pid: number;
    let changes = 0;
    let errors = 0;
    const requestsAfterDispose: string[] = [];
    let disposed = false;
    // A wrapping fetch whose bodies do not error when the request is aborted (the body is piped
    // through a TransformStream): disposal must not wait for them.
    const countingFetch: typeof fetch = async (input, init) => {
      if (disposed) requestsAfterDispose.push(String(input));
      const response = await fetch(input, init);
      if (response.body === null) return response;
      return new Response(response.body.pipeThrough(new TransformStream()), {
        status: response.status,
        headers: response.headers,
      });
    };
    try {
      await using etcd = await startEtcd();
      pid = etcd.pid;
      await etcd.put("/app/dns/cache/size", "5");
      // A live twin sees what the disposed one must not: the barrier for "nothing happened".
      await using twin = await createConfig({
        schema,
        env: noEnv,
        files: [`${dir}/app.yaml`],
        debounce: 20,
        remote: [etcdSource({ endpoints: [etcd.endpoint], prefix: "/app/", backoff: fast })],
      });
      await twin.watch();
      let twinErrors = 0;
      twin.on("error", () => twinErrors++);
      {
        await using config = await createConfig({
          schema,
          env: noEnv,
          files: [`${dir}/app.yaml`],
          fetch: countingFetch,
          debounce: 20,
          remote: [etcdSource({ endpoints: [etcd.endpoint], prefix: "/app/", backoff: fast })],
        });
        await config.watch();
        config.on("change", () => changes++);
        config.on("error", () => errors++);
        assert.equal(config.get("dns.port"), 5300);
        assert.equal(config.get("dns.cache.size"), 5);
      }
      disposed = true;
      await Deno.writeTextFile(`${dir}/app.yaml`, "dns:\n  port: 5301\n");
      await etcd.put("/app/dns/cache/size", "6");
      await pollUntil(
        () => twin.get("dns.port") === 5301 && twin.get("dns.cache.size") === 6,
        "the live twin to see both changes",
      );
      await etcd.stop(); // a live watcher now reconnects in a loop
      await pollUntil(() => twinErrors >= 2, "the live twin to fail to reconnect twice");
      assert.equal(changes, 0, "no change after disposal");
      assert.equal(errors, 0, "no error after disposal");
      assert.deepEqual(requestsAfterDispose, [], "no request after disposal");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
    assert.throws(() => Deno.statSync(`/proc/${pid}`), Deno.errors.NotFound, "etcd exited");
  },
);

testWith("etcdSource() reconnects a silent watch after idleTimeout", etcdRequirement, async () => {
  await using etcd = await startEtcd({ progressNotifyInterval: "200ms" });
  await etcd.put("/app/dns/port", "5300");
  const net = partitionableFetch();
  await using config = await createConfig({
    schema,
    env: noEnv,
    fetch: net.fetch,
    remote: [etcdSource({
      endpoints: [etcd.endpoint],
      prefix: "/app/",
      idleTimeout: 800,
      backoff: fast,
    })],
  });
  const errors: string[] = [];
  config.on("error", (error) => errors.push(error.message));
  await config.watch();
  await pollUntil(() => net.count("/v3/watch") === 1, "the watch");
  // Five progress notifications, 200 ms apart, span longer than idleTimeout: they keep it alive.
  await pollUntil(() => net.progressNotifications() >= 5, "five progress notifications");
  assert.equal(net.count("/v3/watch"), 1, "progress notifications count as traffic");
  net.freeze();
  await changeAfter(
    config,
    () => etcd.put("/app/dns/port", "5301"),
    "over a new connection",
  );
  assert.equal(config.get("dns.port"), 5301);
  assert.equal(net.count("/v3/watch"), 2);
  assert.match(errors.join("\n"), /watch silent for 800 ms/);
});
