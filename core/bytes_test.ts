import assert from "node:assert/strict";
import { BytePool } from "../mod.ts";

Deno.test("BytePool hands out zeroed views that never overlap", () => {
  const pool = new BytePool(64);
  const views = [3, 8, 1, 13].map((n) => pool.alloc(n));
  views.forEach((view, i) => {
    assert.ok(view.every((b) => b === 0));
    view.fill(i + 1);
  });
  views.forEach((view, i) => assert.ok(view.every((b) => b === i + 1), `view ${i} kept its bytes`));
  // 8-byte aligned offsets, and a fresh slab when this one is full.
  assert.deepEqual(views.map((v) => v.byteOffset), [0, 8, 16, 24]);
  assert.equal(pool.alloc(16).byteOffset, 40);
  const next = pool.alloc(16);
  assert.equal(next.byteOffset, 0);
  assert.notEqual(next.buffer, views[0]!.buffer);
});

Deno.test("BytePool gives a large request its own buffer, and copies", () => {
  const pool = new BytePool(64);
  const large = pool.alloc(17);
  assert.equal(large.byteOffset, 0);
  assert.equal(large.buffer.byteLength, 17);
  const source = new Uint8Array([5, 6, 7]);
  const copy = pool.copy(source);
  source.fill(0);
  assert.deepEqual([...copy], [5, 6, 7]);
});
