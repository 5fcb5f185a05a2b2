import assert from "node:assert/strict";
import { encodeUsdtSpec, USDT_SPEC_SIZE } from "./_usdt.ts";

Deno.test("encodeUsdtSpec() encodes constants, registers and memory", () => {
  const bytes = encodeUsdtSpec("-4@-4(%rsp) 8@%rax 2@$7 1@%r8b", "p");
  assert.equal(bytes.length, USDT_SPEC_SIZE);
  const view = new DataView(bytes.buffer);
  assert.equal(view.getUint32(0, true), 4);
  const arg = (i: number) => ({
    value: view.getBigInt64(8 + 16 * i, true),
    kind: view.getUint32(16 + 16 * i, true),
    reg: view.getUint16(20 + 16 * i, true),
    size: view.getInt8(22 + 16 * i),
  });
  assert.deepEqual(arg(0), { value: -4n, kind: 3, reg: 152, size: -4 });
  assert.deepEqual(arg(1), { value: 0n, kind: 2, reg: 80, size: 8 });
  assert.deepEqual(arg(2), { value: 7n, kind: 1, reg: 0, size: 2 });
  assert.deepEqual(arg(3), { value: 0n, kind: 2, reg: 72, size: 1 });
});

Deno.test("encodeUsdtSpec() names the probe and the argument it cannot read", () => {
  assert.throws(
    () => encodeUsdtSpec("8@%rax 4@%xmm0", "app:step"),
    /app:step: argument 2 "4@%xmm0": unknown x86-64 register %xmm0/,
  );
  assert.throws(
    () => encodeUsdtSpec("3@%rax", "p"),
    /argument 1 "3@%rax": size must be 1, 2, 4 or 8/,
  );
  assert.throws(
    () => encodeUsdtSpec("8@8(%rax,%rbx,8)", "p"),
    /only \$CONSTANT, %REGISTER and OFFSET\(%REGISTER\)/,
  );
});
