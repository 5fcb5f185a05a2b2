/**
 * Feature probes on the real kernel, the missing-libbpf message, and readers that leave Deno's
 * event loop free while they wait.
 *
 * @module
 */
import assert from "node:assert/strict";
import { features, PerfBufferReader, RingBufferReader, UnsupportedFeatureError } from "@triad/ebpf";
import { bpfCapabilities, bpfTest, kernelAtLeast, libbpf, testWith } from "./requirements.ts";
import { LeakTracker } from "./ebpf_leak_check.ts";
import { getppid } from "./ebpf_getppid.ts";
import { pollUntil } from "./wait_for.ts";
import { EventKind, EventView, ProbeObject } from "./ebpf_bpf/probe.gen.ts";
import { SizesObject } from "./ebpf_bpf/sizes.gen.ts";

testWith("features probes what this kernel has", [
  bpfCapabilities,
  libbpf,
  kernelAtLeast(5, 8, "BPF ring buffer"),
], async (t) => {
  await t.step("program and map types, helpers", () => {
    assert.equal(features.programType("socket_filter"), true);
    assert.equal(features.programType("tracepoint"), true);
    assert.equal(features.mapType("hash"), true);
    assert.equal(features.mapType("ringbuf"), true);
    assert.equal(features.helper("tracepoint", "ringbuf_reserve"), true);
    assert.equal(features.helper("socket_filter", "skb_store_bytes"), false);
    assert.equal(features.helper("sched_cls", "skb_store_bytes"), true);
    assert.equal(features.helper("xdp", "probe_read"), false);
    features.requireMapType("ringbuf");
    features.requireProgramType("xdp");
  });
  await t.step("attach kinds agree with what attaching does", () => {
    const report = features.report();
    assert.equal(report.raw_tracepoint, true);
    assert.equal(typeof report.fentry, "boolean");
    const kprobeEvents = [
      "/sys/kernel/tracing/kprobe_events",
      "/sys/bus/event_source/devices/kprobe",
    ]
      .some((path) => {
        try {
          Deno.statSync(path);
          return true;
        } catch {
          return false;
        }
      });
    assert.equal(report.kprobe, kprobeEvents);
  });
  await t.step("a missing feature names the kernel version that added it", () => {
    for (const kind of ["kprobe", "fentry"] as const) {
      if (features.attach(kind)) continue;
      assert.throws(
        () => features.requireAttach(kind),
        (e) =>
          e instanceof UnsupportedFeatureError && e.minimumKernel !== "" &&
          e.message.includes(Deno.osRelease()),
      );
    }
    assert.throws(() => features.programType("nope" as "xdp"), /Unknown program type nope/);
  });
});

