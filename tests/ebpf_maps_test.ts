/**
 * Privileged tests of standalone maps (create, typed access, flags, iteration, batch ops, per-CPU
 * values, pinning) and of programs built with the instruction builder that use them.
 *
 * @module
 */
import assert from "node:assert/strict";
import {
  asm,
  BpfError,
  BpfMap,
  Bytes,
  CString,
  Int32,
  Program,
  R0,
  R1,
  R10,
  R2,
  reg,
  Uint32,
  Uint64,
  VerifierError,
} from "@triad/ebpf";
import { bpfCapabilities, bpffs, command, libbpf, testWith } from "./requirements.ts";
import { LeakTracker } from "./ebpf_leak_check.ts";

const needs = [bpfCapabilities, libbpf, command("bpftool")];

testWith("BpfMap.create() makes a typed standalone map", needs, async (t) => {
  const tracker = new LeakTracker();
  {
    using map = BpfMap.create({
      type: "hash",
      name: "triad_t_hash",
      key: Uint32,
      value: CString(16),
      maxEntries: 8,
    });
    tracker.add("map", map.id);

    await t.step("lookup, update with flags, delete", () => {
      assert.equal(map.lookup(1), undefined);
      map.update(1, "one");
      map.update(2, "two", "noexist");
      assert.equal(map.lookup(1), "one");
      map.update(1, "uno", "exist");
      assert.equal(map.lookup(1), "uno");
      assert.throws(
        () => map.update(3, "x", "exist"),
        (e) => e instanceof BpfError && e.code === "enoent",
      );
      assert.equal(map.delete(2), true);
      assert.equal(map.delete(2), false);
    });

    await t.step("a full map says so", () => {
      for (let key = 10; key < 17; key++) map.update(key, `k${key}`);
      assert.throws(
        () => map.update(99, "over"),
        (e) => e instanceof BpfError && /E2BIG|ENOSPC/.test(e.message),
      );
    });

    await t.step("keys() and entries() see every entry once", () => {
      const entries = [...map.entries()].sort(([a], [b]) => a - b);
      assert.deepEqual(entries[0], [1, "uno"]);
      assert.equal(entries.length, 8);
      assert.deepEqual(new Set(map.keys()).size, 8);
    });

    await t.step("bad values are refused before the kernel sees them", () => {
      assert.throws(() => map.update(-1, "x"), /does not fit/);
      assert.throws(() => map.update(1, "much too long for sixteen"), /does not fit char\[16\]/);
    });
  }
  await tracker.assertReleased();
});

testWith("BpfMap batch operations move many entries per system call", needs, async () => {
  const tracker = new LeakTracker();
  {
    using map = BpfMap.create({ type: "hash", key: Uint32, value: Uint64, maxEntries: 1000 });
    tracker.add("map", map.id);
    const entries = Array.from({ length: 600 }, (_, i) => [i, BigInt(i * i)] as const);
    map.updateBatch(entries);
    const read = new Map(map.entriesBatch(128));
    assert.equal(read.size, 600);
    assert.equal(read.get(599), 599n * 599n);
    map.deleteBatch([0, 1, 2]);
    assert.equal(map.lookup(1), undefined);
    const drained = [...map.entriesBatch(100, { deleting: true })];
    assert.equal(drained.length, 597);
    assert.deepEqual([...map.keys()], []);
  }
  await tracker.assertReleased();
});

testWith(
  "BpfMap batch calls fall back to one key at a time where a map has no batch ops",
  needs,
  async () => {
    const tracker = new LeakTracker();
    {
      // LPM tries have no batch operations; keys are { prefixlen: u32, address: 4 bytes }.
      using trie = BpfMap.create({
        type: "lpm_trie",
        key: Bytes(8),
        value: Uint32,
        maxEntries: 8,
        flags: 1,
      });
      tracker.add("map", trie.id);
      const key = (bits: number, ...address: number[]) =>
        new Uint8Array([bits, 0, 0, 0, ...address]);
      trie.updateBatch([[key(8, 10, 0, 0, 0), 1], [key(16, 10, 1, 0, 0), 2]]);
      assert.equal(trie.lookup(key(32, 10, 1, 2, 3)), 2); // longest prefix wins
      assert.equal(trie.lookup(key(32, 10, 9, 9, 9)), 1);
      assert.equal([...trie.entriesBatch()].length, 2);
      trie.deleteBatch([key(16, 10, 1, 0, 0)]);
      assert.equal(trie.lookup(key(32, 10, 1, 2, 3)), 1);
    }
    await tracker.assertReleased();
  },
);

testWith("BpfMap per-CPU values: one per possible CPU", needs, async () => {
  const tracker = new LeakTracker();
  {
    using map = BpfMap.create({ type: "percpu_array", key: Uint32, value: Uint32, maxEntries: 2 });
    tracker.add("map", map.id);
    const cpus = map.lookupPerCpu(0)!.length;
    assert.ok(cpus >= 1);
    map.updatePerCpu(1, Array.from({ length: cpus }, (_, cpu) => cpu + 10));
    assert.deepEqual(map.lookupPerCpu(1), Array.from({ length: cpus }, (_, cpu) => cpu + 10));
    map.updatePerCpu(0, 7);
    assert.deepEqual(map.lookupPerCpu(0), new Array(cpus).fill(7));
    assert.throws(() => map.updatePerCpu(0, [1]), /per-CPU values given/);
    const batch = new Map(map.entriesBatch());
    assert.deepEqual(batch.get(0), new Array(cpus).fill(7));
  }
  await tracker.assertReleased();
});

