import assert from "node:assert/strict";
import { z } from "zod";
import { createLogger } from "@triad/core";
import { ConfigError, createConfig, denoFileSystem, duration, Secret, secret } from "./mod.ts";
import type { ConfigFileSystem } from "./mod.ts";
import { pollUntil, waitFor } from "../tests/wait_for.ts";

const schema = z.object({
  dns: z.object({
    listen: z.string().default("127.0.0.1:5353").describe("Address to serve on"),
    cache: z.object({
      size: z.number().int().positive().default(1000),
      maxTtl: z.string().default("1h"),
    }).prefault({}),
    enabled: z.boolean().default(true),
  }).prefault({}),
  upstreams: z.array(
    z.object({ name: z.string(), address: z.string(), weight: z.number().optional() }),
  )
    .default([]),
  tags: z.array(z.string()).default([]),
  db: z.object({
    password: z.string().meta({ writeOnly: true }).transform((s) => new Secret(s)).optional(),
    user: z.string().optional(),
  }).prefault({}),
});

async function tempDir(files: Record<string, string>): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "triad-config-" });
  for (const [name, text] of Object.entries(files)) {
    await Deno.writeTextFile(`${dir}/${name}`, text);
  }
  return dir;
}

function nextEvent<T>(subscribe: (fn: (value: T) => void) => () => void, ms = 3000): Promise<T> {
  return waitFor(subscribe, "the next event", ms);
}

/** The real file system, counting the reads of each file. */
function countingFileSystem(): ConfigFileSystem & { reads(path: string): number } {
  const reads = new Map<string, number>();
  return {
    readTextFile: (path) => {
      reads.set(path, (reads.get(path) ?? 0) + 1);
      return denoFileSystem.readTextFile(path);
    },
    readDir: (path) => denoFileSystem.readDir(path),
    watch: (paths) => denoFileSystem.watch(paths),
    reads: (path) => reads.get(path) ?? 0,
  };
}

const noEnv = { prefix: "APP", vars: {} };

/**
 * Writes `files` into `dir` the way the kubelet's AtomicWriter updates a ConfigMap or Secret
 * volume: a new timestamped directory `..<UTC time>.<random>`, a `..data_tmp` symlink to it
 * renamed over `..data`, per-file symlinks `<name> -> ..data/<name>` for new names, then the old
 * timestamped directory removed.
 */
async function kubeletWrite(dir: string, files: Record<string, string>): Promise<void> {
  const stamp = new Date().toISOString().replace(/[-T:]/g, "_").replace(/\..*$/, "");
  const fraction = String(Math.floor(Math.random() * 1e9)).padStart(9, "0");
  const tsDir = `..${stamp}.${fraction}`;
  await Deno.mkdir(`${dir}/${tsDir}`);
  for (const [name, text] of Object.entries(files)) {
    await Deno.writeTextFile(`${dir}/${tsDir}/${name}`, text);
  }
  let old: string | undefined;
  try {
    old = await Deno.readLink(`${dir}/..data`);
  } catch {
    old = undefined;
  }
  await Deno.symlink(tsDir, `${dir}/..data_tmp`);
  await Deno.rename(`${dir}/..data_tmp`, `${dir}/..data`);
  for (const name of Object.keys(files)) {
    try {
      await Deno.lstat(`${dir}/${name}`);
    } catch {
      await Deno.symlink(`..data/${name}`, `${dir}/${name}`);
    }
  }
  if (old !== undefined) await Deno.remove(`${dir}/${old}`, { recursive: true });
}

