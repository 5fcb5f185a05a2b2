import assert from "node:assert/strict";
import { denoFileSystem } from "../file_system.ts";
import type { ConfigIssue } from "../errors.ts";
import {
  FileSource,
  findConfigFiles,
  formatOfFile,
  parseConfigText,
  readConfigFiles,
} from "./file.ts";
import type { FilePlan, WatchTargets } from "./file.ts";
import type { ConfigError } from "../errors.ts";
import type { SourceLayer } from "../source.ts";
import { waitFor } from "../../tests/wait_for.ts";

async function tree(files: Record<string, string>): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "triad-file-source-" });
  for (const [name, text] of Object.entries(files)) {
    await Deno.mkdir(`${dir}/${name}`.slice(0, `${dir}/${name}`.lastIndexOf("/")), {
      recursive: true,
    });
    await Deno.writeTextFile(`${dir}/${name}`, text);
  }
  return dir;
}

/** TOML trees have null prototypes: compare contents. */
const plain = (value: unknown) => JSON.parse(JSON.stringify(value));
const watchTargets = (): WatchTargets => ({ dirs: new Set(), names: new Set() });

Deno.test("the file source searches paths, adds the profile's file, then the config directory", async () => {
  const dir = await tree({
    "a/other.yaml": "x: 0\n",
    "b/app.toml": "port = 1\n",
    "b/app.prod.toml": "port = 2\n",
    "c/app.yaml": "port: 9\n",
    "conf.d/20-b.json": '{"name": "b"}',
    "conf.d/10-a.yaml": "name: a\n",
    "conf.d/.hidden.yaml": "name: hidden\n",
    "conf.d/notes.txt": "ignored",
  });
  try {
    const plan: FilePlan = {
      files: { name: "app", paths: [`${dir}/a`, `${dir}/b`, `${dir}/c`] },
      configDir: `${dir}/conf.d`,
      profile: "prod",
      configFiles: [],
    };
    const watch = watchTargets();
    const found = await findConfigFiles(denoFileSystem, plan, watch);
    assert.deepEqual(found.map((f) => [f.path.slice(dir.length + 1), f.kind]), [
      ["b/app.toml", "files"],
      ["b/app.prod.toml", "profile"],
      ["conf.d/10-a.yaml", "configDir"],
      ["conf.d/20-b.json", "configDir"],
    ]);
    assert.ok(watch.dirs.has(`${dir}/c`), "every search directory is watched");
    assert.ok(watch.names.has("app.yaml") && watch.names.has(`${dir}/conf.d/*`));

    const issues: ConfigIssue[] = [];
    const texts = new Map<string, string>();
    const layers = await readConfigFiles(denoFileSystem, plan, watch, issues, texts);
    assert.deepEqual(issues, []);
    assert.deepEqual(plain(layers.map((l) => l.tree)), [{ port: 1 }, { port: 2 }, { name: "a" }, {
      name: "b",
    }]);
    assert.equal(texts.get(`${dir}/b/app.toml`), "port = 1\n");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the file source: --config files replace the files option; misses are issues", async () => {
  const dir = await tree({ "x.yaml": "port: 5\n", "bad.yaml": "port: [\n" });
  try {
    const issues: ConfigIssue[] = [];
    const layers = await readConfigFiles(
      denoFileSystem,
      {
        files: [`${dir}/ignored.yaml`],
        configFiles: [`${dir}/x.yaml`, `${dir}/bad.yaml`, `${dir}/gone.yaml`, `${dir}/x.ini`],
      },
      watchTargets(),
      issues,
      new Map(),
    );
    assert.deepEqual(layers.map((l) => l.tree), [{ port: 5 }]);
    const messages = issues.map((i) => i.message).join("\n");
    assert.match(messages, /gone\.yaml not found/);
    assert.match(messages, /x\.ini: unknown format, expected \.yaml, \.yml, \.json or \.toml/);
    assert.ok(issues.some((i) => i.origin !== undefined && "line" in i.origin), messages);

    await assert.rejects(
      findConfigFiles(denoFileSystem, {
        files: { name: "none", paths: [dir], required: true },
        configFiles: [],
      }, watchTargets()),
      /No configuration file none\.\{yaml,yml,json,toml\} in /,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("one parser per format, with positions", () => {
  assert.equal(formatOfFile("a.YML"), "yaml");
  for (
    const [format, text] of [
      ["yaml", "dns:\n  port: 53\n"],
      ["json", '{\n  "dns": {"port": 53}\n}'],
      ["toml", "[dns]\nport = 53\n"],
    ] as const
  ) {
    const layer = parseConfigText(text, format, `app.${format}`);
    assert.deepEqual(plain(layer.tree), { dns: { port: 53 } }, format);
    const origin = layer.origins.get("dns.port");
    assert.ok(origin !== undefined && "line" in origin && origin.line === 2, format);
  }
});

Deno.test("FileSource loads layers, remembers texts and what to watch; load() fails on misses", async () => {
  const dir = await tree({ "app.yaml": "port: 1\n" });
  try {
    const source = new FileSource(denoFileSystem, () => ({
      files: [`${dir}/app.yaml`],
      profile: "dev",
      configFiles: [],
    }));
    const layers = await source.load();
    assert.deepEqual(layers.map((l) => [l.kind, l.tree]), [["files", { port: 1 }]]);
    assert.deepEqual([...source.texts.keys()], [`${dir}/app.yaml`]);
    assert.deepEqual([...source.watchTargets.names], ["app.yaml", "app.dev.yaml"]);
    await assert.rejects(
      new FileSource(denoFileSystem, () => ({ files: [`${dir}/gone.yaml`], configFiles: [] }))
        .load(),
      /gone\.yaml not found/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("FileSource.watch() reads again after each save and names the changed file", async (t) => {
  const dir = await tree({ "app.yaml": "port: 1\n" });
  // A ConfigMap volume: app.yaml -> ..data/app.yaml, ..data -> ..v1; an update swaps ..data.
  const mount = await tree({ "..v1/app.yaml": "name: a\n" });
  await Deno.symlink("..v1", `${mount}/..data`);
  await Deno.symlink("..data/app.yaml", `${mount}/app.yaml`);
  const source = new FileSource(
    denoFileSystem,
    () => ({ files: [`${dir}/app.yaml`, `${mount}/app.yaml`], configFiles: [] }),
    20,
  );
  await source.load();
  type Report = { layers: readonly SourceLayer[]; cause: string } | ConfigError;
  const listeners = new Set<(report: Report) => void>();
  const next = () =>
    waitFor<Report>((fn) => {
      listeners.add(fn);
      return () => listeners.delete(fn);
    }, "the file source's next report");
  const report = (value: Report) => listeners.forEach((fn) => fn(value));
  const abort = new AbortController();
  const watching = source.watch(
    { fetch, signal: abort.signal, fs: denoFileSystem },
    (layers, cause) => report({ layers, cause }),
    report,
  );
  const trees = (value: Report) =>
    "layers" in value ? value.layers.map((l) => l.tree) : value.message;
  try {
    await t.step("a save hands over every file's layer, the cause naming the file", async () => {
      const reported = next();
      await Deno.writeTextFile(`${dir}/app.yaml`, "port: 2\n");
      const value = await reported;
      assert.deepEqual(trees(value), [{ port: 2 }, { name: "a" }]);
      assert.equal("cause" in value && value.cause, `file ${dir}/app.yaml`);
    });

    await t.step("a ..data swap names the configured file, not the swap's names", async () => {
      const reported = next();
      await Deno.mkdir(`${mount}/..v2`);
      await Deno.writeTextFile(`${mount}/..v2/app.yaml`, "name: b\n");
      await Deno.symlink("..v2", `${mount}/..data_tmp`);
      await Deno.rename(`${mount}/..data_tmp`, `${mount}/..data`);
      const value = await reported;
      assert.deepEqual(trees(value), [{ port: 2 }, { name: "b" }]);
      assert.equal("cause" in value && value.cause, `file ${mount}/app.yaml`);
    });

    await t.step("an invalid save is an error naming the file and line", async () => {
      const reported = next();
      await Deno.writeTextFile(`${dir}/app.yaml`, "port: [\n");
      const value = await reported;
      assert.match(String(trees(value)), new RegExp(`${dir}/app\\.yaml:2:1: `));
    });
  } finally {
    abort.abort();
    await watching; // resolves once aborted
    await Deno.remove(dir, { recursive: true });
    await Deno.remove(mount, { recursive: true });
  }
});
