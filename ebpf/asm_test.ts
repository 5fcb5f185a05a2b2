import assert from "node:assert/strict";
import { asm, assemble, R0, R1, R10, R2, reg } from "./asm.ts";

const hex = (bytes: Uint8Array) => [...bytes].map((b) => b.toString(16).padStart(2, "0")).join(" ");

Deno.test("assemble() encodes instructions as the kernel expects", async (t) => {
  await t.step("mov, alu and memory", () => {
    assert.equal(hex(assemble([asm.mov64(R0, 0)])), "b7 00 00 00 00 00 00 00");
    assert.equal(hex(assemble([asm.mov64(R1, reg(R2))])), "bf 21 00 00 00 00 00 00");
    assert.equal(hex(assemble([asm.mov32(R1, -1)])), "b4 01 00 00 ff ff ff ff");
    assert.equal(hex(assemble([asm.alu64("add", R2, -4)])), "07 02 00 00 fc ff ff ff");
    assert.equal(hex(assemble([asm.alu64("rsh", R1, 32)])), "77 01 00 00 20 00 00 00");
    assert.equal(hex(assemble([asm.ldx("w", R0, R1, 0)])), "61 10 00 00 00 00 00 00");
    assert.equal(hex(assemble([asm.stx("dw", R10, -8, R1)])), "7b 1a f8 ff 00 00 00 00");
    assert.equal(hex(assemble([asm.st("w", R10, -4, 7)])), "62 0a fc ff 07 00 00 00");
  });
  await t.step("64-bit immediates and map fds take two slots", () => {
    assert.equal(
      hex(assemble([asm.ldImm64(R1, 0x1122334455667788n)])),
      "18 01 00 00 88 77 66 55 00 00 00 00 44 33 22 11",
    );
    assert.equal(
      hex(assemble([asm.ldMapFd(R1, 5)])),
      "18 11 00 00 05 00 00 00 00 00 00 00 00 00 00 00",
    );
  });
  await t.step("calls and exit", () => {
    assert.equal(hex(assemble([asm.call("map_lookup_elem")])), "85 00 00 00 01 00 00 00");
    assert.equal(hex(assemble([asm.call(131)])), "85 00 00 00 83 00 00 00");
    assert.equal(hex(assemble([asm.exit()])), "95 00 00 00 00 00 00 00");
  });
  await t.step("jumps resolve labels forward and back, counting wide slots", () => {
    const code = assemble([
      asm.label("top"),
      asm.jmp("jeq", R1, 0, "out"), // slot 0 → 4: offset 3
      asm.ldImm64(R2, 1n), // slots 1-2
      asm.ja("top"), // slot 3 → 0: offset -4
      asm.label("out"),
      asm.exit(), // slot 4
    ]);
    assert.equal(code.length, 5 * 8);
    const view = new DataView(code.buffer);
    assert.equal(view.getUint8(0), 0x15);
    assert.equal(view.getInt16(2, true), 3);
    assert.equal(view.getInt16(3 * 8 + 2, true), -4);
    assert.equal(hex(assemble([asm.jmp("jgt", R1, reg(R2), 1)])), "2d 21 01 00 00 00 00 00");
  });
});

Deno.test("assemble() rejects bad programs with the reason", () => {
  assert.throws(() => assemble([asm.ja("nowhere")]), /unknown label nowhere/);
  assert.throws(() => assemble([asm.label("a"), asm.label("a")]), /Label a is defined twice/);
  assert.throws(() => asm.mov64(11 as 0, 0), /register r11 does not exist/);
  assert.throws(() => asm.mov64(R0, 2 ** 33), /does not fit 32 bits/);
});
