import assert from "node:assert/strict";
import { DefaultsSource } from "./defaults.ts";

Deno.test("DefaultsSource: a copy of the option, lowest layer, origin defaults", async () => {
  const option = { dns: { port: 53, upstreams: ["a"] } };
  const source = new DefaultsSource(option);
  option.dns.port = 1;
  option.dns.upstreams.push("b");
  const layer = await source.load();
  assert.equal(layer.kind, "defaults");
  assert.deepEqual(layer.tree, { dns: { port: 53, upstreams: ["a"] } });
  assert.deepEqual(layer.origins.get(""), { layer: "defaults" });
  assert.deepEqual((await new DefaultsSource(undefined).load()).tree, {});
});
