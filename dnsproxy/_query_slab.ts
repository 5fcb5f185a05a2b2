/**
 * The slab size of the byte pools whose copies live as long as an upstream exchange, and
 * {@linkcode QueryBytes}, whose slabs are carved again once their copies are given back.
 *
 * @module
 */

/**
 * Bytes per slab for copies kept until a query is answered: one query waiting for its timeout
 * keeps its whole slab alive, so slabs stay small (4 KiB still saves dozens of mallocs each).
 */
export const QUERY_SLAB = 4096;

/** Emptied slabs {@linkcode QueryBytes} keeps for reuse (128 KiB). */
const SPARE_SLABS = 32;

/** A slab of {@linkcode QueryBytes}: how far it is carved, and how many of its copies are out. */
class Slab {
  used = 0;
  out = 0;
  constructor(readonly bytes: Uint8Array) {}
}

/**
 * Copies kept until a query is answered, carved from {@linkcode QUERY_SLAB} slabs as a `BytePool`
 * carves its own, except that a slab is carved again once every copy made from it has been given
 * back ({@linkcode give}). A `BytePool` makes a new slab every few dozen misses, and each is an
 * ArrayBuffer: a malloc, an extension every scavenge sweeps, a free. A copy never given back only
 * keeps its slab from being used again (the collector frees it with its last view); a copy given
 * back must not be used after, nor given back twice.
 *
 * @example
 * ```ts ignore
 * const bytes = new QueryBytes();
 * const kept = bytes.copy(receivedView);
 * // ... the query is answered:
 * bytes.give(kept);
 * ```
 */
export class QueryBytes {
  #slab: Slab;
  readonly #spare: Slab[] = [];
  /** The slab of every buffer handed out (weak: a slab dropped is freed with its last view). */
  readonly #slabs = new WeakMap<ArrayBufferLike, Slab>();

  constructor() {
    this.#slab = this.#newSlab();
  }

  #newSlab(): Slab {
    const slab = new Slab(new Uint8Array(QUERY_SLAB));
    this.#slabs.set(slab.bytes.buffer, slab);
    return slab;
  }

  /**
   * A view of `length` bytes, not zeroed (the caller writes every byte).
   *
   * @param length Its length.
   * @returns The view; one past a quarter slab has a buffer of its own.
   */
  alloc(length: number): Uint8Array {
    if (length > QUERY_SLAB >> 2) return new Uint8Array(length);
    // 8-byte aligned, as a BytePool's.
    const size = (length + 7) & ~7;
    let slab = this.#slab;
    if (slab.used + size > QUERY_SLAB) {
      if (slab.out === 0) slab.used = 0;
      else slab = this.#slab = this.#spare.pop() ?? this.#newSlab();
    }
    const view = slab.bytes.subarray(slab.used, slab.used + length);
    slab.used += size;
    slab.out++;
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

  /**
   * Gives back a copy: its slab is carved again once all of its copies are back. Anything not
   * made here is ignored.
   *
   * @param view A view from {@linkcode alloc} or {@linkcode copy}, no longer used.
   */
  give(view: Uint8Array): void {
    const slab = this.#slabs.get(view.buffer);
    // (a slab with no copy out ignores a stray give: counted, it could be carved twice at once)
    if (slab === undefined || slab.out === 0 || --slab.out > 0 || slab === this.#slab) return;
    slab.used = 0;
    if (this.#spare.length < SPARE_SLABS) this.#spare.push(slab);
  }
}
