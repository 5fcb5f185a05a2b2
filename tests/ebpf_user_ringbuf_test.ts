/**
 * Privileged tests of user ring buffers (user space → kernel) on the real kernel: TypeScript
 * writes records into a `BPF_MAP_TYPE_USER_RINGBUF` map and a tracepoint program drains them with
 * `bpf_user_ringbuf_drain` (`ebpf_bpf/userring.bpf.c`).
 *
 * @module
 */
import assert from "node:assert/strict";
import { BpfError, BpfMap, UserRingBuffer } from "@triad/ebpf";
import { bpfTest, kernelAtLeast, testWith, tracefs } from "./requirements.ts";
import { LeakTracker } from "./ebpf_leak_check.ts";
import { getppid } from "./ebpf_getppid.ts";
import { UserringObject } from "./ebpf_bpf/userring.gen.ts";

const needs = [
  ...bpfTest,
  tracefs,
  kernelAtLeast(6, 1, "user ring buffers (BPF_MAP_TYPE_USER_RINGBUF, bpf_user_ringbuf_drain)"),
];

function record(value: bigint): DataView {
  const view = new DataView(new ArrayBuffer(8));
  view.setBigUint64(0, value, true);
  return view;
}

testWith("UserRingBuffer feeds records to a program that drains them", needs, async (t) => {
  const tracker = new LeakTracker();
  {
    using obj = UserringObject.open({ globals: { target_tgid: Deno.pid } });
    await obj.load();
    tracker.addObject(obj.object);
    using link = obj.programs.drain_commands.attach();
    tracker.add("link", link.id);
    using ring = new UserRingBuffer(obj.maps.commands);

    await t.step("records written are drained by the program's next run, in full", () => {
      for (const value of [1n, 20n, 300n]) ring.write(record(value));
      assert.equal(obj.readGlobal("records"), 0n);
      getppid();
      assert.equal(obj.readGlobal("records"), 3n);
      assert.equal(obj.readGlobal("total"), 321n);
      assert.equal(obj.readGlobal("last_drained"), 3n);
      getppid();
      assert.equal(obj.readGlobal("last_drained"), 0n);
    });

    await t.step("a short record reaches the program as short", () => {
      ring.write(new Uint8Array([1, 2, 3]));
      getppid();
      assert.equal(obj.readGlobal("short_records"), 1n);
    });

    await t.step("a full ring says so; draining makes room again", () => {
      let written = 0;
      while (ring.tryWrite(record(1n))) written++;
      // 4096 bytes, 16 per record (8 of header): all but what the kernel keeps apart.
      assert.ok(written > 200 && written <= 256, `${written} records`);
      assert.throws(
        () => ring.write(record(1n)),
        (error: unknown) =>
          error instanceof BpfError && /commands is full \(4096 bytes\)/.test(error.message),
      );
      getppid();
      assert.equal(obj.readGlobal("last_drained"), BigInt(written));
      ring.write(record(5n));
    });

    await t.step("bad use is refused with the map named", () => {
      assert.throws(
        () => ring.write(new Uint8Array(0)),
        /commands: a record needs at least 1 byte/,
      );
      using hash = BpfMap.create({ type: "hash", keySize: 4, valueSize: 4, maxEntries: 1 });
      tracker.add("map", hash.id);
      assert.throws(() => new UserRingBuffer(hash), /is hash, not user_ringbuf/);
      ring.close();
      assert.throws(() => ring.write(record(1n)), /commands is closed/);
    });
  }
  await tracker.assertReleased();
});
