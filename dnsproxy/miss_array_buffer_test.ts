/**
 * A cache miss makes no ArrayBuffer of its own: every one has a malloc'd backing store, an
 * extension the young generation's scavenges sweep, and a free. Counted in the socketless setup of
 * the miss benchmarks by wrapping what makes them, so the count does not depend on collections.
 *
 * @module
 */
import assert from "node:assert/strict";
import { socketlessMiss } from "./bench/_socketless_miss.ts";

const TYPED_ARRAYS = [
  "Int8Array",
  "Uint8Array",
  "Uint8ClampedArray",
  "Int16Array",
  "Uint16Array",
  "Int32Array",
  "Uint32Array",
  "Float32Array",
  "Float64Array",
  "BigInt64Array",
  "BigUint64Array",
] as const;

/**
 * Counts the ArrayBuffers made from here on (their constructors, typed-array constructors not
 * given a buffer, `slice` and the like, `TextEncoder.encode`) until `restore()`.
 */
function countArrayBuffers(): { readonly count: number; restore(): void } {
  const state = { count: 0 };
  const made = () => void state.count++;
  const global = globalThis as unknown as Record<string, unknown>;
  const undo: (() => void)[] = [];
  const replace = (on: Record<string, unknown>, name: string, value: unknown) => {
    const old = on[name];
    on[name] = value;
    undo.push(() => on[name] = old);
  };
  const OriginalArrayBuffer = ArrayBuffer;
  const counted = (name: string, fresh: (args: unknown[]) => boolean) => {
    const original = global[name] as new (...args: unknown[]) => object;
    const wrapped: typeof original = new Proxy(original, {
      construct(target, args, newTarget) {
        if (fresh(args)) made();
        return Reflect.construct(target, args, newTarget === wrapped ? target : newTarget);
      },
    });
    replace(global, name, wrapped);
  };
  counted("ArrayBuffer", () => true);
  for (const name of TYPED_ARRAYS) {
    counted(
      name,
      (args) => !(args[0] instanceof OriginalArrayBuffer || args[0] instanceof SharedArrayBuffer),
    );
  }
  const counting = (on: object, names: readonly string[]) => {
    for (const name of names) {
      const methods = on as Record<string, unknown>;
      const original = methods[name] as ((...args: unknown[]) => unknown) | undefined;
      if (original === undefined) continue;
      replace(methods, name, function (this: unknown, ...args: unknown[]) {
        made();
        return original.apply(this, args);
      });
    }
  };
  counting(Object.getPrototypeOf(Uint8Array.prototype), [
    "slice",
    "map",
    "filter",
    "toReversed",
    "toSorted",
    "with",
  ]);
  counting(ArrayBuffer.prototype, ["slice", "transfer", "transferToFixedLength"]);
  counting(TextEncoder.prototype, ["encode"]);
  counting(global, ["structuredClone"]);
  return {
    get count() {
      return state.count;
    },
    restore() {
      for (const step of undo.reverse()) step();
    },
  };
}

Deno.test("a cache miss makes no ArrayBuffer of its own (shared slabs only)", () => {
  const harness = socketlessMiss();
  const { proxy, replyAll, tick, ask } = harness;
  let misses = 0;
  const miss = () => {
    ask();
    replyAll();
    if (++misses % 64 === 0) tick();
  };
  try {
    // Past the cache's growth from 4,096 entries to 8,192 (its tables are typed arrays).
    for (let i = 0; i < 5000; i++) miss();
    const counter = countArrayBuffers();
    const n = 2000;
    try {
      for (let i = 0; i < n; i++) miss();
    } finally {
      counter.restore();
    }
    assert.equal(harness.answers, misses);
    // What is left are slabs shared by many misses: the cache's (256 KiB), the harness's replies
    // (64 KiB); 3 for 2,000 misses when this was written. One ArrayBuffer a miss would be n, one
    // a 4 KiB slab of copies (50 bytes a miss) about n / 80.
    assert.ok(counter.count < n / 100, `${counter.count} ArrayBuffers for ${n} misses`);
  } finally {
    proxy.close();
  }
});
