import assert from "node:assert/strict";
import { z } from "zod";
import { createConfig } from "./mod.ts";
import type { Source, SourceLayer } from "./mod.ts";
import { waitFor } from "../tests/wait_for.ts";

const schema = z.object({
  port: z.number().int().default(53),
  name: z.string().default("dns"),
});

function layerOf(kind: SourceLayer["kind"], tree: Record<string, unknown>): SourceLayer {
  return {
    kind,
    name: "mine",
    tree,
    origins: new Map([["", { layer: "remote", source: "mine", key: "/" }]]),
    coerce: true,
  };
}

Deno.test("a Source of one's own is loaded, reloaded, and slotted by its layer's kind", async () => {
  let port = "8053";
  let loads = 0;
  const mine: Source = {
    name: "mine",
    load: () => {
      loads++;
      return Promise.resolve(layerOf("defaults", { port, name: "low" }));
    },
  };
  await using config = await createConfig({
    schema,
    env: { prefix: "APP", vars: { APP_NAME: "from-env" } },
    sources: [mine],
  });
  assert.equal(config.get("port"), 8053);
  assert.equal(config.get("name"), "from-env", "a defaults-kind layer stays below env");
  await config.watch(); // no watch(): nothing to follow
  port = "8054";
  const changes = await config.reload();
  assert.deepEqual(changes.map((c) => c.path), ["port"]);
  assert.equal(loads, 2);
});

Deno.test("a Source's secret references are resolved at start and by reload(), as on watch", async () => {
  const vars: Record<string, string> = { APP_TOKEN: "s3cret" };
  const mine: Source = {
    name: "mine",
    load: () => Promise.resolve(layerOf("remote", { name: "${env:APP_TOKEN}" })),
  };
  await using config = await createConfig({
    schema,
    env: { prefix: "APP", vars },
    sources: [mine],
  });
  assert.equal(config.get("name"), "s3cret");
  vars.APP_TOKEN = "rotated";
  assert.deepEqual((await config.reload()).map((c) => c.path), ["name"]);
  assert.equal(config.get("name"), "rotated");
});

Deno.test("a Source's watch() hands over layers: one change event each, named by it", async () => {
  let push: ((layer: SourceLayer, cause?: string) => void) | undefined;
  const watched = Promise.withResolvers<void>();
  const mine: Source = {
    name: "mine",
    required: true,
    load: () => Promise.resolve(layerOf("remote", { port: "1" })),
    watch: (context, onLayer) => {
      push = onLayer;
      watched.resolve();
      return new Promise((resolve) => context.signal.addEventListener("abort", () => resolve()));
    },
  };
  const config = await createConfig({ schema, env: false, sources: [mine] });
  await config.watch();
  await watched.promise;
  const next = waitFor<{ cause: string }>((fn) => config.on("change", fn), "the change");
  push!(layerOf("remote", { port: "2" }));
  assert.equal((await next).cause, "mine");
  assert.equal(config.get("port"), 2);
  // A source may name the change itself, as the file source names the file.
  const named = waitFor<{ cause: string }>((fn) => config.on("change", fn), "the named change");
  push!(layerOf("remote", { port: "3" }), "mine key /port");
  assert.equal((await named).cause, "mine key /port");
  await config[Symbol.asyncDispose]();
});

Deno.test("a required Source that cannot load fails createConfig()", async () => {
  const broken: Source = {
    name: "broken",
    required: true,
    load: () => Promise.reject(new Error("no route")),
  };
  await assert.rejects(
    createConfig({ schema, env: false, sources: [broken] }),
    /no route \(required source\)/,
  );
});
