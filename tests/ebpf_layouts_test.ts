/**
 * Every struct layout bpf2ts decodes, checked against what a real BPF program wrote: the same
 * map value read through the map's BTF codec and through the generated zero-copy view.
 *
 * @module
 */
import assert from "node:assert/strict";
import { BTF, Bytes, structCodec, Uint32 } from "@triad/ebpf";
import { bpfTest, testWith, tracefs } from "./requirements.ts";
import { LeakTracker } from "./ebpf_leak_check.ts";
import { getppid } from "./ebpf_getppid.ts";
import {
  decodeLayout,
  LAYOUT_SIZE,
  LayoutsObject,
  layoutsObjectBytes,
  LayoutView,
  ShadeNames,
} from "./ebpf_bpf/layouts.gen.ts";

const EXPECTED = {
  id: 0xdeadbeef,
  low: 9,
  mid: 0xabc,
  high: 0x1234,
  as_u32: 0x04030201,
  as_bytes: new Uint8Array([1, 2, 3, 4]),
  nested: { a: 513, b: new Uint8Array([1, 2, 3]) },
  list: [{ a: 0, b: new Uint8Array([0, 0, 0]) }, { a: 7, b: new Uint8Array([0, 0, 9]) }],
  temps: [-40, 0, 125],
  flag: true,
  shade: 7,
  name: "kernel",
  big: 0xfedcba9876543210n,
};

Deno.test("generated views and BTF codecs agree on random bytes", () => {
  const objectBtf = BTF.fromElf(layoutsObjectBytes);
  const codec = structCodec(objectBtf, "layout");
  assert.equal(codec.size, LAYOUT_SIZE);
  for (let round = 0; round < 50; round++) {
    const bytes = crypto.getRandomValues(new Uint8Array(LAYOUT_SIZE + 8));
    const view = new DataView(bytes.buffer);
    const generated = decodeLayout(view, 8);
    const decoded = codec.decode(view, 8) as Record<string, unknown>;
    // bool normalises any non-zero byte; compare the rest exactly
    assert.deepEqual({ ...generated, flag: undefined }, { ...decoded, flag: undefined });
    assert.equal(generated.flag, bytes[8 + 36] !== 0);
  }
});

testWith("struct layouts written by a BPF program decode as written", [
  ...bpfTest,
  tracefs,
], async () => {
  const tracker = new LeakTracker();
  {
    using layouts = LayoutsObject.open({ globals: { target_tgid: Deno.pid } });
    await layouts.load();
    tracker.addObject(layouts.object);
    using link = layouts.programs.fill_layout.attach();
    tracker.add("link", link.id);
    getppid();
    assert.deepEqual(layouts.maps.layouts.lookup(0), EXPECTED);
    const raw = layouts.object.map("layouts").withCodecs(Uint32, Bytes(LAYOUT_SIZE)).lookup(0)!;
    const view = new LayoutView(new DataView(raw.buffer, raw.byteOffset, raw.length));
    assert.deepEqual(view.toObject(), EXPECTED);
    assert.equal(view.mid, 0xabc);
    assert.equal(ShadeNames[view.shade], "SHADE_DARK");
  }
  await tracker.assertReleased();
});