Deno.test("a missing libbpf is one clear error naming the package", async () => {
  const code = `
    import { BpfObject } from "@triad/ebpf";
    try { BpfObject.open(new Uint8Array(8)); } catch (e) { console.log(e.name + ": " + e.message); }
  `;
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["eval", code],
    cwd: new URL("..", import.meta.url).pathname,
    env: { TRIAD_LIBBPF: "/nonexistent/libbpf.so.1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(output.stdout);
  assert.match(
    text,
    /^LibbpfMissingError: Cannot load libbpf \(tried \/nonexistent\/libbpf\.so\.1\): install it with "apt-get install libbpf1"/,
  );
});

testWith(
  "RingBufferReader waits without blocking the event loop",
  bpfTest,
  async () => {
    const tracker = new LeakTracker();
    {
      using probe = ProbeObject.open({ globals: { target_tgid: 1 } }); // nothing will be emitted
      await probe.load();
      tracker.addObject(probe.object);
      await using reader = new RingBufferReader(probe.maps.events, { pollIntervalMs: 10_000 });
      let ticks = 0;
      const timer = setInterval(() => ticks++, 10);
      const started = performance.now();
      const waiting = (async () => {
        for await (const _ of reader) assert.fail("no record was expected");
      })();
      // The event loop keeps running while the reader waits: timers fire.
      await pollUntil(() => ticks >= 5, "5 timer ticks while the reader waited", 5000);
      reader.close(); // wakes the pending epoll_wait on its worker thread
      await waiting;
      clearInterval(timer);
      assert.ok(performance.now() - started < 2000, "close() ended the 10 s wait promptly");
    }
    await tracker.assertReleased();
  },
);

testWith("for await over a ring that never runs dry still lets timers run", bpfTest, async () => {
  const tracker = new LeakTracker();
  {
    using probe = ProbeObject.open({
      globals: { target_tgid: Deno.pid },
      maxEntries: { events: 16 << 20 },
    });
    await probe.load();
    tracker.addObject(probe.object);
    using link = probe.programs.handle_getppid.attach();
    tracker.add("link", link.id);
    getppid(100_000); // 100k records wait in the ring
    await using reader = new RingBufferReader(probe.maps.events);
    let ticks = 0;
    const timer = setInterval(() => ticks++, 1);
    let records = 0;
    const started = performance.now();
    for await (const _ of reader.values({ preventClose: true })) {
      if (++records === 100_000) break;
    }
    const elapsed = performance.now() - started;
    clearInterval(timer);
    assert.equal(records, 100_000);
    // Without yielding, no timer could fire before the loop ends.
    assert.ok(ticks >= 1, `no timer ran during ${elapsed.toFixed(0)} ms of iteration`);
  }
  await tracker.assertReleased();
});

testWith(
  "for await reads every record of a counted producer, allocating nothing per record",
  bpfTest,
  async (t) => {
    const tracker = new LeakTracker();
    {
      using probe = ProbeObject.open({ globals: { target_tgid: Deno.pid } });
      await probe.load();
      using link = probe.programs.handle_getppid.attach();
      tracker.addObject(probe.object);
      tracker.add("link", link.id);

      await t.step("ring buffer: 100,000 records through a ring that holds 4,681", async () => {
        // The 256 KiB ring holds 4,681 records of 48 bytes: the producer makes 2,000 at a time
        // and waits for the loop to take them, 50 times, so nothing may be lost on the way.
        await using reader = new RingBufferReader(probe.maps.events);
        const views = new Set<DataView>();
        let seq = 0n;
        for (let burst = 0; burst < 50; burst++) {
          getppid(2_000);
          let taken = 0;
          for await (const record of reader.values({ preventClose: true })) {
            views.add(record);
            const event = new EventView(record);
            assert.equal(event.seq, seq, "every record once, in order");
            assert.equal(event.delta, -seq);
            assert.equal(event.tgid, Deno.pid);
            assert.equal(event.kind, EventKind.EVENT_GETPPID);
            seq++;
            if (++taken === 2_000) break;
          }
        }
        assert.equal(seq, 100_000n);
        assert.equal(probe.readGlobal("emitted"), 100_000n);
        assert.equal(probe.readGlobal("dropped"), 0n);
        assert.equal(reader.records, 100_000);
        // One reused view for records of one length: no DataView (nor promise) per record.
        assert.equal(views.size, 1, `${views.size} distinct views for 100,000 records`);
      });

      await t.step("perf buffer: 2,000 records of 60 bytes, some wrapping the ring", async () => {
        probe.maps.settings.update(0, { mode: 2, limit: 0 });
        await using reader = new PerfBufferReader(probe.maps.perf_events, { pagesPerCpu: 2 });
        const first = probe.readGlobal("emitted");
        const views = new Set<DataView>();
        const seqs: bigint[] = [];
        for (let burst = 0; burst < 40; burst++) {
          getppid(50);
          for await (const record of reader.values({ preventClose: true })) {
            views.add(record);
            assert.equal(record.byteLength, 60);
            assert.equal(record.getUint8(59), 0xee, "the record's last byte, also when it wrapped");
            const event = new EventView(record);
            assert.equal(event.kind, EventKind.EVENT_OTHER);
            assert.equal(event.tgid, Deno.pid);
            seqs.push(event.seq - first);
            if (seqs.length === (burst + 1) * 50) break;
          }
        }
        // Records from different CPUs interleave; all arrive once.
        assert.deepEqual(
          seqs.toSorted((a, b) => Number(a - b)),
          Array.from({ length: 2_000 }, (_, i) => BigInt(i)),
        );
        assert.equal(reader.lost, 0);
        assert.equal(views.size, 1, `${views.size} distinct views for 2,000 records`);
      });
    }
    await tracker.assertReleased();
  },
);

testWith(
  "for await hands out records of every length whole, copied or viewed, wrapped or not",
  bpfTest,
  async (t) => {
    const tracker = new LeakTracker();
    // Lengths around the word size, the 256-byte copy limit and the program's 512-byte maximum.
    const lengths = [1, 2, 3, 4, 5, 7, 8, 13, 55, 56, 57, 255, 256, 257, 300, 511, 512];
    const payload = Uint8Array.from({ length: 512 }, (_, i) => (i * 31 + 7) & 0xff);
    /** Asserts `record` is `size` bytes long and starts with the first `length` of the payload. */
    const check = (record: DataView, length: number, where: string, size = length) => {
      assert.equal(record.byteLength, size, where);
      const bytes = new Uint8Array(record.buffer, record.byteOffset, length);
      assert.deepEqual(bytes, payload.subarray(0, length), where);
    };
    {
      using sizes = SizesObject.open({ globals: { target_tgid: Deno.pid } });
      await sizes.load();
      sizes.maps.payload.update(0, payload);
      using link = sizes.programs.emit.attach();
      tracker.addObject(sizes.object);
      tracker.add("link", link.id);

      await t.step("ring buffer: one burst of three records of each length", async () => {
        await using reader = new RingBufferReader(sizes.maps.records);
        for (const length of lengths) {
          sizes.object.writeGlobal("record_length", length);
          getppid(3);
        }
        let index = 0;
        for await (const record of reader.values({ preventClose: true })) {
          const length = lengths[Math.floor(index / 3)]!;
          check(record, length, `record ${index} (${length} bytes)`);
          if (++index === lengths.length * 3) break;
        }
        assert.equal(sizes.readGlobal("dropped"), 0n);
      });

      await t.step("perf buffer: five rounds through 4 KiB rings, so records wrap", async () => {
        sizes.object.writeGlobal("perf", 1);
        await using reader = new PerfBufferReader(sizes.maps.perf_records, { pagesPerCpu: 1 });
        for (let round = 0; round < 5; round++) {
          for (const length of lengths) {
            sizes.object.writeGlobal("record_length", length);
            getppid();
            for await (const record of reader.values({ preventClose: true })) {
              // The kernel pads raw samples so that their u32 size and data fill 8-byte words.
              const padded = Math.ceil((length + 4) / 8) * 8 - 4;
              check(record, length, `round ${round}, ${length} bytes`, padded);
              break;
            }
          }
        }
        assert.equal(reader.lost, 0);
        assert.equal(reader.records, lengths.length * 5);
      });
    }
    await tracker.assertReleased();
  },
);
