/**
 * Privileged integration tests of objects, programs, maps and the ring buffer on the real kernel:
 * the generated skeleton of `ebpf_bpf/probe.bpf.c` is loaded, attached to a syscall tracepoint and
 * a raw tracepoint, and driven by real `getppid` system calls from this process.
 *
 * @module
 */
import assert from "node:assert/strict";
import {
  BpfError,
  BpfObject,
  Link,
  PerfBufferReader,
  RingBufferReader,
  Uint32,
  Uint64,
  VerifierError,
} from "@triad/ebpf";
import { bpfCapabilities, bpffs, btf, command, libbpf, testWith, tracefs } from "./requirements.ts";
import { LeakTracker } from "./ebpf_leak_check.ts";
import { EventKind, EventView, ProbeObject } from "./ebpf_bpf/probe.gen.ts";
import { RejectedObject } from "./ebpf_bpf/rejected.gen.ts";

const needs = [bpfCapabilities, btf, libbpf, tracefs, command("bpftool")];
const libc = Deno.dlopen("libc.so.6", { getppid: { parameters: [], result: "i32" } });

/** Makes `count` real getppid system calls. */
function getppid(count: number): void {
  for (let i = 0; i < count; i++) libc.symbols.getppid();
}

function track(tracker: LeakTracker, object: BpfObject): void {
  for (const program of object.programs) tracker.add("prog", program.id);
  for (const map of object.maps) tracker.add("map", map.id);
}

testWith("BpfObject delivers exactly the triggered ring buffer events", needs, async (t) => {
  const tracker = new LeakTracker();
  {
    using probe = ProbeObject.open({ globals: { target_tgid: Deno.pid, marker: 0xbeefn } });
    await probe.load();
    track(tracker, probe.object);
    using link = probe.programs.handle_getppid.attach();
    tracker.add("link", link.id);
    await using reader = new RingBufferReader(probe.maps.events, {
      lost: () => probe.readGlobal("dropped"),
    });

    await t.step("for await yields one record per system call, in order", async () => {
      getppid(25);
      const seen: number[] = [];
      for await (const record of reader.values({ preventClose: true })) {
        const event = new EventView(record);
        assert.equal(event.tgid, Deno.pid);
        assert.equal(event.kind, EventKind.EVENT_GETPPID);
        assert.equal(event.port, 0xbeef);
        assert.equal(event.delta, -event.seq);
        assert.equal(typeof event.comm, "string");
        seen.push(Number(event.seq));
        if (seen.length === 25) break;
      }
      assert.deepEqual(seen, Array.from({ length: 25 }, (_, i) => i));
    });

    await t.step("nothing more arrives than was triggered", async () => {
      assert.equal(reader.closed, false);
      assert.equal(await reader.wait(200), false);
      assert.equal(reader.readNext(), undefined);
      assert.equal(reader.lost, 0);
      assert.equal(probe.readGlobal("emitted"), 25n);
    });

    await t.step("a map written from TypeScript steers the program", async () => {
      probe.maps.settings.update(0, { mode: 1, limit: 9 });
      assert.deepEqual(probe.maps.settings.lookup(0), { mode: 1, limit: 9 });
      getppid(1);
      assert.equal(await reader.wait(2000), true);
      const record = reader.readNext();
      assert.ok(record);
      assert.equal(new EventView(record).flags, 1);
    });

    await t.step("break out of for await closes the reader", async () => {
      getppid(1);
      for await (const record of reader) {
        assert.equal(new EventView(record).seq, 26n);
        break;
      }
      assert.equal(reader.closed, true);
    });

    await t.step("copy: true records outlive the next read", async () => {
      probe.maps.settings.update(0, { mode: 0, limit: 0 });
      await using copying = new RingBufferReader(probe.maps.events, { copy: true });
      getppid(3);
      assert.equal(await copying.wait(2000), true);
      const records: DataView[] = [];
      copying.consume((record) => records.push(record));
      assert.deepEqual(records.map((r) => Number(new EventView(r).seq)), [27, 28, 29]);
    });

    await t.step("views handed out are detached after close", async () => {
      await using closing = new RingBufferReader(probe.maps.events);
      getppid(1);
      assert.equal(await closing.wait(2000), true);
      const record = closing.readNext()!;
      assert.equal(record.byteLength, 48);
      closing.close();
      assert.throws(() => record.getUint32(0, true), TypeError);
    });
  }
  await tracker.assertReleased();
});

testWith(
  "BpfMap reads what a program wrote and the program reads what we wrote",
  needs,
  async (t) => {
    const tracker = new LeakTracker();
    {
      using probe = ProbeObject.open({ globals: { target_tgid: Deno.pid } });
      await probe.load();
      track(tracker, probe.object);
      using link = probe.programs.count_sys_enter.attachRawTracepoint("sys_enter");
      tracker.add("link", link.id);

      await t.step("a hash map counts this process's system calls", () => {
        const before = probe.maps.counts.lookup(Deno.pid) ?? 0n;
        getppid(10);
        const after = probe.maps.counts.lookup(Deno.pid) ?? 0n;
        assert.ok(after - before >= 10n, `counted ${after - before} system calls, expected >= 10`);
        assert.deepEqual([...probe.maps.counts.keys()], [Deno.pid]);
      });

      await t.step("per-CPU values add up", () => {
        const values = probe.maps.percpu_hits.lookupPerCpu(0)!;
        assert.equal(values.length, navigator.hardwareConcurrency >= 1 ? values.length : 0);
        assert.ok(values.reduce((a, b) => a + b, 0n) >= 10n);
        assert.throws(() => probe.maps.percpu_hits.lookup(0), /lookupPerCpu/);
      });

      await t.step("withCodecs re-types a map", () => {
        const raw = probe.object.map("counts").withCodecs(Uint32, Uint64);
        assert.equal(typeof raw.lookup(Deno.pid), "bigint");
        assert.equal(raw.lookup(1), undefined);
      });

      await t.step("update flags are enforced", () => {
        probe.maps.counts.update(1, 5n, "noexist");
        assert.throws(
          () => probe.maps.counts.update(1, 6n, "noexist"),
          (e) => e instanceof BpfError && e.code === "eexist",
        );
        assert.throws(
          () => probe.maps.counts.update(2, 6n, "exist"),
          (e) => e instanceof BpfError && e.code === "enoent",
        );
        assert.equal(probe.maps.counts.delete(1), true);
        assert.equal(probe.maps.counts.delete(1), false);
      });
    }
    await tracker.assertReleased();
  },
);

