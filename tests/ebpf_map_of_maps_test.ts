/**
 * Privileged tests of maps of maps on the real kernel: an `ARRAY_OF_MAPS` and a `HASH_OF_MAPS`
 * declared in C with BTF-defined inner maps (`ebpf_bpf/mapinmap.bpf.c`), whose inner maps are
 * swapped from TypeScript while a program counts into them, and maps of maps built from
 * TypeScript alone.
 *
 * @module
 */
import assert from "node:assert/strict";
import { BpfError, BpfMap, Uint32, Uint64 } from "@triad/ebpf";
import { bpfTest, kernelAtLeast, testWith, tracefs } from "./requirements.ts";
import { LeakTracker } from "./ebpf_leak_check.ts";
import { getppid } from "./ebpf_getppid.ts";
import { MapinmapObject } from "./ebpf_bpf/mapinmap.gen.ts";

const needs = [
  ...bpfTest,
  tracefs,
  // HASH_OF_MAPS and ARRAY_OF_MAPS came in 4.12; BTF-defined inner maps need libbpf only.
  kernelAtLeast(4, 12, "map-in-map (BPF_MAP_TYPE_ARRAY_OF_MAPS, BPF_MAP_TYPE_HASH_OF_MAPS)"),
];

testWith("Maps of maps declared in C switch inner maps at run time", needs, async (t) => {
  const tracker = new LeakTracker();
  {
    using obj = MapinmapObject.open({ globals: { target_tgid: Deno.pid } });
    await obj.load();
    tracker.addObject(obj.object);
    using link = obj.programs.handle_getppid.attach();
    tracker.add("link", link.id);
    const { by_slot, by_tgid, inner_a, inner_b } = obj.maps;

    await t.step("the BTF-declared initial value puts inner_a in slot 0", () => {
      assert.equal(by_slot.innerId(0), inner_a.id);
      assert.equal(by_slot.innerId(1), undefined);
      getppid(3);
      assert.equal(inner_a.lookup(0), 3n);
      assert.equal(inner_b.lookup(0), 0n);
    });

    await t.step("setInner() swaps slot 0 to inner_b; the program follows", () => {
      by_slot.setInner(0, inner_b);
      getppid(5);
      assert.equal(inner_a.lookup(0), 3n);
      assert.equal(inner_b.lookup(0), 5n);
    });

    await t.step("a map created in TypeScript goes into both outer maps", () => {
      using mine = BpfMap.create({ type: "array", key: Uint32, value: Uint64, maxEntries: 1 });
      tracker.add("map", mine.id);
      by_slot.setInner(0, mine);
      by_tgid.setInner(Deno.pid, mine, "noexist");
      getppid(2);
      // Counted twice per call: through the array slot and through the tgid key.
      assert.equal(mine.lookup(0), 4n);
      assert.equal(by_tgid.innerId(Deno.pid), mine.id);
      using reopened = by_tgid.inner(Deno.pid, { key: Uint32, value: Uint64 });
      assert.equal(reopened?.lookup(0), 4n);
      assert.equal(by_tgid.delete(Deno.pid), true);
      assert.equal(by_tgid.inner(Deno.pid), undefined);
      by_slot.setInner(0, inner_a);
      getppid(1);
      assert.equal(mine.lookup(0), 4n);
      assert.equal(inner_a.lookup(0), 4n);
    });

    await t.step("a map of another shape is refused, naming both maps", () => {
      using wrong = BpfMap.create({ type: "hash", key: Uint32, value: Uint64, maxEntries: 1 });
      tracker.add("map", wrong.id);
      assert.throws(
        () => by_slot.setInner(1, wrong),
        (error: unknown) =>
          error instanceof BpfError && /into array_of_maps map by_slot/.test(error.message) &&
          /shape/.test(error.message),
      );
      assert.throws(() => inner_a.setInner(0, wrong), /inner_a is array: setInner needs/);
    });
  }
  await tracker.assertReleased();
});

testWith("BpfMap.create() builds maps of maps from TypeScript", needs, async (t) => {
  const tracker = new LeakTracker();
  {
    using template = BpfMap.create({ type: "array", key: Uint32, value: Uint64, maxEntries: 4 });
    tracker.add("map", template.id);
    for (const type of ["array_of_maps", "hash_of_maps"] as const) {
      await t.step(`${type} holds inner maps by slot`, () => {
        using outer = BpfMap.create({ type, key: Uint32, maxEntries: 4, innerMap: template });
        tracker.add("map", outer.id);
        using a = BpfMap.create({ type: "array", key: Uint32, value: Uint64, maxEntries: 4 });
        tracker.add("map", a.id);
        a.update(2, 42n);
        outer.setInner(3, a);
        assert.equal(outer.innerId(3), a.id);
        using back = outer.inner(3, { key: Uint32, value: Uint64 });
        assert.equal(back?.lookup(2), 42n);
      });
    }
    await t.step("innerMap is required for maps of maps and refused elsewhere", () => {
      assert.throws(
        () => BpfMap.create({ type: "hash_of_maps", key: Uint32, maxEntries: 1 }),
        /innerMap is required/,
      );
      assert.throws(
        () =>
          BpfMap.create({
            type: "hash",
            key: Uint32,
            value: Uint64,
            maxEntries: 1,
            innerMap: template,
          }),
        /innerMap is only for array_of_maps and hash_of_maps/,
      );
    });
  }
  await tracker.assertReleased();
});
