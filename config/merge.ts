/**
 * Deep merge of layers, with a strategy per array path, keeping the origin of every value and
 * what each value overrode.
 *
 * @module
 */
import type { Layer } from "./layer.ts";
import type { Origin } from "./origin.ts";
import { childPath, isPlainObject } from "./_path.ts";
import { ArrayPatch } from "./_array_patch.ts";

/**
 * How an array in a higher layer combines with the same array below it:
 * `replace` (the default), `append` (`[a, b]` + `[c]` = `[a, b, c]`), or `{ mergeByKey: "name" }`
 * (items with the same key are deep-merged, new items are appended).
 */
export type ArrayStrategy = "replace" | "append" | { readonly mergeByKey: string };

/** A value that was overridden by a higher layer. */
export interface OverriddenValue {
  /** The value before. */
  readonly value: unknown;
  /** Where it came from. */
  readonly origin: Origin | undefined;
}

/** The result of merging layers. */
export interface MergedLayers {
  /** The merged tree (fresh objects, never shared with the layers). */
  readonly tree: Record<string, unknown>;
  /** The origin of every node, by dotted path. */
  readonly origins: Map<string, Origin>;
  /** What each path overrode, oldest first. */
  readonly overridden: Map<string, OverriddenValue[]>;
}

/**
 * Merges layers, lowest priority first: objects deep-merge; arrays follow `arrays[path]`
 * (path with `*` for array indices, such as `"servers.*.ports"`); anything else is replaced.
 *
 * @param layers The layers, lowest priority first.
 * @param arrays Array strategies by path.
 * @returns The merged tree with origins and overridden values.
 *
 * @example
 * ```ts
 * import { mergeLayers } from "./merge.ts";
 * import assert from "node:assert/strict";
 *
 * const merged = mergeLayers([
 *   { kind: "defaults", name: "defaults", tree: { tags: ["a", "b"], port: 1 }, origins: new Map() },
 *   { kind: "env", name: "env", tree: { tags: ["c"], port: 2 }, origins: new Map() },
 * ], { tags: "append" });
 * assert.deepEqual(merged.tree, { tags: ["a", "b", "c"], port: 2 });
 * ```
 */
export function mergeLayers(
  layers: readonly Layer[],
  arrays: Readonly<Record<string, ArrayStrategy>> = {},
): MergedLayers {
  const tree: Record<string, unknown> = {};
  const origins = new Map<string, Origin>();
  const overridden = new Map<string, OverriddenValue[]>();
  const hasStrategies = Object.keys(arrays).length > 0;

  const strategyOf = (path: string): ArrayStrategy => {
    if (!hasStrategies) return "replace";
    const direct = arrays[path];
    if (direct !== undefined) return direct;
    return arrays[path.replace(/(^|\.)\d+(?=\.|$)/g, "$1*")] ?? "replace";
  };

  for (const layer of layers) {
    const originOf = (path: string, inherited: Origin | undefined) =>
      layer.origins.get(path) ?? inherited;

    /** Copies a subtree of the layer into the merged tree, recording origins under `dst`. */
    const copy = (
      value: unknown,
      src: string,
      dst: string,
      inherited: Origin | undefined,
    ): unknown => {
      const origin = originOf(src, inherited);
      if (origin !== undefined) origins.set(dst, origin);
      if (Array.isArray(value)) {
        return value.map((item, i) => copy(item, childPath(src, i), childPath(dst, i), origin));
      }
      if (isPlainObject(value)) {
        const out: Record<string, unknown> = {};
        for (const [key, child] of Object.entries(value)) {
          out[key] = copy(child, childPath(src, key), childPath(dst, key), origin);
        }
        return out;
      }
      return value;
    };

    const mergeObject = (
      target: Record<string, unknown>,
      source: Record<string, unknown>,
      src: string,
      dst: string,
      inherited: Origin | undefined,
    ) => {
      for (const [key, value] of Object.entries(source)) {
        if (value === undefined) continue;
        const srcPath = childPath(src, key);
        const dstPath = childPath(dst, key);
        const origin = originOf(srcPath, inherited);
        const existing = Object.hasOwn(target, key) ? target[key] : undefined;
        if (isPlainObject(value) && isPlainObject(existing)) {
          mergeObject(existing, value, srcPath, dstPath, origin);
          continue;
        }
        if (value instanceof ArrayPatch) {
          const array = Array.isArray(existing) ? existing : [];
          for (const [index, item] of value.items) {
            const itemSrc = childPath(srcPath, index);
            const itemDst = childPath(dstPath, index);
            if (isPlainObject(item) && isPlainObject(array[index])) {
              mergeObject(array[index] as Record<string, unknown>, item, itemSrc, itemDst, origin);
            } else {
              array[index] = copy(item, itemSrc, itemDst, origin);
            }
          }
          target[key] = Array.from(array);
          continue;
        }
        if (Array.isArray(value) && Array.isArray(existing)) {
          const strategy = strategyOf(dstPath);
          if (strategy === "append") {
            const offset = existing.length;
            value.forEach((item, i) => {
              existing.push(
                copy(item, childPath(srcPath, i), childPath(dstPath, offset + i), origin),
              );
            });
            continue;
          }
          if (typeof strategy === "object") {
            mergeByKey(existing, value, strategy.mergeByKey, srcPath, dstPath, origin);
            continue;
          }
        }
        if (existing !== undefined) {
          const list = overridden.get(dstPath) ?? [];
          list.push({ value: existing, origin: origins.get(dstPath) });
          overridden.set(dstPath, list);
        }
        target[key] = copy(value, srcPath, dstPath, inherited);
      }
    };

    const mergeByKey = (
      target: unknown[],
      source: unknown[],
      keyName: string,
      src: string,
      dst: string,
      inherited: Origin | undefined,
    ) => {
      source.forEach((item, i) => {
        const itemSrc = childPath(src, i);
        const key = isPlainObject(item) ? item[keyName] : undefined;
        const index = key === undefined
          ? -1
          : target.findIndex((t) => isPlainObject(t) && t[keyName] === key);
        const existing = index === -1 ? undefined : target[index];
        if (isPlainObject(existing) && isPlainObject(item)) {
          mergeObject(
            existing,
            item,
            itemSrc,
            childPath(dst, index),
            originOf(itemSrc, inherited),
          );
        } else {
          target.push(copy(item, itemSrc, childPath(dst, target.length), inherited));
        }
      });
    };

    mergeObject(tree, layer.tree, "", "", layer.origins.get(""));
  }
  return { tree, origins, overridden };
}
