/**
 * The difference between two configuration snapshots.
 *
 * @module
 */
import { childPath, type ConfigPath, isPlainObject } from "./_path.ts";
import { Secret } from "./secret.ts";

/**
 * One changed value.
 *
 * @typeParam T The configuration type: `path` is typed from it (`ConfigPath<T>`), a plain string
 * when unknown.
 */
export interface ConfigChange<T = unknown> {
  /** The dotted path that changed (arrays change as a whole). */
  readonly path: unknown extends T ? string : ConfigPath<T>;
  /** The value before, `undefined` when it was added. */
  readonly before: unknown;
  /** The value after, `undefined` when it was removed. */
  readonly after: unknown;
}

/**
 * Lists what changed between two snapshots: one entry per changed leaf, per whole array that
 * changed, and per added or removed key. Secrets compare by their content.
 *
 * @param before The old snapshot.
 * @param after The new snapshot.
 * @returns The changes, in key order; empty when nothing changed.
 *
 * @example
 * ```ts
 * import { diffConfig } from "@triad/config";
 * import assert from "node:assert/strict";
 *
 * const changes = diffConfig({ a: { b: 1, c: 2 } }, { a: { b: 1, c: 3 } });
 * assert.deepEqual(changes, [{ path: "a.c", before: 2, after: 3 }]);
 * ```
 */
export function diffConfig(before: unknown, after: unknown): ConfigChange[] {
  const changes: ConfigChange[] = [];
  const walk = (a: unknown, b: unknown, path: string) => {
    if (isPlainObject(a) && isPlainObject(b)) {
      for (const key of Object.keys(a)) {
        const child = childPath(path, key);
        if (!Object.hasOwn(b, key)) changes.push({ path: child, before: a[key], after: undefined });
        else walk(a[key], b[key], child);
      }
      for (const key of Object.keys(b)) {
        if (!Object.hasOwn(a, key)) {
          changes.push({
            path: childPath(path, key),
            before: undefined,
            after: b[key],
          });
        }
      }
      return;
    }
    if (!deepEqual(a, b)) changes.push({ path, before: a, after: b });
  };
  walk(before, after, "");
  return changes;
}

/** Structural equality of configuration values (plain objects, arrays, secrets, primitives). */
export function deepEqual(a: unknown, b: unknown): boolean {
  if (Object.is(a, b)) return true;
  if (a instanceof Secret && b instanceof Secret) return a.equals(b);
  if (Array.isArray(a) && Array.isArray(b)) {
    return a.length === b.length && a.every((item, i) => deepEqual(item, b[i]));
  }
  if (isPlainObject(a) && isPlainObject(b)) {
    const keys = Object.keys(a);
    return keys.length === Object.keys(b).length &&
      keys.every((key) => Object.hasOwn(b, key) && deepEqual(a[key], b[key]));
  }
  if (a instanceof Date && b instanceof Date) return a.getTime() === b.getTime();
  if (
    a !== null && b !== null && typeof a === "object" && typeof b === "object" &&
    Object.getPrototypeOf(a) === Object.getPrototypeOf(b)
  ) {
    // Objects made by schema transforms (URL, Map…) compare by what they print.
    return String(a) === String(b) && JSON.stringify(a) === JSON.stringify(b);
  }
  return false;
}
