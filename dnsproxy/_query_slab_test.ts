import assert from "node:assert/strict";
import { QUERY_SLAB, QueryBytes } from "./_query_slab.ts";

Deno.test("QueryBytes carves a slab again once all of its copies are given back", () => {
  const bytes = new QueryBytes();
  const perSlab = QUERY_SLAB / 64;
  const first = Array.from({ length: perSlab }, (_, i) => bytes.copy(new Uint8Array(64).fill(i)));
  assert.ok(first.every((view) => view.buffer === first[0]!.buffer));
  // The slab is full: the next copy starts another.
  const second = bytes.copy(new Uint8Array(64));
  assert.notEqual(second.buffer, first[0]!.buffer);
  // Given back but one: not carved again.
  for (const view of first.slice(1)) bytes.give(view);
  assert.equal(first[5]![0], 5);
  bytes.give(first[0]!);
  // Now empty: the slab after `second`'s is this one again.
  for (let i = 1; i < perSlab; i++) bytes.copy(new Uint8Array(64));
  const reused = bytes.copy(new Uint8Array(64).fill(7));
  assert.equal(reused.buffer, first[0]!.buffer);
  assert.deepEqual([...reused], new Array(64).fill(7));
});

Deno.test("QueryBytes ignores what it did not make, and a slab with nothing out", () => {
  const bytes = new QueryBytes();
  bytes.give(new Uint8Array(8));
  const big = bytes.alloc(QUERY_SLAB); // past a quarter slab: a buffer of its own
  assert.equal(big.buffer.byteLength, QUERY_SLAB);
  bytes.give(big);
  const a = bytes.copy(new Uint8Array([1, 2, 3]));
  bytes.give(a);
  bytes.give(a); // its slab has nothing out: a second give changes nothing
  const b = bytes.copy(new Uint8Array([4, 5, 6]));
  const c = bytes.copy(new Uint8Array([7, 8, 9]));
  assert.deepEqual([...b, ...c], [4, 5, 6, 7, 8, 9]);
});
