import assert from "node:assert/strict";
import { denoFileSystem } from "../file_system.ts";
import { startConsul } from "../../tests/servers/consul.ts";
import { consulSource } from "./consul.ts";

Deno.test("consulSource().load() reads a prefix over Consul's KV protocol", async () => {
  await using consul = await startConsul({ token: "t" });
  consul.put("app/dns/port", "5300");
  const source = consulSource({ address: consul.address, prefix: "app/", token: "t" });
  const context = { fetch, signal: new AbortController().signal, fs: denoFileSystem };
  const layer = await source.load(context);
  assert.deepEqual(layer, {
    kind: "remote",
    name: source.name,
    tree: { dns: { port: "5300" } },
    origins: layer.origins,
    coerce: true,
  });
  assert.equal(source.required, false);
  await assert.rejects(
    consulSource({ address: consul.address, prefix: "app/", token: "wrong" }).load(context),
    /answered 403/,
  );
});
