/**
 * What the configuration machinery needs to know about a schema — the keys, their types,
 * descriptions and defaults — read from the schema's JSON Schema (Standard JSON Schema).
 *
 * @module
 */
import type { Segment } from "./_path.ts";
import { isPlainObject } from "./_path.ts";

/** A JSON Schema object (draft 2020-12), loosely typed. */
export type JsonSchema = Record<string, unknown>;

/** A leaf of the schema's fixed-key object tree: a scalar, an array, or a map with free keys. */
interface SchemaLeaf {
  readonly segments: readonly string[];
  readonly node: JsonSchema;
}

/** JSON Schema primitive type names, plus `unknown` when the schema does not say. */
type SchemaType =
  | "string"
  | "number"
  | "integer"
  | "boolean"
  | "array"
  | "object"
  | "null"
  | "unknown";

/** Reads a Standard JSON Schema from a validator, when it offers one. */
export function standardJsonSchema(schema: unknown): JsonSchema | undefined {
  const standard = (schema as { "~standard"?: { jsonSchema?: unknown } } | null)?.["~standard"];
  const converter = standard?.jsonSchema as
    | { input?: (options: { target: string }) => unknown }
    | undefined;
  if (typeof converter?.input !== "function") return undefined;
  const result = converter.input({ target: "draft-2020-12" });
  return isPlainObject(result) ? result : undefined;
}

/** The schema's structure: keys, types, descriptions, defaults. */
export class SchemaInfo {
  readonly root: JsonSchema | undefined;
  #leaves: SchemaLeaf[] | undefined;

  constructor(root: JsonSchema | undefined) {
    this.root = root;
  }

  /** Follows `$ref`, and picks the non-null branch of `anyOf`/`oneOf` unions. */
  resolve(node: JsonSchema | undefined): JsonSchema | undefined {
    for (let guard = 0; node !== undefined && guard < 32; guard++) {
      const ref = node["$ref"];
      if (typeof ref === "string" && this.root !== undefined) {
        const match = /^#\/(\$defs|definitions)\/(.+)$/.exec(ref);
        const defs = match ? this.root[match[1]!] : undefined;
        const next = isPlainObject(defs) ? defs[decodeURIComponent(match![2]!)] : undefined;
        if (!isPlainObject(next)) return node;
        node = { ...node, ...next, $ref: undefined };
        continue;
      }
      const union = (node["anyOf"] ?? node["oneOf"]) as unknown;
      if (Array.isArray(union)) {
        const branches = union.filter((b) => isPlainObject(b) && b["type"] !== "null");
        if (branches.length === 1) {
          const rest = { ...node };
          delete rest["anyOf"];
          delete rest["oneOf"];
          node = { ...rest, ...(branches[0] as JsonSchema) };
          continue;
        }
        // Several real branches: prefer an object branch for walking.
        const objectBranch = branches.find((b) => isPlainObject(b) && this.typeOf(b) === "object");
        if (objectBranch !== undefined && node["properties"] === undefined) {
          node = { ...node, ...(objectBranch as JsonSchema), anyOf: undefined, oneOf: undefined };
          continue;
        }
      }
      const allOf = node["allOf"];
      if (Array.isArray(allOf) && allOf.length > 0 && node["properties"] === undefined) {
        node = { ...node, ...Object.assign({}, ...allOf.filter(isPlainObject)), allOf: undefined };
        continue;
      }
      return node;
    }
    return node;
  }

  /** The primary type of a node: the first non-null type it names. */
  typeOf(node: JsonSchema | undefined): SchemaType {
    const resolved = node === undefined ? undefined : this.resolve(node);
    if (resolved === undefined) return "unknown";
    const type = resolved["type"];
    if (typeof type === "string") return type as SchemaType;
    if (Array.isArray(type)) {
      const first = type.find((t) => t !== "null") ?? type[0];
      return typeof first === "string" ? first as SchemaType : "unknown";
    }
    if (isPlainObject(resolved["properties"])) return "object";
    if (Array.isArray(resolved["enum"])) {
      const first = resolved["enum"][0];
      return typeof first === "number"
        ? "number"
        : typeof first === "boolean"
        ? "boolean"
        : "string";
    }
    if (resolved["const"] !== undefined) {
      const kind = typeof resolved["const"];
      return kind === "number" || kind === "boolean" || kind === "string" ? kind : "unknown";
    }
    const union = resolved["anyOf"] ?? resolved["oneOf"];
    if (Array.isArray(union)) {
      for (const branch of union) {
        const t = this.typeOf(branch as JsonSchema);
        if (t !== "null" && t !== "unknown") return t;
      }
    }
    return "unknown";
  }

  /** All types a node accepts, in order (for coercion of strings from env and flags). */
  typesOf(node: JsonSchema | undefined): SchemaType[] {
    if (node === undefined) return ["unknown"];
    const resolved = this.resolve(node) ?? node;
    const type = resolved["type"];
    if (Array.isArray(type)) return type as SchemaType[];
    const union = resolved["anyOf"] ?? resolved["oneOf"];
    if (type === undefined && Array.isArray(union)) {
      return union.flatMap((branch) => this.typesOf(branch as JsonSchema));
    }
    return [this.typeOf(resolved)];
  }

  /** The node at a path, following properties, additionalProperties and items. */
  nodeAt(segments: readonly Segment[]): JsonSchema | undefined {
    let node = this.resolve(this.root);
    for (const segment of segments) {
      if (node === undefined) return undefined;
      node = this.resolve(this.child(node, segment));
    }
    return node;
  }

