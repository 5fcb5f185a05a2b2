import assert from "node:assert/strict";
import { z } from "zod";
import type { Layer } from "./layer.ts";
import { runPipeline } from "./_pipeline.ts";
import type { PipelineOptions } from "./_pipeline.ts";
import { SchemaInfo, standardJsonSchema } from "./_schema_info.ts";

const schema = z.object({
  port: z.number().int().positive().default(53),
  name: z.string().default("dns"),
  password: z.string().meta({ writeOnly: true }).optional(),
});
const options: PipelineOptions = {
  schema,
  info: new SchemaInfo(standardJsonSchema(schema)),
  envPrefix: "APP",
};

function layer(kind: Layer["kind"], tree: Record<string, unknown>, coerce = false): Layer {
  const origins = new Map(
    Object.keys(tree).map((key) => [key, { layer: "env" as const, name: `APP_${key}` }]),
  );
  return { kind, name: kind, tree, origins, ...(coerce ? { coerce } : {}) } as Layer;
}

Deno.test("runPipeline() merges in order, validates, and diffs against the previous", async () => {
  const first = await runPipeline(
    [layer("defaults", { port: 1 }), layer("env", { port: 2 })],
    undefined,
    options,
  );
  assert.deepEqual(first.next.value, { port: 2, name: "dns" });
  assert.deepEqual(first.changes, []);
  assert.ok(Object.isFrozen(first.next.value));
  const second = await runPipeline([layer("defaults", { port: 1 })], first.next, options);
  assert.deepEqual(second.changes, [{ path: "port", before: 2, after: 1 }]);
});

Deno.test("runPipeline() coerces the strings of a layer that asks for it", async () => {
  const { next } = await runPipeline([layer("remote", { port: "5300" }, true)], undefined, options);
  assert.equal((next.value as { port: number }).port, 5300);
});

Deno.test("runPipeline() names unknown keys and invalid values with their origin", async () => {
  await assert.rejects(
    runPipeline([layer("env", { prot: 1 })], undefined, options),
    /env APP_prot: prot: unknown key, did you mean port\?/,
  );
  await assert.rejects(
    runPipeline([layer("env", { port: -1 })], undefined, options),
    /env APP_port: port: expected integer > 0, got -1/,
  );
  await assert.rejects(
    runPipeline([layer("env", { password: 7 })], undefined, options),
    (error: Error) =>
      !error.message.includes("7") && /password: .*\[redacted\]/.test(error.message),
  );
  // Without strict, unknown keys pass to the schema (zod strips them).
  const { next } = await runPipeline([layer("env", { prot: 1 })], undefined, {
    ...options,
    strict: false,
  });
  assert.deepEqual(next.value, { port: 53, name: "dns" });
});

Deno.test("runPipeline() changes none of its arguments", async () => {
  const layers = [layer("defaults", { port: 1 }), layer("env", { port: "2" }, true)];
  const before = structuredClone(layers.map((l) => [l.tree, [...l.origins]]));
  const first = await runPipeline(layers, undefined, options);
  const frozen = first.next;
  await runPipeline(layers, frozen, options);
  assert.deepEqual(layers.map((l) => [l.tree, [...l.origins]]), before);
  assert.equal(first.next, frozen);
});
