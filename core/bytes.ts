/**
 * Cheap short-lived byte copies.
 *
 * Every `Uint8Array` allocated on its own (`new Uint8Array(n)`, `slice()`) gets a malloc'd backing
 * store that the garbage collector tracks as external memory: in Deno that costs about 0.3 µs per
 * array however small, and the collector's work grows with their number. A server copying a few
 * small buffers per packet (a query kept until its upstream answers, a datagram queued for the
 * next flush) spends more on that than on its own logic. {@linkcode BytePool} hands out views
 * carved from shared slabs instead, the way Node's `Buffer` pool does.
 *
 * @module
 */

/**
 * Hands out zero-filled byte views carved from shared 64 KiB slabs. A slab is never reused: it is
 * freed by the collector when no view into it is left, so a view must not be kept for long (a slab
 * stays alive as long as any of its views): use it for copies that live for a packet's round trip,
 * not for a cache. Views larger than a quarter slab get their own buffer.
 *
 * @example
 * ```ts
 * import { BytePool } from "@triad/core";
 * import assert from "node:assert/strict";
 *
 * const pool = new BytePool();
 * const received = new Uint8Array([1, 2, 3]);
 * const kept = pool.copy(received);
 * received[0] = 9; // the receive buffer is reused
 * assert.deepEqual([...kept], [1, 2, 3]);
 * assert.equal(pool.alloc(4).every((b) => b === 0), true);
 * ```
 */
export class BytePool {
  #slab: Uint8Array;
  #used = 0;

  /**
   * Creates a pool.
   *
   * @param slabSize Bytes per slab.
   */
  constructor(readonly slabSize: number = 65536) {
    this.#slab = new Uint8Array(slabSize);
  }

  /**
   * A zero-filled view of `length` bytes.
   *
   * @param length Its length.
   * @returns The view (its `buffer` is shared: use `byteOffset` with it).
   */
  alloc(length: number): Uint8Array {
    if (length > this.slabSize >> 2) return new Uint8Array(length);
    // 8-byte aligned, so a view can also be read as wider words.
    const size = (length + 7) & ~7;
    if (this.#used + size > this.slabSize) {
      this.#slab = new Uint8Array(this.slabSize);
      this.#used = 0;
    }
    const view = this.#slab.subarray(this.#used, this.#used + length);
    this.#used += size;
    return view;
  }

  /**
   * A copy of `bytes`.
   *
   * @param bytes What to copy.
   * @returns The copy.
   */
  copy(bytes: Uint8Array): Uint8Array {
    const view = this.alloc(bytes.length);
    view.set(bytes);
    return view;
  }
}
