/**
 * @triad/config's Consul source against tests/servers/consul.ts, a server implementing Consul's
 * documented KV blocking-query protocol (Consul has no package in our registries).
 */
import assert from "node:assert/strict";
import { z } from "zod";
import { type ConfigError, consulSource, createConfig } from "@triad/config";
import { startConsul } from "./servers/consul.ts";
import { pollUntil, waitFor } from "./wait_for.ts";

const schema = z.object({
  dns: z.object({
    port: z.number().int().min(1).max(65535).default(5353),
    cache: z.object({ size: z.number().int().positive().default(100) }).prefault({}),
  }).prefault({}),
});

const noEnv = { prefix: "APP", vars: {} };
const fast = { initial: 20, max: 200 };

Deno.test("consulSource() follows a key prefix with blocking queries", async (t) => {
  await using consul = await startConsul({ token: "t0ken" });
  consul.put("app/dns/port", "5300");
  await using config = await createConfig({
    schema,
    env: noEnv,
    remote: [consulSource({
      address: consul.address,
      prefix: "app/",
      token: "t0ken",
      wait: "2s",
      backoff: fast,
    })],
  });
  assert.equal(config.get("dns.port"), 5300);
  assert.match(String(config.explain("dns.port")), /from consul key app\/dns\/port \(revision 2\)/);
  const changes: string[][] = [];
  config.on("change", (event) => changes.push(event.changes.map((c) => c.path)));
  const errors: string[] = [];
  config.on("error", (error) => errors.push(error.message));
  await config.watch();

  await t.step("a put wakes the blocking query and emits one change", async () => {
    await pollUntil(
      () => consul.requests.some((r) => r.method === "GET" && r.index > 0),
      "the first blocking query",
    );
    const next = waitFor((fn) => config.on("change", fn), "the change");
    consul.put("app/dns/cache/size", "64");
    await next;
    assert.equal(config.get("dns.cache.size"), 64);
    assert.deepEqual(changes, [["dns.cache.size"]]);
    const blocking = consul.requests.filter((r) => r.method === "GET" && r.index > 0);
    assert.ok(blocking.length >= 1, "uses ?index= blocking queries");
  });

  await t.step("an index change without a content change emits nothing", async () => {
    consul.touch();
    const index = consul.put("app/dns/port", "5300"); // same value again
    // The client has read both and blocks again on the newest index.
    await pollUntil(
      () => consul.requests.some((r) => r.method === "GET" && r.index >= index),
      `a blocking query at index ${index}`,
    );
    assert.deepEqual(changes, [["dns.cache.size"]]);
    assert.deepEqual(errors, []);
    // Barrier: a real change after them arrives through the same queue, so an event for either
    // of them would come first.
    const next = waitFor((fn) => config.on("change", fn), "the change after them");
    consul.put("app/dns/cache/size", "65");
    await next;
    assert.deepEqual(changes, [["dns.cache.size"], ["dns.cache.size"]]);
    assert.deepEqual(errors, []);
  });

  await t.step(
    "an index that goes backwards is reset to 0 and changes are still seen",
    async () => {
      consul.rewindIndex(1);
      const before = consul.requests.length;
      const next = waitFor((fn) => config.on("change", fn), "the change after the rewind", 8000);
      // The open query (index > server index) times out after wait, the client then restarts at 0.
      await pollUntil(
        () => consul.requests.slice(before).some((r) => r.method === "GET" && r.index === 0),
        "a query with index 0 after the rewind",
        8000,
      );
      consul.put("app/dns/port", "5301");
      await next;
      assert.equal(config.get("dns.port"), 5301);
      const after = consul.requests.slice(before).filter((r) => r.method === "GET");
      assert.ok(after.some((r) => r.index === 0), "a query with index 0 after the rewind");
    },
  );

  await t.step("an index of 0 from the server is never used, and does not spin", async () => {
    consul.forceIndex(0);
    const before = consul.requests.length;
    const started = performance.now();
    const gets = () => consul.requests.slice(before).filter((r) => r.method === "GET");
    await pollUntil(() => gets().length >= 8, "eight queries while the index is 0");
    const seconds = (performance.now() - started) / 1000;
    const during = gets();
    consul.forceIndex(undefined);
    assert.ok(during.every((r) => r.index >= 1), `indexes used: ${during.map((r) => r.index)}`);
    const rate = during.length / seconds;
    assert.ok(rate < 25, `${during.length} queries in ${seconds.toFixed(2)} s: rate-limited`);
  });

  await t.step("a wrong token is reported and the last good config stays", async () => {
    await using bad = await createConfig({
      schema,
      env: noEnv,
      remote: [consulSource({ address: consul.address, prefix: "app/", token: "nope" })],
    });
    assert.equal(bad.get("dns.port"), 5353);
    await assert.rejects(
      createConfig({
        schema,
        env: noEnv,
        remote: [consulSource({ address: consul.address, prefix: "app/", required: true })],
      }),
      /consul .* app\/: GET \/v1\/kv\/app\/ answered 403: Permission denied/,
    );
  });
});

Deno.test("consulSource() with one key holding a document", async (t) => {
  await using consul = await startConsul();
  consul.put("app/config", '{"dns": {"port": 5300}}');
  await using config = await createConfig({
    schema,
    env: noEnv,
    remote: [
      consulSource({ address: consul.address, key: "app/config", wait: "2s", backoff: fast }),
    ],
  });
  await config.watch();
  assert.equal(config.get("dns.port"), 5300);

  await t.step("garbage keeps the last good config and names key:line:col", async () => {
    const error = waitFor<ConfigError>((fn) => config.on("error", fn), "the error");
    consul.put("app/config", "dns:\n  port: {\n");
    const reported = await error;
    assert.match(reported.message, /^consul key app\/config \(revision \d+\):\d+:\d+: /);
    assert.equal(config.get("dns.port"), 5300);
  });

  await t.step("a valid document is applied; deleting the key falls back", async () => {
    let next = waitFor((fn) => config.on("change", fn), "the change");
    consul.put("app/config", "dns:\n  port: 5400\n");
    await next;
    assert.equal(config.get("dns.port"), 5400);
    next = waitFor((fn) => config.on("change", fn), "the change");
    consul.delete("app/config");
    await next;
    assert.equal(config.get("dns.port"), 5353);
  });
});

Deno.test("consulSource() unreachable at start keeps retrying", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  await using config = await createConfig({
    schema,
    env: noEnv,
    remote: [consulSource({ address: `http://127.0.0.1:${port}`, prefix: "app/", backoff: fast })],
  });
  const errors: string[] = [];
  config.on("error", (error) => errors.push(error.message));
  assert.equal(config.get("dns.port"), 5353);
  await pollUntil(() => errors.length >= 2, "two failed attempts");
  assert.ok(errors.length >= 2, `retried: ${errors.length} errors`);
  assert.match(errors[0]!, /consul http:\/\/127\.0\.0\.1:\d+ app\/: /);
});
