import assert from "node:assert/strict";
import { remoteLayer } from "./_remote.ts";
import type { RemoteEntry } from "./_remote.ts";

const entries = (list: [string, string][]) =>
  new Map<string, RemoteEntry>(list.map(([key, value]) => [key, { key, value, revision: 7 }]));

const remoteOrigin = (source: string, key: string) => ({
  layer: "remote",
  source,
  key,
  revision: 7,
});

Deno.test("a key prefix maps to a tree of strings to coerce, numeric segments index arrays", () => {
  const layer = remoteLayer(
    "etcd",
    "etcd /app/",
    { prefix: "/app/" },
    entries([
      ["/app/dns/port", "53"],
      ["/app/upstreams/1", "b"],
      ["/app/upstreams/0", "a"],
      ["/app/", "the prefix itself"],
    ]),
  );
  assert.equal(layer.coerce, true);
  assert.deepEqual(layer.tree, { dns: { port: "53" }, upstreams: ["a", "b"] });
  assert.deepEqual(layer.origins.get("dns.port"), remoteOrigin("etcd", "/app/dns/port"));
});

Deno.test("one key holds a document: parsed, origins at key:line:col, garbage names the key", () => {
  const layer = remoteLayer(
    "consul",
    "consul app/config",
    { key: "app/config" },
    entries([
      ["app/config", "dns:\n  port: 53\n"],
    ]),
  );
  assert.equal(layer.coerce, false);
  assert.deepEqual(layer.tree, { dns: { port: 53 } });
  assert.deepEqual(layer.origins.get("dns.port"), remoteOrigin("consul", "app/config:2:3"));
  assert.deepEqual(
    remoteLayer("consul", "c", { key: "app/config" }, entries([])).tree,
    {},
    "a missing key is an empty layer",
  );
  assert.throws(
    () => remoteLayer("consul", "c", { key: "k", format: "json" }, entries([["k", '{"a": ']])),
    (error: Error & { code?: string }) =>
      error.code === "parse" && /^consul key k \(revision 7\):1:/.test(error.message),
  );
});
