import assert from "node:assert/strict";
import { z } from "zod";
import { SchemaInfo, standardJsonSchema } from "../_schema_info.ts";
import { buildFlagsLayer, FlagsSource } from "./flags.ts";

const info = new SchemaInfo(standardJsonSchema(z.object({
  dns: z.object({ cacheSize: z.number().int(), enabled: z.boolean() }),
  tags: z.array(z.string()),
  listen: z.string(),
})));
const names = { profile: "profile", config: "config", aliases: { l: "listen" } };

Deno.test("the flags source parses values, booleans, repeats, aliases and positionals", () => {
  const result = buildFlagsLayer(info, [
    "--dns.cache-size=10",
    "--no-dns.enabled",
    "--tags",
    "a",
    "--tags=b",
    "--l",
    "[::1]:53",
    "serve",
    "--profile",
    "prod",
    "--config",
    "x.yaml",
  ], names);
  assert.deepEqual(result.issues, []);
  assert.deepEqual(result.layer.tree, {
    dns: { cacheSize: 10, enabled: false },
    tags: ["a", "b"],
    listen: "[::1]:53",
  });
  assert.deepEqual(result.layer.origins.get("listen"), { layer: "flags", flag: "--l" });
  assert.equal(result.profile, "prod");
  assert.deepEqual(result.configFiles, ["x.yaml"]);
  assert.deepEqual(result.positionals, ["serve"]);
  assert.equal(result.help, false);
});

Deno.test("the flags source reports unknown flags and bad values, and sees --help", () => {
  const result = buildFlagsLayer(info, ["--dns.cache-siz", "1", "--dns.cache-size=x", "-h"], names);
  const messages = result.issues.map((i) => i.message).join("\n");
  assert.match(messages, /unknown flag --dns\.cache-siz, did you mean --dns\.cache-size\?/);
  assert.match(messages, /--dns\.cache-size/);
  assert.equal(result.help, true);
});

Deno.test("FlagsSource keeps what the command line said besides values; load() fails on errors", async () => {
  const source = new FlagsSource(info, ["--listen", "a:1", "run", "--profile=dev"], names);
  assert.deepEqual((await source.load()).tree, { listen: "a:1" });
  assert.deepEqual([source.profile, source.positionals, source.help], ["dev", ["run"], false]);
  await assert.rejects(new FlagsSource(info, ["--nope"], names).load(), /unknown flag --nope/);
});
