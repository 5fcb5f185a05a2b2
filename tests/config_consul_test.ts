/**
 * @triad/config's Consul source against tests/servers/consul.ts, a server implementing Consul's
 * documented KV blocking-query protocol (Consul has no package in our registries).
 */
import assert from "node:assert/strict";
import { z } from "zod";
import { type ConfigError, consulSource, createConfig } from "@triad/config";
import { startConsul } from "./servers/consul.ts";
import { waitFor } from "./wait_for.ts";

const schema = z.object({
  dns: z.object({
    port: z.number().int().min(1).max(65535).default(5353),
    cache: z.object({ size: z.number().int().positive().default(100) }).prefault({}),
  }).prefault({}),
});

const noEnv = { prefix: "APP", vars: {} };
const fast = { initial: 20, max: 200 };

const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

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
    await pause(100);
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
    consul.put("app/dns/port", "5300"); // same value again
    await pause(300);
    assert.deepEqual(changes, [["dns.cache.size"]]);
    assert.deepEqual(errors, []);
  });

  await t.step(
    "an index that goes backwards is reset to 0 and changes are still seen",
    async () => {
      consul.rewindIndex(1);
      const before = consul.requests.length;
      const next = waitFor((fn) => config.on("change", fn), "the change after the rewind", 8000);
      // The open query (index > server index) times out after wait, the client then restarts at 0.
      await pause(2400);
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
    await pause(1000);
    const during = consul.requests.slice(before).filter((r) => r.method === "GET");
    consul.forceIndex(undefined);
    assert.ok(during.every((r) => r.index >= 1), `indexes used: ${during.map((r) => r.index)}`);
    assert.ok(during.length < 25, `${during.length} queries in 1 s: rate-limited`);
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
  await pause(300);
  assert.ok(errors.length >= 2, `retried: ${errors.length} errors`);
  assert.match(errors[0]!, /consul http:\/\/127\.0\.0\.1:\d+ app\/: /);
});
