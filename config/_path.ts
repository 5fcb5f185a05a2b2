/**
 * Paths into configuration trees: dotted strings at the API, arrays of segments inside, and the
 * type-level helpers that make `get("dns.cache.size")` typed from the schema.
 *
 * @module
 */

/** One step of a path: an object key or an array index. */
export type Segment = string | number;

/** Values that are leaves for typed paths: never descended into. */
export type ConfigLeaf =
  | string
  | number
  | boolean
  | bigint
  | symbol
  | null
  | undefined
  | Date
  | RegExp
  | ((...args: never[]) => unknown)
  | { readonly reveal: () => string };

/** Depth countdown for {@linkcode ConfigPath}. */
export type ConfigPathDepth = [never, 0, 1, 2, 3, 4, 5, 6, 7];

/**
 * Every dotted path into `T` (objects by key, arrays by index), up to eight levels deep.
 *
 * @typeParam T The configuration type.
 */
export type ConfigPath<T, Depth extends number = 8> = [Depth] extends [never] ? never
  : T extends ConfigLeaf ? never
  : T extends readonly (infer E)[]
    ? `${number}` | `${number}.${ConfigPath<E, ConfigPathDepth[Depth]>}`
  : T extends object ? {
      [K in keyof T & string]: K | `${K}.${ConfigPath<NonNullable<T[K]>, ConfigPathDepth[Depth]>}`;
    }[keyof T & string]
  : never;

/**
 * The type at a dotted path into `T`.
 *
 * @typeParam T The configuration type.
 * @typeParam P The path.
 */
export type ConfigPathValue<T, P extends string> = P extends `${infer Head}.${infer Rest}`
  ? T extends readonly (infer E)[] ? Head extends `${number}` ? ConfigPathValue<E, Rest> | undefined
    : never
  : Head extends keyof T ? ConfigPathValue<NonNullable<T[Head]>, Rest> | Extract<T[Head], undefined>
  : never
  : T extends readonly (infer E)[] ? P extends `${number}` ? E | undefined : never
  : P extends keyof T ? T[P]
  : never;

const splitCache = new Map<string, readonly Segment[]>();

/** Splits `"a.b.0.c"` into `["a", "b", 0, "c"]`; the empty string is the root. */
export function splitPath(path: string): readonly Segment[] {
  const cached = splitCache.get(path);
  if (cached !== undefined) return cached;
  const segments: Segment[] = path === ""
    ? []
    : path.split(".").map((part) => (/^(0|[1-9]\d*)$/.test(part) ? Number(part) : part));
  if (splitCache.size > 10_000) splitCache.clear();
  splitCache.set(path, segments);
  return segments;
}

/** The dotted path of `key` (an object key or an array index) below `path`; `""` is the root. */
export function childPath(path: string, key: string | number): string {
  return path === "" ? String(key) : `${path}.${key}`;
}

/** A deep copy of arrays and plain objects, with every other value passed through `leaf`. */
export function mapTree(value: unknown, leaf: (value: unknown) => unknown): unknown {
  if (Array.isArray(value)) return value.map((item) => mapTree(item, leaf));
  if (isPlainObject(value)) {
    const out: Record<string, unknown> = {};
    for (const [key, child] of Object.entries(value)) out[key] = mapTree(child, leaf);
    return out;
  }
  return leaf(value);
}

/** Returns whether `value` is a plain object (not an array, not a class instance). */
export function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (value === null || typeof value !== "object") return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/** Reads the value at `segments` in `tree`, `undefined` when any step is missing. */
export function getAt(tree: unknown, segments: readonly Segment[]): unknown {
  let node = tree;
  for (const segment of segments) {
    if (node === null || typeof node !== "object") return undefined;
    if (Array.isArray(node)) {
      if (typeof segment !== "number") return undefined;
      node = node[segment];
    } else {
      if (!Object.hasOwn(node, segment)) return undefined;
      node = (node as Record<string, unknown>)[segment];
    }
  }
  return node;
}

/** Sets `value` at `segments` in `tree`, creating objects (or arrays for numeric steps). */
export function setAt(tree: Record<string, unknown>, segments: readonly Segment[], value: unknown) {
  let node: Record<string | number, unknown> = tree;
  for (let i = 0; i < segments.length - 1; i++) {
    const segment = segments[i]!;
    let next = node[segment];
    if (next === null || typeof next !== "object") {
      next = typeof segments[i + 1] === "number" ? [] : {};
      node[segment] = next;
    }
    node = next as Record<string | number, unknown>;
  }
  node[segments[segments.length - 1]!] = value;
}

/** Freezes a tree of plain objects and arrays in place and returns it. */
export function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === "object" && !Object.isFrozen(value)) {
    if (Array.isArray(value) || isPlainObject(value)) {
      for (const child of Object.values(value)) deepFreeze(child);
    }
    Object.freeze(value);
  }
  return value;
}

const PROTOTYPE_KEYS = new Set<string>(Object.getOwnPropertyNames(Object.prototype));
const safeCache = new Map<string, readonly Segment[] | null>();

/**
 * Reads `path` from a tree of plain objects and arrays: the fast path of `get()`. Paths whose
 * segments could resolve through `Object.prototype` (`"constructor"`, `"__proto__"`) take the
 * careful `getAt` instead.
 */
export function readPath(tree: unknown, path: string): unknown {
  let segments = safeCache.get(path);
  if (segments === undefined) {
    const split = splitPath(path);
    segments = split.some((s) => typeof s === "string" && PROTOTYPE_KEYS.has(s)) ? null : split;
    if (safeCache.size > 10_000) safeCache.clear();
    safeCache.set(path, segments);
  }
  if (segments === null) return getAt(tree, splitPath(path));
  let node = tree as Record<string | number, unknown> | undefined;
  for (let i = 0; i < segments.length; i++) {
    if (node === null || typeof node !== "object") return undefined;
    const segment = segments[i]!;
    if (typeof segment !== "number" && Array.isArray(node)) return undefined;
    node = node[segment] as Record<string | number, unknown> | undefined;
  }
  return node;
}
