import assert from "node:assert/strict";

Deno.test("README example runs and prints what it says", async () => {
  const readme = await Deno.readTextFile(new URL("./README.md", import.meta.url));
  const code = /## Use\n\n```ts\n([\s\S]*?)```/.exec(readme)?.[1];
  assert.ok(code, "the README has a ts example under ## Use");
  const expected = /^\/\/ (cache\.size = .*)$/m.exec(code)?.[1];
  assert.ok(expected, "the example says what it prints");
  const dir = await Deno.makeTempDir({ prefix: "triad-config-readme-" });
  try {
    await Deno.writeTextFile(`${dir}/example.ts`, code);
    await Deno.writeTextFile(`${dir}/dnsproxy.yaml`, "cache:\n  size: 2000\n");
    const run = (args: string[]) =>
      new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "-A",
          "--config",
          new URL("../deno.json", import.meta.url).pathname,
          `${dir}/example.ts`,
          ...args,
        ],
        cwd: dir,
        env: { DNS_CACHE__SIZE: "500" },
        clearEnv: false,
      }).output();
    const output = await run([]);
    const stdout = new TextDecoder().decode(output.stdout);
    assert.equal(output.code, 0, new TextDecoder().decode(output.stderr));
    assert.equal(stdout.trim(), expected);
    const help = await run(["--help"]);
    assert.match(new TextDecoder().decode(help.stdout), /^Usage: dnsproxy \[flags\]/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
