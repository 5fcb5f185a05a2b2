/**
 * A partial array from a layer that sets items by index (`APP_UPSTREAMS__1__ADDRESS`): merged
 * into the array below it item by item instead of replacing it.
 *
 * @module
 */

/** Items by index; each deep-merges into the item at that index of the array below. */
export class ArrayPatch {
  readonly items: Map<number, unknown> = new Map();

  /** The patch as a plain array, for when there is nothing below (holes stay undefined). */
  toArray(): unknown[] {
    const out: unknown[] = [];
    for (const [index, item] of [...this.items].sort(([a], [b]) => a - b)) out[index] = item;
    return Array.from(out);
  }
}
