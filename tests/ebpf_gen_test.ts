/**
 * bpf2ts: the generated decoders read records correctly (no privileges needed), the embedded
 * object's BTF describes them, and regenerating from the sources gives the committed files.
 *
 * @module
 */
import assert from "node:assert/strict";
import { BTF } from "@triad/ebpf";
import { command, libbpf, testWith } from "./requirements.ts";
import {
  decodeEvent,
  EVENT_SIZE,
  EventKind,
  EventKindNames,
  EventView,
  probeObjectBytes,
} from "./ebpf_bpf/probe.gen.ts";

function sampleRecord(offset = 0): DataView {
  const view = new DataView(new ArrayBuffer(offset + EVENT_SIZE));
  view.setUint32(offset + 0, 1234, true);
  view.setUint32(offset + 4, 1200, true);
  view.setBigUint64(offset + 8, 2n ** 63n + 5n, true);
  view.setBigInt64(offset + 16, -9n, true);
  new Uint8Array(view.buffer).set(new TextEncoder().encode("curl\0junk"), offset + 24);
  view.setUint32(offset + 40, EventKind.EVENT_OTHER, true);
  view.setUint8(offset + 44, 3);
  view.setUint16(offset + 46, 443, true);
  return view;
}

Deno.test("generated views decode records in place", async (t) => {
  await t.step("every field, from any offset", () => {
    const view = sampleRecord(16);
    const event = new EventView(view, 16);
    assert.equal(event.pid, 1234);
    assert.equal(event.tgid, 1200);
    assert.equal(event.seq, 2n ** 63n + 5n);
    assert.equal(event.delta, -9n);
    assert.equal(event.comm, "curl");
    assert.equal(EventKindNames[event.kind], "EVENT_OTHER");
    assert.deepEqual(decodeEvent(view, 16), {
      pid: 1234,
      tgid: 1200,
      seq: 2n ** 63n + 5n,
      delta: -9n,
      comm: "curl",
      kind: 2,
      flags: 3,
      port: 443,
    });
  });
  await t.step("zero-copy: a view sees later writes to the record", () => {
    const view = sampleRecord();
    const event = new EventView(view);
    view.setUint16(46, 8080, true);
    assert.equal(event.port, 8080);
  });
  await t.step("short records are refused with the sizes", () => {
    assert.throws(
      () => new EventView(new DataView(new ArrayBuffer(40))),
      /struct event needs 48 bytes, the record has 40/,
    );
  });
});

Deno.test("the embedded object's BTF matches the generated types", () => {
  const btf = BTF.fromElf(probeObjectBytes, "probe.bpf.o");
  const event = btf.typeByName("event", "struct");
  assert.equal(event.size, EVENT_SIZE);
  assert.deepEqual(event.members.map((m) => m.name), [
    "pid",
    "tgid",
    "seq",
    "delta",
    "comm",
    "kind",
    "flags",
    "port",
  ]);
  const kind = btf.typeByName("event_kind", "enum");
  assert.deepEqual(Object.fromEntries(kind.values.map((v) => [v.name, v.value])), EventKind);
});

testWith(
  "deno task gen --check finds the committed files up to date",
  [libbpf, command("clang"), command("llvm-strip", "llvm"), command("bpftool")],
  async () => {
    const root = new URL("..", import.meta.url).pathname;
    const output = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "ebpf/gen/main.ts", "--check"],
      cwd: root,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(output.stderr);
    assert.equal(output.code, 0, `bpf2ts --check failed:\n${text}`);
    assert.match(text, /probe\.gen\.ts( is up to date|: types and skeleton are up to date)/);
  },
);

Deno.test("generated modules pass deno lint (objects without maps or globals too)", async () => {
  const root = new URL("..", import.meta.url).pathname;
  const files = [...Deno.readDirSync(`${root}tests/ebpf_bpf`)]
    .filter((entry) => entry.name.endsWith(".gen.ts"))
    .map((entry) => `tests/ebpf_bpf/${entry.name}`);
  assert.ok(files.includes("tests/ebpf_bpf/statics.gen.ts"), "statics.gen.ts has no maps");
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["lint", ...files],
    cwd: root,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  const text = new TextDecoder().decode(output.stderr) + new TextDecoder().decode(output.stdout);
  assert.equal(output.code, 0, `deno lint of the generated modules failed:\n${text}`);
});