testWith("PerfBufferReader delivers exactly the triggered perf events", needs, async (t) => {
  const tracker = new LeakTracker();
  {
    using probe = ProbeObject.open({ globals: { target_tgid: Deno.pid } });
    await probe.load();
    track(tracker, probe.object);
    await using reader = new PerfBufferReader(probe.maps.perf_events, { pagesPerCpu: 2 });
    using link = probe.programs.handle_getppid.attach();
    tracker.add("link", link.id);
    probe.maps.settings.update(0, { mode: 2, limit: 0 });

    await t.step("one sample per system call, decoded with the generated view", async () => {
      getppid(40);
      const seen: bigint[] = [];
      for await (const record of reader.values({ preventClose: true })) {
        const event = new EventView(record);
        assert.equal(event.kind, EventKind.EVENT_OTHER);
        assert.equal(event.tgid, Deno.pid);
        assert.ok(reader.lastCpu >= 0 && reader.lastCpu < navigator.hardwareConcurrency);
        seen.push(event.seq);
        if (seen.length === 40) break;
      }
      // Records from different CPUs interleave; each CPU's are in order, all arrive once.
      assert.deepEqual(
        seen.toSorted((a, b) => Number(a - b)),
        Array.from({ length: 40 }, (_, i) => BigInt(i)),
      );
      assert.equal(await reader.wait(200), false);
      assert.equal(reader.lost, 0);
    });

    await t.step("a full ring counts lost samples per CPU", () => {
      // 2 pages per CPU hold ~130 samples of 60 bytes; write far more without reading.
      getppid(2000);
      let read = 0;
      reader.consume(() => read++);
      // The kernel writes its LOST record once the ring has room again: make one more sample.
      getppid(1);
      reader.consume(() => read++);
      assert.ok(reader.lost > 0, "the kernel reported lost samples");
      assert.equal(read + reader.lost, 2001);
    });
  }
  await tracker.assertReleased();
});

testWith("BpfObject.load() raises VerifierError with the whole log", needs, async () => {
  const tracker = new LeakTracker();
  {
    using rejected = RejectedObject.open();
    const error = await rejected.load().then(() => undefined, (e) => e);
    assert.ok(error instanceof VerifierError, `expected a VerifierError, got ${error}`);
    assert.equal(error.program, "unchecked_lookup");
    assert.equal(error.code, "verifier");
    assert.match(error.failure.reason, /invalid mem access/);
    assert.equal(typeof error.failure.instruction, "number");
    assert.match(error.failure.source ?? "", /rejected\.bpf\.c:\d+/);
    assert.match(error.log, /processed \d+ insns/);
    assert.match(error.message, new RegExp(`at instruction ${error.failure.instruction}`));
  }
  await tracker.assertReleased();
});

testWith("BpfObject globals are checked by name and type", needs, async () => {
  const tracker = new LeakTracker();
  assert.throws(
    () => ProbeObject.open({ globals: { target_tgid: -1 } }),
    /global target_tgid \(const volatile __u32\).*does not fit/,
  );
  assert.throws(
    () => BpfObject.open(new Uint8Array(16)),
    (e) => e instanceof BpfError,
  );
  {
    using probe = ProbeObject.open();
    assert.throws(
      () => probe.object.setGlobal("nope", 1),
      /no global variable nope \(it has: .*target_tgid/,
    );
    assert.throws(() => probe.object.program("handle_getppid"), /call load\(\) before/);
    await probe.load();
    track(tracker, probe.object);
    assert.throws(() => probe.object.setGlobal("target_tgid", 1), /before load/);
    assert.throws(() => probe.object.map("nope"), /has no map nope \(it has: settings, events/);
    probe.object.writeGlobal("emitted", 7n);
    assert.equal(probe.readGlobal("emitted"), 7n);
  }
  await tracker.assertReleased();
});

testWith("Link.pin() keeps a program attached until unpinned", [...needs, bpffs], async () => {
  const tracker = new LeakTracker();
  const path = `/sys/fs/bpf/triad_testlink_${Deno.pid}`;
  try {
    using probe = ProbeObject.open({ globals: { target_tgid: Deno.pid } });
    await probe.load();
    track(tracker, probe.object);
    const link = probe.programs.count_sys_enter.attach();
    tracker.add("link", link.id);
    link.pin(path);
    assert.equal(link.pinPath, path);
    link.close(); // the pin keeps it attached
    using reopened = Link.fromPin(path);
    assert.ok(reopened.id > 0);
    Deno.removeSync(path);
  } finally {
    await Deno.remove(path).catch(() => {});
  }
  await tracker.assertReleased();
});