  /** The schema of one child of an object or array node. */
  child(node: JsonSchema, segment: Segment): JsonSchema | undefined {
    const resolved = this.resolve(node);
    if (resolved === undefined) return undefined;
    if (typeof segment === "number" || this.typeOf(resolved) === "array") {
      const items = resolved["items"];
      if (isPlainObject(items)) return items;
      const prefix = resolved["prefixItems"];
      if (Array.isArray(prefix) && typeof segment === "number") return prefix[segment];
      if (typeof segment === "number") return undefined;
    }
    const properties = resolved["properties"];
    if (isPlainObject(properties) && Object.hasOwn(properties, segment)) {
      const child = properties[segment as string];
      return isPlainObject(child) ? child : {};
    }
    const additional = resolved["additionalProperties"];
    if (isPlainObject(additional)) return additional;
    if (additional === true) return {};
    return undefined;
  }

  /**
   * Whether a key may appear in an object node: it is a declared property, or the node allows
   * free keys (a record, a loose object, or a node with no declared properties at all).
   */
  allowsKey(node: JsonSchema, key: string): boolean {
    const resolved = this.resolve(node);
    if (resolved === undefined) return true;
    const properties = resolved["properties"];
    if (isPlainObject(properties) && Object.hasOwn(properties, key)) return true;
    const additional = resolved["additionalProperties"];
    if (additional === false) return false;
    if (isPlainObject(additional) || additional === true) return true;
    if (isPlainObject(resolved["patternProperties"])) return true;
    // An object with declared properties and nothing said about others: unknown keys are typos.
    return !isPlainObject(properties);
  }

  /** The declared property names of an object node. */
  keysOf(node: JsonSchema | undefined): string[] {
    const properties = this.resolve(node)?.["properties"];
    return isPlainObject(properties) ? Object.keys(properties) : [];
  }

  /** Every leaf of the fixed-key object tree, in schema order. */
  leaves(): readonly SchemaLeaf[] {
    this.#leaves ??= this.leavesOf(this.root);
    return this.#leaves;
  }

  /** Every leaf of the fixed-key object tree under `node`, with paths relative to it. */
  leavesOf(node: JsonSchema | undefined): SchemaLeaf[] {
    const out: SchemaLeaf[] = [];
    const walk = (node: JsonSchema | undefined, segments: string[], depth: number) => {
      const resolved = this.resolve(node);
      if (resolved === undefined) return;
      const properties = resolved["properties"];
      if (isPlainObject(properties) && depth < 16) {
        for (const [key, child] of Object.entries(properties)) {
          walk(isPlainObject(child) ? child : {}, [...segments, key], depth + 1);
        }
        return;
      }
      if (segments.length > 0) out.push({ segments, node: resolved });
    };
    walk(node, [], 0);
    return out;
  }
}

/** Returns the closest candidate to `name` (edit distance), or `undefined` when none is close. */
export function closest(name: string, candidates: Iterable<string>): string | undefined {
  const found = nearest(name, candidates);
  if (found === undefined) return undefined;
  const limit = Math.max(2, Math.floor(name.length / 3));
  return found.distance <= limit ? found.candidate : undefined;
}

/**
 * Returns the candidate nearest to `name` by case-insensitive edit distance, however far, or
 * `undefined` when every candidate's length differs from `name`'s by more than 8.
 */
export function nearest(
  name: string,
  candidates: Iterable<string>,
): { candidate: string; distance: number } | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  const lower = name.toLowerCase();
  for (const candidate of candidates) {
    if (candidate.toLowerCase() === lower) return { candidate, distance: 0 };
    const distance = editDistance(lower, candidate.toLowerCase());
    if (distance < bestDistance) {
      bestDistance = distance;
      best = candidate;
    }
  }
  return best === undefined ? undefined : { candidate: best, distance: bestDistance };
}

function editDistance(a: string, b: string): number {
  if (Math.abs(a.length - b.length) > 8) return Infinity;
  let previous = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(
        previous[j]! + 1,
        current[j - 1]! + 1,
        previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
    }
    previous = current;
  }
  return previous[b.length]!;
}

/** Describes what a node accepts for messages: `integer > 0`, `one of "a", "b"`, `string`. */
export function describeType(node: JsonSchema, info: SchemaInfo): string {
  const resolved = info.resolve(node) ?? node;
  // A schema piece's own name for its type, such as duration()'s "duration".
  const named = resolved["x-triad-type"];
  if (typeof named === "string") return named;
  const enumValues = resolved["enum"];
  if (Array.isArray(enumValues)) {
    return `one of ${enumValues.map((v) => JSON.stringify(v)).join(", ")}`;
  }
  const types = info.typesOf(resolved).filter((t) => t !== "unknown");
  let text = types.length === 0 ? "a value" : types.join(" or ");
  const bounds: string[] = [];
  const min = resolved["minimum"];
  const max = resolved["maximum"];
  const exclusiveMin = resolved["exclusiveMinimum"];
  const exclusiveMax = resolved["exclusiveMaximum"];
  if (typeof exclusiveMin === "number") bounds.push(`> ${exclusiveMin}`);
  if (typeof min === "number" && min > Number.MIN_SAFE_INTEGER) bounds.push(`>= ${min}`);
  if (typeof exclusiveMax === "number") bounds.push(`< ${exclusiveMax}`);
  if (typeof max === "number" && max < Number.MAX_SAFE_INTEGER) bounds.push(`<= ${max}`);
  if (bounds.length > 0) text += ` ${bounds.join(" and ")}`;
  return text;
}
