import assert from "node:assert/strict";
import { z } from "zod";
import { denoFileSystem } from "../file_system.ts";
import { Secret } from "../secret.ts";
import { SchemaInfo, standardJsonSchema } from "../_schema_info.ts";
import { buildEnvLayer, EnvSource } from "./env.ts";
import { createLogger } from "@triad/core";

const info = new SchemaInfo(standardJsonSchema(z.object({
  dns: z.object({ cacheSize: z.number().int(), enabled: z.boolean() }),
  tags: z.array(z.string()),
  password: z.string().optional(),
})));

Deno.test("the env source binds every key, coerced, with the variable as origin", async () => {
  const { layer, issues, unknown } = await buildEnvLayer(
    info,
    {
      APP_DNS__CACHE_SIZE: "500",
      APP_DNS__ENABLED: "false",
      APP_TAGS: "a,b",
      OTHER: "x",
    },
    "APP",
    denoFileSystem,
    new Set(),
  );
  assert.deepEqual(issues, []);
  assert.deepEqual(unknown, []);
  assert.deepEqual(layer.tree, { dns: { cacheSize: 500, enabled: false }, tags: ["a", "b"] });
  assert.deepEqual(layer.origins.get("dns.cacheSize"), {
    layer: "env",
    name: "APP_DNS__CACHE_SIZE",
  });
});

Deno.test("the env source reads NAME_FILE into a Secret and reports unknown variables", async () => {
  const dir = await Deno.makeTempDir({ prefix: "triad-env-source-" });
  try {
    await Deno.writeTextFile(`${dir}/pw`, "hunter2\n");
    const { layer, issues, unknown } = await buildEnvLayer(
      info,
      {
        APP_PASSWORD_FILE: `${dir}/pw`,
        APP_DNS__CACHE_SIZ: "1",
        APP_PROFILE: "prod",
      },
      "APP",
      denoFileSystem,
      new Set(["APP_PROFILE"]),
    );
    assert.deepEqual(issues, []);
    assert.ok(layer.tree.password instanceof Secret);
    assert.equal((layer.tree.password as Secret).reveal(), "hunter2");
    assert.deepEqual(unknown.map((u) => [u.name, u.hint]), [
      ["APP_DNS__CACHE_SIZ", "APP_DNS__CACHE_SIZE"],
    ]);
    const missing = await buildEnvLayer(
      info,
      {
        APP_PASSWORD_FILE: `${dir}/nope`,
      },
      "APP",
      denoFileSystem,
      new Set(),
    );
    assert.match(missing.issues.map((i) => i.message).join("\n"), /nope/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("EnvSource warns once per unknown variable, or fails on them when strict", async () => {
  const lines: string[] = [];
  const options = {
    info,
    enabled: true,
    prefix: "APP",
    vars: { APP_DNS__CACHE_SIZ: "1" },
    strict: false,
    logger: () => createLogger({ write: (line) => lines.push(line) }),
    fs: denoFileSystem,
  };
  const source = new EnvSource(options);
  assert.deepEqual((await source.load()).tree, {});
  await source.load();
  assert.equal(lines.length, 1, lines.join("\n"));
  assert.match(lines[0]!, /unknown environment variable APP_DNS__CACHE_SIZ ignored; did you mean/);
  await assert.rejects(
    new EnvSource({ ...options, strict: true }).load(),
    /unknown environment variable APP_DNS__CACHE_SIZ, did you mean APP_DNS__CACHE_SIZE\?/,
  );
  assert.deepEqual(new EnvSource({ ...options, enabled: false }).vars(), {});
});