Deno.test("createConfig() merges layers in order", async (t) => {
  const dir = await tempDir({
    "app.yaml": "dns:\n  listen: 0.0.0.0:53\n  cache:\n    size: 10\n",
    "app.prod.yaml": "dns:\n  cache:\n    size: 20\n",
    "app.json": '{"dns": {"listen": "ignored"}}',
  });
  try {
    await t.step("defaults < file < profile < env < flags < set()", async () => {
      await using config = await createConfig({
        schema,
        defaults: { dns: { listen: "1.1.1.1:1", cache: { maxTtl: "5m" } } },
        files: { name: "app", paths: [dir] },
        env: { prefix: "APP", vars: { APP_PROFILE: "prod", APP_DNS__CACHE__MAX_TTL: "10m" } },
        args: ["--dns.enabled=false"],
      });
      assert.equal(config.profile, "prod");
      assert.equal(config.get("dns.listen"), "0.0.0.0:53");
      assert.equal(config.get("dns.cache.size"), 20);
      assert.equal(config.get("dns.cache.maxTtl"), "10m");
      assert.equal(config.get("dns.enabled"), false);
      assert.equal(
        String(config.explain("dns.cache.size")),
        `dns.cache.size = 20 from ${dir}/app.prod.yaml:3:5 (overrode 10 from ${dir}/app.yaml:4:5)`,
      );
      assert.equal(
        String(config.explain("dns.cache.maxTtl")),
        'dns.cache.maxTtl = "10m" from env APP_DNS__CACHE__MAX_TTL (overrode "5m" from defaults)',
      );
      assert.equal(
        String(config.explain("dns.enabled")),
        "dns.enabled = false from flag --dns.enabled",
      );
      assert.deepEqual(config.explain("tags").origin, { layer: "schema" });
      await config.set("dns.cache.size", "7");
      assert.equal(config.get("dns.cache.size"), 7);
      assert.deepEqual(config.explain("dns.cache.size").origin, { layer: "set" });
    });

    await t.step("value is a frozen snapshot that a reload replaces", async () => {
      await using config = await createConfig({ schema, files: [`${dir}/app.yaml`], env: noEnv });
      const before = config.value;
      assert.ok(Object.isFrozen(before.dns.cache));
      assert.throws(() => {
        (before.dns.cache as { size: number }).size = 1;
      });
      await config.set("dns.cache.size", 99);
      assert.equal(before.dns.cache.size, 10);
      assert.equal(config.value.dns.cache.size, 99);
    });

    await t.step("keys are case-sensitive", async () => {
      await assert.rejects(
        createConfig({
          schema,
          defaults: { dns: { Listen: "x" } } as never,
          env: noEnv,
        }),
        /dns\.Listen: unknown key, did you mean dns\.listen\?/,
      );
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("createConfig() binds every key to env and flags", async (t) => {
  await t.step("env names come from the schema and values are coerced", async () => {
    await using config = await createConfig({
      schema,
      env: {
        prefix: "APP",
        vars: {
          APP_DNS__CACHE__SIZE: "42",
          APP_DNS__ENABLED: "no",
          APP_TAGS: "a,b",
          APP_UPSTREAMS: '[{"name":"one","address":"1.1.1.1:53"}]',
          OTHER: "ignored",
        },
      },
    });
    assert.equal(config.get("dns.cache.size"), 42);
    assert.equal(config.get("dns.enabled"), false);
    assert.deepEqual(config.get("tags"), ["a", "b"]);
    assert.equal(config.get("upstreams.0.name"), "one");
  });

  await t.step("a sub-view sees env values too", async () => {
    await using config = await createConfig({
      schema,
      env: { prefix: "APP", vars: { APP_DNS__CACHE__SIZE: "9" } },
    });
    const cache = config.sub("dns.cache");
    assert.equal(cache.get("size"), 9);
    assert.equal(cache.value.size, 9);
    await config.set("dns.cache.size", 10);
    assert.equal(cache.get("size"), 10);
  });

  await t.step("unknown env variables under the prefix are warned about and ignored", async () => {
    const lines: string[] = [];
    const logger = createLogger({ write: (line) => lines.push(line) });
    const vars = { APP_ENV: "production", APP_DNS__CACH__SIZE: "1", APP_DNS__LISTEN: "[::1]:53" };
    await using config = await createConfig({ schema, env: { prefix: "APP", vars }, logger });
    assert.equal(config.get("dns.listen"), "[::1]:53");
    assert.equal(config.get("dns.cache.size"), 1000);
    const warnings = lines.map((line) => JSON.parse(line));
    assert.deepEqual(warnings.map((w) => [w.level, w.variable, w.closest, w.key]), [
      ["warn", "APP_ENV", "APP_TAGS", "tags"],
      ["warn", "APP_DNS__CACH__SIZE", "APP_DNS__CACHE__SIZE", "dns.cache.size"],
    ]);
    assert.equal(
      warnings[0].msg,
      "unknown environment variable APP_ENV ignored; the closest key is tags (APP_TAGS)",
    );
    assert.equal(
      warnings[1].msg,
      "unknown environment variable APP_DNS__CACH__SIZE ignored; " +
        "did you mean APP_DNS__CACHE__SIZE (dns.cache.size)?",
    );
    // Once per variable, not at every reload.
    await config.reload();
    assert.equal(lines.length, 2);
  });

  await t.step("env.strict rejects unknown env variables with a hint", async () => {
    await assert.rejects(
      createConfig({
        schema,
        env: { prefix: "APP", strict: true, vars: { APP_DNS__CACH__SIZE: "1" } },
      }),
      (error: unknown) => {
        assert.ok(error instanceof ConfigError);
        assert.equal(error.code, "unknown_key");
        assert.match(
          error.message,
          /unknown environment variable APP_DNS__CACH__SIZE, did you mean APP_DNS__CACHE__SIZE\?/,
        );
        return true;
      },
    );
  });

  await t.step("flags: =, separate value, --no-, repeated arrays, aliases", async () => {
    await using config = await createConfig({
      schema,
      env: noEnv,
      args: {
        argv: [
          "--dns.cache.size",
          "5",
          "--no-dns.enabled",
          "--tags=a",
          "--tags",
          "b,c",
          "--listen",
          "[::1]:53",
          "rest",
        ],
        aliases: { listen: "dns.listen" },
      },
    });
    assert.equal(config.get("dns.cache.size"), 5);
    assert.equal(config.get("dns.enabled"), false);
    assert.deepEqual(config.get("tags"), ["a", "b", "c"]);
    assert.equal(config.get("dns.listen"), "[::1]:53");
    assert.deepEqual(config.positionals, ["rest"]);
    assert.equal(config.explain("dns.cache.size").origin?.layer, "flags");
  });

  await t.step("camelCase keys get kebab flags and SNAKE env names", async () => {
    await using config = await createConfig({
      schema,
      env: { prefix: "APP", vars: { APP_DNS__CACHE__MAX_TTL: "2h" } },
      args: ["--dns.cache.max-ttl", "3h"],
    });
    assert.equal(config.get("dns.cache.maxTtl"), "3h");
    assert.match(
      String(config.explain("dns.cache.maxTtl")),
      /overrode "2h" from env APP_DNS__CACHE__MAX_TTL/,
    );
  });

  await t.step("unknown flags are rejected with a hint", async () => {
    await assert.rejects(
      createConfig({ schema, env: noEnv, args: ["--dns.cache.sise", "1"] }),
      /unknown flag --dns\.cache\.sise, did you mean --dns\.cache\.size\?/,
    );
  });

  await t.step(
    "--help is reported and help() lists flags with env names and defaults",
    async () => {
      await using config = await createConfig({
        schema,
        env: noEnv,
        args: ["--help"],
        program: "dns",
      });
      assert.ok(config.helpRequested);
      const help = config.help();
      assert.match(help, /^Usage: dns \[flags\]/);
      assert.match(
        help,
        /--dns\.listen <string>\s+Address to serve on \(default "127\.0\.0\.1:5353"; env APP_DNS__LISTEN\)/,
      );
      assert.match(help, /--dns\.enabled\s+\(default true; env APP_DNS__ENABLED\)/);
    },
  );
});

Deno.test("createConfig() reports bad input with its origin", async (t) => {
  const dir = await tempDir({
    "bad.yaml": "dns:\n  cache:\n    size: [1, 2\n",
    "bad.json": '{\n  "dns": {\n    "listen": "x",\n  }\n}',
    "bad.toml": '[dns]\nlisten = "x"\ncache = { size = }\n',
    "type.yaml": "dns:\n  cache:\n    size: big\n",
    "type.toml": "[dns.cache]\nsize = -3\n",
    "typo.yaml": "dns:\n  cahce:\n    size: 1\n",
    "dup.yaml": "dns:\n  listen: a\n  listen: b\n",
  });
  try {
    await t.step("malformed YAML names file:line:col", async () => {
      await assert.rejects(
        createConfig({ schema, files: [`${dir}/bad.yaml`], env: noEnv }),
        (error: unknown) => {
          assert.ok(error instanceof ConfigError);
          assert.equal(error.code, "parse");
          assert.match(error.message, new RegExp(`${dir}/bad\\.yaml:4:1: `));
          return true;
        },
      );
    });
    await t.step("duplicate YAML keys are an error", async () => {
      await assert.rejects(
        createConfig({ schema, files: [`${dir}/dup.yaml`], env: noEnv }),
        new RegExp(`${dir}/dup\\.yaml:3:3: map keys must be unique`),
      );
    });
    await t.step("malformed JSON names file:line:col", async () => {
      await assert.rejects(
        createConfig({ schema, files: [`${dir}/bad.json`], env: noEnv }),
        new RegExp(`${dir}/bad\\.json:4:3: expected a string key, got "}"`),
      );
    });
    await t.step("malformed TOML names file:line:col", async () => {
      await assert.rejects(
        createConfig({ schema, files: [`${dir}/bad.toml`], env: noEnv }),
        new RegExp(`${dir}/bad\\.toml:3:\\d+: `),
      );
    });
    await t.step("type errors name path, expected type, value and file position", async () => {
      await assert.rejects(
        createConfig({ schema, files: [`${dir}/type.yaml`], env: noEnv }),
        new RegExp(
          `${dir}/type\\.yaml:3:5: dns\\.cache\\.size: expected integer > 0, got "big" \\(invalid input: expected number, received string\\)$`,
        ),
      );
      await assert.rejects(
        createConfig({ schema, files: [`${dir}/type.toml`], env: noEnv }),
        new RegExp(`${dir}/type\\.toml:2:1: dns\\.cache\\.size: expected integer > 0, got -3`),
      );
    });
    await t.step("type errors from env and flags name the variable and the flag", async () => {
      await assert.rejects(
        createConfig({ schema, env: { prefix: "APP", vars: { APP_DNS__CACHE__SIZE: "lots" } } }),
        /env APP_DNS__CACHE__SIZE: dns\.cache\.size: expected integer > 0, got "lots"/,
      );
      await assert.rejects(
        createConfig({ schema, env: noEnv, args: ["--dns.cache.size=0"] }),
        /flag --dns\.cache\.size: dns\.cache\.size: expected integer > 0, got 0/,
      );
    });
    await t.step("unknown keys are rejected with a did-you-mean and position", async () => {
      await assert.rejects(
        createConfig({ schema, files: [`${dir}/typo.yaml`], env: noEnv }),
        new RegExp(
          `${dir}/typo\\.yaml:2:3: dns\\.cahce: unknown key, did you mean dns\\.cache\\?`,
        ),
      );
    });
    await t.step("a missing explicit file is an error, a missing search is not", async () => {
      await assert.rejects(
        createConfig({ schema, files: [`${dir}/nope.yaml`], env: noEnv }),
        (error: unknown) => error instanceof ConfigError && error.code === "not_found",
      );
      await using config = await createConfig({
        schema,
        files: { name: "nope", paths: [dir] },
        env: noEnv,
      });
      assert.equal(config.get("dns.cache.size"), 1000);
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("createConfig() reads JSON and TOML with positions", async () => {
  const dir = await tempDir({
    "a.json": '{\n  "dns": {\n    "cache": { "size": 5 }\n  }\n}\n',
    "b.toml":
      '[dns]\nlisten = "10.0.0.1:53"\n\n[[upstreams]]\nname = "one"\naddress = "1.1.1.1:53"\n',
  });
  try {
    await using config = await createConfig({
      schema,
      files: [`${dir}/a.json`, `${dir}/b.toml`],
      env: noEnv,
    });
    assert.equal(config.get("dns.cache.size"), 5);
    assert.equal(config.get("upstreams.0.address"), "1.1.1.1:53");
    assert.equal(
      String(config.explain("dns.cache.size")),
      `dns.cache.size = 5 from ${dir}/a.json:3:16`,
    );
    assert.equal(
      String(config.explain("dns.listen")),
      `dns.listen = "10.0.0.1:53" from ${dir}/b.toml:2:1`,
    );
    assert.equal(
      String(config.explain("upstreams.0.address")),
      `upstreams.0.address = "1.1.1.1:53" from ${dir}/b.toml:6:1`,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("createConfig() merges arrays per path", async (t) => {
  const low = {
    tags: ["a", "b"],
    upstreams: [{ name: "one", address: "1.1.1.1:53" }, { name: "two", address: "2.2.2.2:53" }],
  };
  const high = {
    APP_TAGS: "c",
    APP_UPSTREAMS:
      '[{"name":"two","address":"9.9.9.9:53","weight":2},{"name":"three","address":"3.3.3.3:53"}]',
  };
  await t.step("replace by default", async () => {
    await using config = await createConfig({
      schema,
      defaults: low,
      env: { prefix: "APP", vars: high },
    });
    assert.deepEqual(config.get("tags"), ["c"]);
    assert.equal(config.get("upstreams").length, 2);
  });
  await t.step("append and mergeByKey", async () => {
    await using config = await createConfig({
      schema,
      defaults: low,
      env: { prefix: "APP", vars: high },
      arrays: { tags: "append", upstreams: { mergeByKey: "name" } },
    });
    assert.deepEqual(config.get("tags"), ["a", "b", "c"]);
    assert.deepEqual(config.get("upstreams"), [
      { name: "one", address: "1.1.1.1:53" },
      { name: "two", address: "9.9.9.9:53", weight: 2 },
      { name: "three", address: "3.3.3.3:53" },
    ]);
    assert.deepEqual(config.explain("upstreams.1.address").origin, {
      layer: "env",
      name: "APP_UPSTREAMS",
    });
    assert.deepEqual(config.explain("upstreams.0.address").origin, { layer: "defaults" });
  });
});

Deno.test("createConfig() resolves secrets and redacts them", async (t) => {
  const dir = await tempDir({
    "app.yaml": "db:\n  password: ${env:DB_PASSWORD}\n  user: ${file:" + "SECRETDIR/user}\n",
    "user": "admin\n",
    "pw": "s3cret-from-file\n",
  });
  await Deno.writeTextFile(
    `${dir}/app.yaml`,
    (await Deno.readTextFile(`${dir}/app.yaml`)).replace("SECRETDIR", dir),
  );
  try {
    await t.step("${env:} in a file becomes a Secret, ${file:} a redacted string", async () => {
      await using config = await createConfig({
        schema,
        files: [`${dir}/app.yaml`],
        env: { prefix: "APP", vars: { DB_PASSWORD: "hunter2" } },
      });
      const password = config.get("db.password");
      assert.ok(password instanceof Secret);
      assert.equal(password.reveal(), "hunter2");
      assert.equal(config.get("db.user"), "admin");
      const dump = config.dump();
      assert.ok(!dump.includes("hunter2"), dump);
      assert.ok(!dump.includes("admin"), dump);
      assert.match(dump, /password: "?\[redacted\]"?/);
      assert.ok(!JSON.stringify(config.value).includes("hunter2"));
      assert.ok(!Deno.inspect(config.value).includes("hunter2"));
      assert.ok(!String(config.explain("db.password")).includes("hunter2"));
      assert.ok(!String(config.explain("db.user")).includes("admin"));
      assert.match(config.dump({ redact: false }), /hunter2/);
    });
    await t.step("NAME_FILE reads the secret from a file", async () => {
      await using config = await createConfig({
        schema,
        env: { prefix: "APP", vars: { APP_DB__PASSWORD_FILE: `${dir}/pw` } },
      });
      assert.equal(config.get("db.password")?.reveal(), "s3cret-from-file");
      assert.equal(
        String(config.explain("db.password")),
        `db.password = [redacted] from env APP_DB__PASSWORD_FILE (file ${dir}/pw)`,
      );
    });
    await t.step("a missing referenced variable names the file position", async () => {
      await assert.rejects(
        createConfig({ schema, files: [`${dir}/app.yaml`], env: noEnv }),
        new RegExp(
          `${dir}/app\\.yaml:2:3: secret reference \\$\\{env:DB_PASSWORD\\}: environment variable DB_PASSWORD is not set`,
        ),
      );
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("Config.watch() reloads files", async (t) => {
  await t.step("one change event per save, with a diff; invalid keeps last good", async () => {
    const dir = await tempDir({ "app.yaml": "dns:\n  cache:\n    size: 10\n" });
    const fs = countingFileSystem();
    try {
      await using config = await createConfig({
        schema,
        files: { name: "app", paths: [dir] },
        env: noEnv,
        debounce: 30,
        fs,
      });
      await config.watch();
      const events: string[][] = [];
      config.on("change", (event) => events.push(event.changes.map((c) => c.path)));

      // A plain write.
      let next = nextEvent<unknown>((fn) => config.on("change", fn));
      await Deno.writeTextFile(`${dir}/app.yaml`, "dns:\n  cache:\n    size: 20\n");
      await next;
      assert.equal(config.get("dns.cache.size"), 20);

      // An editor's rename-on-save: write a temp file, rename over.
      next = nextEvent<unknown>((fn) => config.on("change", fn));
      await Deno.writeTextFile(`${dir}/.app.yaml.tmp`, "dns:\n  cache:\n    size: 30\n");
      await Deno.rename(`${dir}/.app.yaml.tmp`, `${dir}/app.yaml`);
      await next;
      assert.equal(config.get("dns.cache.size"), 30);

      // An invalid file keeps the last good configuration and emits an error.
      const error = nextEvent<ConfigError>((fn) => config.on("error", fn));
      await Deno.writeTextFile(`${dir}/app.yaml`, "dns:\n  cache:\n    size: -1\n");
      const reported = await error;
      assert.match(
        reported.message,
        new RegExp(`${dir}/app\\.yaml:3:5: dns\\.cache\\.size: expected integer > 0, got -1`),
      );
      assert.equal(config.get("dns.cache.size"), 30);

      // A save that changes nothing emits nothing: once its reload has read the file, a later
      // save's event (the barrier) comes after any event of its own.
      const reads = fs.reads(`${dir}/app.yaml`);
      await Deno.writeTextFile(`${dir}/app.yaml`, "dns:\n  cache:\n    size: 30\n");
      await pollUntil(() => fs.reads(`${dir}/app.yaml`) > reads, "the reload after the save");
      assert.deepEqual(events, [["dns.cache.size"], ["dns.cache.size"]]);
      next = nextEvent<unknown>((fn) => config.on("change", fn));
      await Deno.writeTextFile(`${dir}/app.yaml`, "dns:\n  cache:\n    size: 40\n");
      await next;
      assert.deepEqual(events, [["dns.cache.size"], ["dns.cache.size"], ["dns.cache.size"]]);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });

  await t.step(
    "rotated secret files reload (NAME_FILE and ${file:}, a Secret's ..data swap)",
    async () => {
      // A Kubernetes Secret volume: pw -> ..data/pw, ..data -> ..v1; rotation swaps ..data.
      const secrets = await Deno.makeTempDir({ prefix: "triad-secret-" });
      const dir = await tempDir({});
      try {
        await Deno.mkdir(`${secrets}/..v1`);
        await Deno.writeTextFile(`${secrets}/..v1/pw`, "first\n");
        await Deno.symlink("..v1", `${secrets}/..data`);
        await Deno.symlink("..data/pw", `${secrets}/pw`);
        await Deno.writeTextFile(`${dir}/user`, "alice\n");
        await Deno.writeTextFile(`${dir}/app.yaml`, `db:\n  user: \${file:${dir}/user}\n`);
        await using config = await createConfig({
          schema,
          files: [`${dir}/app.yaml`],
          env: { prefix: "APP", vars: { APP_DB__PASSWORD_FILE: `${secrets}/pw` } },
          debounce: 30,
        });
        await config.watch();
        assert.equal(config.get("db.password")?.reveal(), "first");
        assert.equal(config.get("db.user"), "alice");

        let next = nextEvent<{ changes: readonly { path: string }[]; cause: string }>((fn) =>
          config.on("change", fn)
        );
        await Deno.mkdir(`${secrets}/..v2`);
        await Deno.writeTextFile(`${secrets}/..v2/pw`, "second\n");
        await Deno.symlink("..v2", `${secrets}/..data_tmp`);
        await Deno.rename(`${secrets}/..data_tmp`, `${secrets}/..data`);
        let event = await next;
        assert.deepEqual(event.changes.map((c) => c.path), ["db.password"]);
        assert.match(event.cause, /^secret file /);
        assert.equal(config.get("db.password")?.reveal(), "second");

        next = nextEvent((fn) => config.on("change", fn));
        await Deno.writeTextFile(`${dir}/user`, "bob\n");
        event = await next;
        assert.deepEqual(event.changes.map((c) => c.path), ["db.user"]);
        assert.equal(config.get("db.user"), "bob");
      } finally {
        await Deno.remove(secrets, { recursive: true });
        await Deno.remove(dir, { recursive: true });
      }
    },
  );

  await t.step("Kubernetes ConfigMap ..data symlink swaps are followed", async () => {
    const dir = await Deno.makeTempDir({ prefix: "triad-configmap-" });
    try {
      await Deno.mkdir(`${dir}/..v1`);
      await Deno.writeTextFile(`${dir}/..v1/app.yaml`, "dns:\n  listen: a:1\n");
      await Deno.symlink("..v1", `${dir}/..data`);
      await Deno.symlink("..data/app.yaml", `${dir}/app.yaml`);
      await using config = await createConfig({
        schema,
        files: [`${dir}/app.yaml`],
        env: noEnv,
        debounce: 30,
      });
      await config.watch();
      assert.equal(config.get("dns.listen"), "a:1");
      const changes: string[] = [];
      config.on("change", (event) => changes.push(event.cause));
      const next = nextEvent<unknown>((fn) => config.on("change", fn));
      await Deno.mkdir(`${dir}/..v2`);
      await Deno.writeTextFile(`${dir}/..v2/app.yaml`, "dns:\n  listen: b:2\n");
      await Deno.symlink("..v2", `${dir}/..data_tmp`);
      await Deno.rename(`${dir}/..data_tmp`, `${dir}/..data`);
      await Deno.remove(`${dir}/..v1`, { recursive: true });
      await next;
      assert.equal(config.get("dns.listen"), "b:2");
      // Barrier: a second swap; any further event of the first comes before its event.
      const barrier = nextEvent<unknown>((fn) => config.on("change", fn));
      await Deno.mkdir(`${dir}/..v3`);
      await Deno.writeTextFile(`${dir}/..v3/app.yaml`, "dns:\n  listen: c:3\n");
      await Deno.symlink("..v3", `${dir}/..data_tmp`);
      await Deno.rename(`${dir}/..data_tmp`, `${dir}/..data`);
      await barrier;
      assert.equal(config.get("dns.listen"), "c:3");
      assert.equal(changes.length, 2);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });

  await t.step(
    "a kubelet ..data swap names the configured file in the change's cause",
    async () => {
      const mount = await Deno.makeTempDir({ prefix: "triad-configmap-" });
      const secrets = await Deno.makeTempDir({ prefix: "triad-secret-" });
      try {
        await kubeletWrite(mount, { "app.yaml": "dns:\n  listen: a:1\n", "other": "x" });
        await kubeletWrite(secrets, { "pw": "first\n", "token": "t1" });
        await using config = await createConfig({
          schema,
          files: [`${mount}/app.yaml`],
          env: { prefix: "APP", vars: { APP_DB__PASSWORD_FILE: `${secrets}/pw` } },
          debounce: 30,
        });
        await config.watch();
        assert.equal(config.get("dns.listen"), "a:1");

        let next = nextEvent<{ cause: string }>((fn) => config.on("change", fn));
        await kubeletWrite(mount, { "app.yaml": "dns:\n  listen: b:2\n", "other": "y" });
        assert.equal((await next).cause, `file ${mount}/app.yaml`);
        assert.equal(config.get("dns.listen"), "b:2");

        next = nextEvent<{ cause: string }>((fn) => config.on("change", fn));
        await kubeletWrite(secrets, { "pw": "second\n", "token": "t2" });
        assert.equal((await next).cause, `secret file ${secrets}/pw`);
        assert.equal(config.get("db.password")?.reveal(), "second");
      } finally {
        await Deno.remove(mount, { recursive: true });
        await Deno.remove(secrets, { recursive: true });
      }
    },
  );

  await t.step("configDir files merge in name order and new files are picked up", async () => {
    const dir = await tempDir({});
    await Deno.mkdir(`${dir}/conf.d`);
    await Deno.writeTextFile(`${dir}/conf.d/10-a.yaml`, "tags: [a]\ndns:\n  cache:\n    size: 1\n");
    try {
      await using config = await createConfig({
        schema,
        configDir: `${dir}/conf.d`,
        env: noEnv,
        debounce: 30,
      });
      await config.watch();
      assert.equal(config.get("dns.cache.size"), 1);
      const next = nextEvent<{ changes: readonly { path: string }[] }>((fn) =>
        config.on("change", fn)
      );
      await Deno.writeTextFile(`${dir}/conf.d/20-b.toml`, "[dns.cache]\nsize = 2\n");
      const event = await next;
      assert.deepEqual(event.changes.map((c) => c.path), ["dns.cache.size"]);
      assert.equal(
        String(config.explain("dns.cache.size")),
        `dns.cache.size = 2 from ${dir}/conf.d/20-b.toml:2:1 (overrode 1 from ${dir}/conf.d/10-a.yaml:4:5)`,
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
});

Deno.test("Config sub-views and change events are scoped", async () => {
  await using config = await createConfig({ schema, env: noEnv });
  const cacheEvents: string[][] = [];
  const cache = config.sub("dns.cache");
  cache.on("change", (event) => cacheEvents.push(event.changes.map((c) => c.path)));
  let changedListen = false;
  config.on("change", (event) => {
    changedListen = event.changed("dns.listen");
  });
  await config.set("dns.listen", "x:1");
  assert.ok(changedListen);
  await config.set("dns.cache.size", 5);
  assert.ok(!changedListen);
  assert.deepEqual(cacheEvents, [["size"]]);
  assert.deepEqual(await config.set("dns.cache.size", 5), []);
  await assert.rejects(config.set("dns.cache.size", -5), /dns\.cache\.size: expected integer > 0/);
  assert.equal(config.get("dns.cache.size"), 5);
  assert.equal(cache.explain("size").origin?.layer, "set");
});

Deno.test("Config.get() never reads through Object.prototype", async () => {
  await using config = await createConfig({ schema, env: noEnv });
  assert.equal(config.get("dns.constructor" as "dns"), undefined);
  assert.equal(config.get("__proto__" as "dns"), undefined);
  assert.equal(config.get("dns.cache.size.toString" as "dns"), undefined);
  assert.equal(config.get("tags.length" as "tags"), undefined);
});

Deno.test("createConfig() reads files through an injected file system", async () => {
  const files = new Map([["/etc/app/app.toml", "[dns.cache]\nsize = 3\n"]]);
  const fs = {
    readTextFile(path: string) {
      const text = files.get(path);
      return text === undefined
        ? Promise.reject(new Deno.errors.NotFound(path))
        : Promise.resolve(text);
    },
    async *readDir() {},
    watch(): never {
      throw new Deno.errors.NotFound("no watching in memory");
    },
  };
  await using config = await createConfig({
    schema,
    env: noEnv,
    fs,
    files: { name: "app", paths: ["/nowhere", "/etc/app"] },
  });
  assert.equal(config.get("dns.cache.size"), 3);
  assert.equal(
    String(config.explain("dns.cache.size")),
    "dns.cache.size = 3 from /etc/app/app.toml:2:1",
  );
  await config.watch(); // a file system that cannot watch is skipped, not fatal
});

Deno.test("createConfig() resolves secret references in env and flags too", async () => {
  const vars = { APP_DB__PASSWORD: "${env:VAULT_PW}", VAULT_PW: "pw1", VAULT_USER: "bob" };
  await using config = await createConfig({
    schema,
    env: { prefix: "APP", vars },
    args: ["--db.user", "${env:VAULT_USER}"],
  });
  assert.equal(config.get("db.password")?.reveal(), "pw1");
  assert.equal(config.get("db.user"), "bob");
  assert.ok(!config.dump().includes("bob"));
  await assert.rejects(
    createConfig({ schema, env: { prefix: "APP", vars: {} }, args: ["--db.user", "${env:NOPE}"] }),
    /flag --db\.user: secret reference \$\{env:NOPE\}: environment variable NOPE is not set/,
  );
});

Deno.test("Config.dump() writes YAML or JSON, with origins on request", async () => {
  const dir = await tempDir({ "app.yaml": "dns:\n  listen: 10.0.0.1:53\n" });
  try {
    await using config = await createConfig({
      schema,
      files: [`${dir}/app.yaml`],
      env: { prefix: "APP", vars: { APP_DNS__CACHE__SIZE: "5" } },
    });
    const annotated = config.dump({ origins: true });
    assert.match(annotated, new RegExp(`listen: 10\\.0\\.0\\.1:53 # ${dir}/app\\.yaml:2:3\\n`));
    assert.match(annotated, / {4}size: 5 # env APP_DNS__CACHE__SIZE\n/);
    assert.match(annotated, / {4}maxTtl: 1h # schema default\n/);
    assert.deepEqual(JSON.parse(config.dump({ format: "json" })).dns.cache, {
      size: 5,
      maxTtl: "1h",
    });
    assert.equal(config.sub("dns.cache").dump(), "size: 5\nmaxTtl: 1h\n");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("Config.reload() re-reads every layer and swaps atomically", async () => {
  const vars: Record<string, string> = { APP_DNS__CACHE__SIZE: "5" };
  await using config = await createConfig({ schema, env: { prefix: "APP", vars } });
  const snapshot = config.value;
  vars["APP_DNS__CACHE__SIZE"] = "6";
  const changes = await config.reload();
  assert.deepEqual(changes, [{ path: "dns.cache.size", before: 5, after: 6 }]);
  assert.equal(snapshot.dns.cache.size, 5, "an old snapshot never changes");
  vars["APP_DNS__CACHE__SIZE"] = "-1";
  await assert.rejects(
    config.reload(),
    /env APP_DNS__CACHE__SIZE: dns\.cache\.size: expected integer > 0, got -1/,
  );
  assert.equal(config.get("dns.cache.size"), 6, "the last good configuration stays");
  assert.deepEqual(await config.reload().catch(() => "still invalid"), "still invalid");
});

Deno.test("createConfig() follows a custom layer order", async () => {
  const dir = await tempDir({ "app.yaml": "dns:\n  cache:\n    size: 7\n" });
  try {
    await using config = await createConfig({
      schema,
      files: [`${dir}/app.yaml`],
      env: { prefix: "APP", vars: { APP_DNS__CACHE__SIZE: "5" } },
      order: ["defaults", "env", "files", "flags", "set"],
    });
    assert.equal(config.get("dns.cache.size"), 7);
    assert.match(
      String(config.explain("dns.cache.size")),
      /overrode 5 from env APP_DNS__CACHE__SIZE/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("createConfig() binds array items from env as <NAME>__<index>__<FIELD>", async () => {
  await using config = await createConfig({
    schema,
    defaults: { upstreams: [{ name: "one", address: "1.1.1.1:53" }] },
    env: {
      prefix: "APP",
      vars: {
        APP_UPSTREAMS__0__ADDRESS: "9.9.9.9:53",
        APP_UPSTREAMS__1__NAME: "two",
        APP_UPSTREAMS__1__ADDRESS: "8.8.8.8:53",
        APP_UPSTREAMS__1__WEIGHT: "3",
      },
    },
  });
  assert.deepEqual(config.get("upstreams"), [
    { name: "one", address: "9.9.9.9:53" },
    { name: "two", address: "8.8.8.8:53", weight: 3 },
  ]);
  assert.equal(
    String(config.explain("upstreams.1.weight")),
    "upstreams.1.weight = 3 from env APP_UPSTREAMS__1__WEIGHT",
  );
  await assert.rejects(
    createConfig({
      schema,
      env: { prefix: "APP", strict: true, vars: { APP_UPSTREAMS__0__ADRESS: "x" } },
    }),
    /unknown environment variable APP_UPSTREAMS__0__ADRESS/,
  );
});

Deno.test("--config and --profile pick the files", async () => {
  const dir = await tempDir({
    "base.yaml": "dns:\n  cache:\n    size: 1\n",
    "other.toml": "[dns.cache]\nsize = 2\n",
    "other.staging.toml": "[dns.cache]\nsize = 3\n",
  });
  try {
    await using plain = await createConfig({
      schema,
      env: noEnv,
      files: [`${dir}/base.yaml`],
      args: ["--config", `${dir}/other.toml`],
    });
    assert.equal(plain.get("dns.cache.size"), 2, "--config replaces the files option");
    await using staged = await createConfig({
      schema,
      env: noEnv,
      files: [`${dir}/base.yaml`],
      args: ["--config", `${dir}/other.toml`, "--profile", "staging"],
    });
    assert.equal(staged.profile, "staging");
    assert.equal(staged.get("dns.cache.size"), 3);
    assert.equal(staged.explain("dns.cache.size").origin?.layer, "profile");
    await assert.rejects(
      createConfig({ schema, env: noEnv, args: ["--config", `${dir}/missing.yaml`] }),
      new RegExp(`Configuration file ${dir}/missing\\.yaml not found`),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("createConfig() rejects keys that collide with the reserved flags and variables", async (t) => {
  const rejects = (options: Parameters<typeof createConfig>[0], message: string) =>
    assert.rejects(createConfig(options), (error: unknown) => {
      assert.ok(error instanceof ConfigError);
      assert.equal(error.code, "bad_option");
      assert.equal(error.message, message);
      return true;
    });

  await t.step("a key named profile: flag --profile and variable APP_PROFILE", async () => {
    await rejects(
      { schema: z.object({ profile: z.string().optional() }), env: noEnv, args: ["--profile=x"] },
      "Key profile collides with the reserved flag --profile and environment variable " +
        "APP_PROFILE, which name the profile: rename the key, or free them with " +
        "args.profileFlag and the profile option (a name, or false)",
    );
  });

  await t.step("a key named config: flag --config", async () => {
    await rejects(
      { schema: z.object({ config: z.string().optional() }), env: noEnv, args: [] },
      "Key config collides with the reserved flag --config, which names configuration files: " +
        "rename the key, or free it with args.configFlag (another name, or false)",
    );
  });

  await t.step("an alias named config, a key named help", async () => {
    await rejects(
      {
        schema: z.object({ file: z.string().optional(), help: z.boolean().optional() }),
        env: noEnv,
        args: { argv: [], aliases: { config: "file" } },
      },
      "Schema keys collide with reserved names:\n" +
        "  Key help collides with the reserved flag --help, which asks for the help text: " +
        "rename the key\n" +
        "  Alias --config (for file) collides with the reserved flag --config, which names " +
        "configuration files: rename the alias, or free it with args.configFlag (another name, " +
        "or false)",
    );
  });

  await t.step("freed names bind the keys", async () => {
    await using config = await createConfig({
      schema: z.object({ profile: z.string().optional(), config: z.string().optional() }),
      env: { prefix: "APP", vars: { APP_PROFILE: "blue" } },
      args: { argv: ["--config", "c.yaml"], configFlag: false },
      profile: false,
    });
    assert.equal(config.get("profile"), "blue");
    assert.equal(config.get("config"), "c.yaml");
  });

  await t.step("without args only the variable is reserved", async () => {
    await using config = await createConfig({
      schema: z.object({ config: z.string().default("x") }),
      env: noEnv,
    });
    assert.equal(config.get("config"), "x");
    await rejects(
      { schema: z.object({ profile: z.string().optional() }), env: noEnv },
      "Key profile collides with the reserved environment variable APP_PROFILE, which names " +
        "the profile: rename the key, or free it with the profile option (a name, or false)",
    );
  });
});

Deno.test("duration() and secret() report bad values with their key and origin", async (t) => {
  const pieces = z.object({
    http: z.object({ timeout: duration().prefault("2s"), idle: duration().optional() }).prefault(
      {},
    ),
    token: secret().optional(),
  });
  const dir = await tempDir({
    "good.yaml": "http:\n  timeout: 1m30s\ntoken: ${env:TOKEN}\n",
    "bad.yaml": "http:\n  timeout: 5 sec\n  idle: 10\ntoken: 1234\n",
    "password.yaml": "db:\n  password: 123456\n",
  });
  const invalid = (pattern: RegExp) => (error: unknown) => {
    assert.ok(error instanceof ConfigError);
    assert.equal(error.code, "invalid");
    assert.match(error.message, pattern);
    return true;
  };
  try {
    await t.step("good values: milliseconds and a Secret", async () => {
      await using config = await createConfig({
        schema: pieces,
        files: [`${dir}/good.yaml`],
        env: { prefix: "APP", vars: { TOKEN: "hunter2", APP_HTTP__IDLE: "250ms" } },
      });
      assert.equal(config.get("http.timeout"), 90_000);
      assert.equal(config.get("http.idle"), 250);
      assert.ok(config.get("token") instanceof Secret);
      assert.equal(config.get("token")?.reveal(), "hunter2");
      assert.equal(
        String(config.explain("http.timeout")),
        `http.timeout = 90000 from ${dir}/good.yaml:2:3`,
      );
      await using defaulted = await createConfig({ schema: pieces, env: noEnv, args: [] });
      assert.equal(defaulted.get("http.timeout"), 2000);
      assert.match(
        defaulted.help(),
        /--http\.timeout <duration>\s+\(default "2s"; env APP_HTTP__TIMEOUT\)/,
      );
    });

    await t.step("bad values name file:line:col, key and value; secrets stay hidden", async () => {
      await assert.rejects(
        createConfig({ schema: pieces, files: [`${dir}/bad.yaml`], env: noEnv }),
        (error: unknown) => {
          invalid(/^Invalid configuration:\n/)(error);
          const lines = (error as ConfigError).message.split("\n").slice(1).map((l) => l.trim());
          assert.deepEqual(lines, [
            `${dir}/bad.yaml:2:3: http.timeout: expected duration, got "5 sec" ` +
            `(invalid duration "5 sec": unexpected "5 sec" at offset 0)`,
            `${dir}/bad.yaml:3:3: http.idle: expected duration, got 10 ` +
            `(invalid input: expected string, received number)`,
            `${dir}/bad.yaml:4:1: token: expected string, got [redacted] ` +
            `(invalid input: expected string, received number)`,
          ]);
          assert.ok(!(error as ConfigError).message.includes("1234"));
          return true;
        },
      );
    });

    await t.step("from env and flags, the variable and the flag", async () => {
      await assert.rejects(
        createConfig({ schema: pieces, env: { prefix: "APP", vars: { APP_HTTP__TIMEOUT: "5" } } }),
        invalid(
          /^env APP_HTTP__TIMEOUT: http\.timeout: expected duration, got "5" \(invalid duration "5": a unit is missing/,
        ),
      );
      await assert.rejects(
        createConfig({ schema: pieces, env: noEnv, args: ["--http.idle", "1x"] }),
        invalid(/^flag --http\.idle: http\.idle: expected duration, got "1x"/),
      );
    });

    await t.step("a writeOnly value of the wrong type is not printed", async () => {
      await assert.rejects(
        createConfig({ schema, files: [`${dir}/password.yaml`], env: noEnv }),
        (error: unknown) => {
          invalid(/password\.yaml:2:3: db\.password: expected string, got \[redacted\]/)(error);
          assert.ok(!(error as ConfigError).message.includes("123456"));
          return true;
        },
      );
    });

    await t.step("a transform that throws becomes a ConfigError saying what to do", async () => {
      const throwing = z.object({
        timeout: z.string().transform((text) => {
          throw new Error(`Invalid duration "${text}"`);
        }),
      });
      await assert.rejects(
        createConfig({ schema: throwing, env: noEnv, args: ["--timeout", "x"] }),
        invalid(/schema threw while validating: Invalid duration "x" \(a transform that throws/),
      );
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
