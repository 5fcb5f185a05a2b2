/**
 * Feature probes on the real kernel, the missing-libbpf message, and readers that leave Deno's
 * event loop free while they wait.
 *
 * @module
 */
import assert from "node:assert/strict";
import { features, RingBufferReader, UnsupportedFeatureError } from "@triad/ebpf";
import { bpfCapabilities, bpfTest, kernelAtLeast, libbpf, testWith } from "./requirements.ts";
import { LeakTracker } from "./ebpf_leak_check.ts";
import { getppid } from "./ebpf_getppid.ts";
import { pollUntil } from "./wait_for.ts";
import { ProbeObject } from "./ebpf_bpf/probe.gen.ts";

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
