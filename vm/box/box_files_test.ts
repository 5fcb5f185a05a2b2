import assert from "node:assert/strict";
import { boxMetadata, boxVagrantfile, debianMirror } from "./box_files.ts";

Deno.test("boxMetadata() describes a libvirt qcow2 box", () => {
  assert.deepEqual(boxMetadata(16), { provider: "libvirt", format: "qcow2", virtual_size: 16 });
  assert.equal(
    JSON.stringify(boxMetadata(8)),
    '{"provider":"libvirt","format":"qcow2","virtual_size":8}',
  );
  assert.throws(() => boxMetadata(0), /positive integer of GiB, got 0/);
  assert.throws(() => boxMetadata(1.5), /got 1.5/);
});

Deno.test("boxVagrantfile() sets the libvirt defaults of the box", () => {
  const ruby = boxVagrantfile({ memoryMiB: 3072, cpus: 3 });
  assert.match(ruby, /^Vagrant\.configure\("2"\) do \|config\|$/m);
  assert.match(ruby, /libvirt\.memory = 3072/);
  assert.match(ruby, /libvirt\.cpus = 3/);
  assert.match(ruby, /libvirt\.disk_bus = "virtio"/);
  assert.match(ruby, /config\.ssh\.username = "vagrant"/);
  // balanced blocks
  assert.equal((ruby.match(/\bdo\b/g) ?? []).length, (ruby.match(/^\s*end$/gm) ?? []).length);
  assert.throws(() => boxVagrantfile({ memoryMiB: -1, cpus: 2 }), /memoryMiB must be a positive/);
});

Deno.test("boxVagrantfile() output passes ruby's syntax check", async (t) => {
  let ruby: string | undefined;
  try {
    ruby = new TextDecoder().decode(
      (await new Deno.Command("which", { args: ["ruby"], stdout: "piped" }).output()).stdout,
    ).trim();
  } catch { /* no which */ }
  if (!ruby) {
    console.error("SKIP boxVagrantfile() ruby syntax check: needs ruby (apt-get install ruby)");
    return;
  }
  await t.step("ruby -c", async () => {
    const child = new Deno.Command(ruby!, {
      args: ["-c"],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(boxVagrantfile({ memoryMiB: 2048, cpus: 2 })));
    await writer.close();
    const { code, stdout } = await child.output();
    assert.equal(code, 0);
    assert.match(new TextDecoder().decode(stdout), /Syntax OK/);
  });
});

Deno.test("debianMirror() finds the suite's mirror in apt's configuration", async (t) => {
  await t.step("deb822 stanzas, security archive not taken for the main suite", () => {
    const sources = `Types: deb
URIs: http://security.example/debian-security
Suites: bookworm-security
Components: main

Types: deb
# a comment
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
`;
    assert.equal(debianMirror([sources], "bookworm"), "http://mirror.example/debian");
  });
  await t.step("disabled stanzas and deb-src are skipped", () => {
    const sources = `Types: deb
URIs: http://off.example/debian
Suites: bookworm
Enabled: no

Types: deb-src
URIs: http://src.example/debian
Suites: bookworm

Types: deb
URIs: http://on.example/debian
Suites: bookworm
`;
    assert.equal(debianMirror([sources], "bookworm"), "http://on.example/debian");
  });
  await t.step("one-line sources.list with options", () => {
    const list = `# comment
deb-src http://src.example/debian bookworm main
deb [arch=amd64 signed-by=/k.gpg] http://line.example/debian bookworm main contrib
`;
    assert.equal(debianMirror([list], "bookworm"), "http://line.example/debian");
  });
  await t.step("no mirror for the suite", () => {
    assert.equal(
      debianMirror(["deb http://x.example/debian trixie main\n"], "bookworm"),
      undefined,
    );
    assert.equal(debianMirror([], "bookworm"), undefined);
  });
});
