import assert from "node:assert/strict";
import { z } from "zod";
import {
  createConfig,
  envExample,
  exampleConfig,
  Secret,
  toJsonSchema,
  toOpenApiComponent,
} from "./mod.ts";

const upstream = z.object({ name: z.string(), address: z.string() }).meta({ id: "Upstream" });
const schema = z.object({
  listen: z.string().default("127.0.0.1:5353").describe("Address to serve on"),
  mode: z.enum(["fast", "safe"]).default("safe"),
  cache: z.object({
    size: z.number().int().positive().default(1000).describe("Maximum entries"),
    enabled: z.boolean().default(true),
  }).prefault({}),
  upstreams: z.array(upstream).default([{ name: "local", address: "127.0.0.1:53" }]),
  token: z.string().meta({ writeOnly: true }).transform((s) => new Secret(s)).optional(),
});

Deno.test("exampleConfig() writes a commented file that loads as it is", async () => {
  const yaml = exampleConfig(schema, { prefix: "DNS" });
  assert.match(
    yaml,
    /^# Address to serve on\n# string; env DNS_LISTEN; flag --listen\nlisten: 127\.0\.0\.1:5353\n/,
  );
  assert.match(yaml, /# one of "fast", "safe"; env DNS_MODE; flag --mode\nmode: safe\n/);
  assert.match(
    yaml,
    /cache:\n {2}# Maximum entries\n {2}# integer > 0; env DNS_CACHE__SIZE; flag --cache\.size\n {2}size: 1000\n/,
  );
  assert.match(yaml, /# string; env DNS_TOKEN; flag --token; secret\n# token: <string>\n/);
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/example.yaml`, yaml);
    await using config = await createConfig({ schema, files: [`${dir}/example.yaml`], env: false });
    assert.equal(config.get("cache.size"), 1000);
    assert.equal(config.get("upstreams.0.name"), "local");
    assert.equal(config.explain("cache.size").origin?.layer, "files");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("envExample() lists every variable with its type and default", () => {
  const text = envExample(schema, { prefix: "DNS" });
  assert.match(text, /# cache\.size: Maximum entries \(integer > 0\)\n# DNS_CACHE__SIZE=1000\n/);
  assert.match(text, /# token: \(string; or DNS_TOKEN_FILE=\/run\/secrets\/…\)\n# DNS_TOKEN=\n/);
  assert.match(text, /# DNS_UPSTREAMS=\[\{"name":"local","address":"127\.0\.0\.1:53"\}\]\n/);
});

Deno.test("toJsonSchema() and toOpenApiComponent() export the schema", () => {
  const json = toJsonSchema(schema, { $id: "https://example.com/dns.json" });
  assert.equal(json["$schema"], "https://json-schema.org/draft/2020-12/schema");
  assert.equal(json["$id"], "https://example.com/dns.json");
  const openapi = toOpenApiComponent(schema, "DnsConfig");
  const component = openapi.components.schemas.DnsConfig!;
  assert.equal(component["$schema"], undefined);
  const items =
    ((component["properties"] as Record<string, Record<string, unknown>>)["upstreams"]!)["items"];
  assert.deepEqual(items, { $ref: "#/components/schemas/Upstream" });
  assert.deepEqual(openapi.components.schemas.Upstream?.["required"], ["name", "address"]);
});