testWith("BpfMap.pin() and fromPin() share a map across handles", [...needs, bpffs], async () => {
  const tracker = new LeakTracker();
  const path = `/sys/fs/bpf/triad_test_map_${Deno.pid}`;
  try {
    {
      using map = BpfMap.create({
        type: "array",
        name: "triad_t_pin",
        key: Uint32,
        value: Int32,
        maxEntries: 4,
      });
      tracker.add("map", map.id);
      map.update(3, -42);
      map.pin(path);
    }
    {
      using again = BpfMap.fromPin(path, { key: Uint32, value: Int32 });
      assert.equal(again.name, "triad_t_pin");
      assert.equal(again.type, "array");
      assert.equal(again.maxEntries, 4);
      assert.equal(again.lookup(3), -42);
      using raw = BpfMap.fromPin(path);
      assert.deepEqual(
        raw.lookup(new Uint8Array([3, 0, 0, 0])),
        new Uint8Array([0xd6, 0xff, 0xff, 0xff]),
      );
      assert.throws(
        () => raw.withCodecs(Uint64, Int32),
        /key codec is 8 bytes but the map's keys are 4/,
      );
    }
    BpfMap.unpin(path);
    assert.throws(() => BpfMap.fromPin(path), (e) => e instanceof BpfError && e.code === "enoent");
  } finally {
    await Deno.remove(path).catch(() => {});
  }
  await tracker.assertReleased();
});

testWith(
  "Program.load() runs instruction-built programs that use maps and helpers",
  needs,
  async (t) => {
    const tracker = new LeakTracker();
    {
      using counts = BpfMap.create({ type: "array", key: Uint32, value: Uint64, maxEntries: 1 });
      tracker.add("map", counts.id);

      await t.step("a socket filter counting packets in a map", () => {
        // key = 0 on the stack; value = lookup(counts, &key); if value: *value += 1; return skb->len
        using filter = Program.load({
          type: "socket_filter",
          name: "count_len",
          license: "GPL",
          instructions: [
            asm.ldx("w", R0, R1, 0), // r0 = skb->len
            asm.stx("dw", R10, -16, R0), // spill the length
            asm.st("w", R10, -4, 0), // key = 0
            asm.ldMapFd(R1, counts),
            asm.mov64(R2, reg(R10)),
            asm.alu64("add", R2, -4),
            asm.call("map_lookup_elem"),
            asm.jmp("jeq", R0, 0, "out"),
            asm.ldx("dw", R1, R0, 0),
            asm.alu64("add", R1, 1),
            asm.stx("dw", R0, 0, R1),
            asm.label("out"),
            asm.ldx("dw", R0, R10, -16),
            asm.exit(),
          ],
        });
        tracker.add("prog", filter.id);
        const result = filter.testRun(new Uint8Array(64));
        assert.equal(result.retval, 64 - 14); // the kernel strips the Ethernet header first
        filter.testRun({ data: new Uint8Array(80), repeat: 4 });
        assert.equal(counts.lookup(0), 5n);
      });

      await t.step("the verifier's rejection carries the log and the instruction", () => {
        const error = (() => {
          try {
            Program.load({
              type: "socket_filter",
              license: "GPL",
              instructions: [asm.ldx("w", R0, R2, 0), asm.exit()], // r2 is not initialised
            });
          } catch (e) {
            return e;
          }
        })();
        assert.ok(error instanceof VerifierError, `expected VerifierError, got ${error}`);
        assert.equal(error.failure.instruction, 0);
        assert.match(error.failure.reason, /R2 !read_ok/);
        assert.match(error.log, /processed 1 insns/);
      });

      await t.step("a verifier log larger than the first buffer is grown until it fits", () => {
        // 3000 instructions at log level 2 print far more than the first 64 KiB buffer.
        const body = Array.from({ length: 3000 }, (_, i) => asm.alu64("add", R0, i % 7));
        using big = Program.load({
          type: "socket_filter",
          license: "GPL",
          logLevel: 2,
          instructions: [asm.mov64(R0, 0), ...body, asm.exit()],
        });
        tracker.add("prog", big.id);
        assert.equal(big.type, "socket_filter");
        assert.ok(big.verifierLog.length > 1 << 16, `log of ${big.verifierLog.length} bytes`);
        assert.match(big.verifierLog, /^func#0 @0|^0: /);
        assert.match(big.verifierLog, /3001: \(95\) exit/);
        assert.match(big.verifierLog.trimEnd(), /processed 3002 insns.*\n?.*$/);
      });

      await t.step("Program.fromPin() reopens a pinned program", () => {
        const path = `/sys/fs/bpf/triad_test_prog_${Deno.pid}`;
        try {
          using program = Program.load({
            type: "socket_filter",
            name: "pinned_ret7",
            license: "GPL",
            instructions: [asm.mov64(R0, 7), asm.exit()],
          });
          tracker.add("prog", program.id);
          program.pin(path);
          using again = Program.fromPin(path);
          assert.equal(again.id, program.id);
          assert.equal(again.name, "pinned_ret7");
          assert.equal(again.type, "socket_filter");
          assert.equal(again.testRun(new Uint8Array(20)).retval, 7);
        } finally {
          Deno.removeSync(path);
        }
      });

      await t.step("an unknown type is refused", () => {
        assert.throws(
          () => Program.load({ type: "nope" as "xdp", license: "GPL", instructions: [asm.exit()] }),
          /Unknown program type nope/,
        );
      });
    }
    await tracker.assertReleased();
  },
);

testWith("BpfMap.create() names the failure", needs, () => {
  assert.throws(
    () => BpfMap.create({ type: "hash", key: Uint32, value: Bytes(8), maxEntries: 0 }),
    (e) => e instanceof BpfError && /Create hash map .*EINVAL/.test(e.message),
  );
});
