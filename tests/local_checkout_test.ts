/**
 * Using the packages from a local checkout, before they are on JSR, the way the top README says: a
 * project outside the repository runs `deno link <checkout>` (a `links` entry in its deno.json) and
 * imports `@triad/ebpf` and `@triad/config` by name. Importing `<checkout>/ebpf/mod.ts` by path
 * instead fails (`Import "@triad/core" not a dependency`): the packages import each other by name,
 * which only a workspace or a link resolves.
 *
 * @module
 */
import assert from "node:assert/strict";
import { btf, command, libbpf, testWith } from "./requirements.ts";

const checkout = new URL("../", import.meta.url).pathname.replace(/\/$/, "");

async function deno(cwd: string, ...args: string[]): Promise<string> {
  const output = await new Deno.Command(Deno.execPath(), {
    args,
    cwd,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  const text = new TextDecoder().decode(output.stdout);
  if (!output.success) {
    const stderr = new TextDecoder().decode(output.stderr);
    throw new Error(`deno ${args.join(" ")} in ${cwd} failed (exit ${output.code}):\n${stderr}`);
  }
  return text;
}

/** A project in a temporary directory outside the checkout, linked to it with `deno link`. */
async function linkedProject(): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "triad-user-" });
  assert.ok(!dir.startsWith(`${checkout}/`), `${dir} is inside the checkout`);
  await deno(dir, "link", checkout);
  const config = JSON.parse(await Deno.readTextFile(`${dir}/deno.json`));
  assert.equal(config.links?.length, 1, JSON.stringify(config));
  // The project's own dependency: zod for its configuration schema.
  config.imports = { zod: "npm:zod@^4.1.12" };
  await Deno.writeTextFile(`${dir}/deno.json`, JSON.stringify(config, null, 2));
  return dir;
}

Deno.test("a project outside the checkout imports @triad/ebpf and @triad/config by name", async (t) => {
  const dir = await linkedProject();
  try {
    await t.step("by path, without a link, it fails as the README says", async () => {
      const bare = await Deno.makeTempDir({ prefix: "triad-user-" });
      try {
        await Deno.writeTextFile(`${bare}/deno.json`, "{}\n");
        await Deno.writeTextFile(
          `${bare}/main.ts`,
          `import { errnoName } from "${checkout}/ebpf/mod.ts";\nconsole.log(errnoName(1));\n`,
        );
        await assert.rejects(
          deno(bare, "run", "main.ts"),
          /Import "@triad\/core" not a dependency/,
        );
      } finally {
        await Deno.remove(bare, { recursive: true });
      }
    });
    await t.step("with the link, it type-checks and runs", async () => {
      await Deno.writeTextFile(`${dir}/app.yaml`, "port: 8053\n");
      await Deno.writeTextFile(
        `${dir}/main.ts`,
        `import { asm, assemble, R0, TriadError } from "@triad/ebpf";
import { createConfig } from "@triad/config";
import { z } from "zod";

const code = assemble([asm.mov64(R0, 0), asm.exit()]);
await using config = await createConfig({
  schema: z.object({ port: z.number().int() }),
  files: ["app.yaml"],
  env: { prefix: "APP", vars: {} },
});
const port: number = config.get("port");
console.log(JSON.stringify({ instructions: code.length / 8, port, error: TriadError.name }));
`,
      );
      await deno(dir, "check", "main.ts");
      const printed = await deno(dir, "run", "--allow-read", "--allow-env", "main.ts");
      assert.deepEqual(JSON.parse(printed), { instructions: 2, port: 8053, error: "TriadError" });
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

testWith(
  "a project outside the checkout generates and opens its own skeleton with bpf2ts",
  [command("clang"), command("bpftool"), command("llvm-strip", "llvm"), libbpf, btf],
  async () => {
    const dir = await linkedProject();
    try {
      await Deno.mkdir(`${dir}/bpf`);
      await Deno.copyFile(
        `${checkout}/tests/ebpf_bpf/statics.bpf.c`,
        `${dir}/bpf/statics.bpf.c`,
      );
      await deno(dir, "run", "-A", `${checkout}/ebpf/gen/main.ts`, "bpf");
      await Deno.writeTextFile(
        `${dir}/main.ts`,
        `import { StaticsObject } from "./bpf/statics.gen.ts";

using statics = StaticsObject.open({ globals: { target_tgid: 1 } });
console.log(JSON.stringify(statics.object.globalNames.toSorted()));
`,
      );
      await deno(dir, "check", "main.ts");
      const printed = await deno(dir, "run", "-A", "main.ts");
      assert.deepEqual(JSON.parse(printed), ["calls", "target_tgid"]);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);
