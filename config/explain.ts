/**
 * Explaining and rendering a configuration: where each value came from ({@linkcode Explanation}),
 * the YAML or JSON dump ({@linkcode DumpOptions}), and the redaction of secrets in both.
 *
 * @module
 */
import {
  Document as YamlDocument,
  isMap,
  isPair,
  isScalar,
  isSeq,
  stringify as stringifyYaml,
} from "yaml";
import type { OverriddenValue } from "./merge.ts";
import { formatOrigin } from "./origin.ts";
import type { Origin } from "./origin.ts";
import { REDACTED_TEXT, Secret } from "./secret.ts";
import { childPath, getAt, isPlainObject, mapTree, splitPath } from "./_path.ts";
import { originAt } from "./_origin_at.ts";
import type { State } from "./_pipeline.ts";

/** Where one value came from and what it overrode. */
export interface Explanation {
  /** The path. */
  readonly path: string;
  /** The value (secrets redacted). */
  readonly value: unknown;
  /** The layer that set it: a file position, env variable, flag, remote key, defaults. */
  readonly origin: Origin | undefined;
  /** The values it overrode, lowest layer first (secrets redacted). */
  readonly overridden: readonly OverriddenValue[];
  /** Whether the value is secret. */
  readonly secret: boolean;
  /** `path = value from origin (overrode …)`. */
  toString(): string;
}

/** Options of {@linkcode ConfigView.dump}. */
export interface DumpOptions {
  /** Replace secrets with `[redacted]`. @default {true} */
  readonly redact?: boolean;
  /** YAML or JSON. @default {"yaml"} */
  readonly format?: "yaml" | "json";
  /** In YAML, end every value's line with a comment naming where it came from. @default {false} */
  readonly origins?: boolean;
}

/** Explains the value at `path` in `state`: its origin, what it overrode, secrets redacted. */
export function explainAt(state: State, path: string): Explanation {
  const value = getAt(state.value, splitPath(path));
  const secret = isSecretPath(state.secretPaths, path) || value instanceof Secret;
  let origin = originAt(state.merged.origins, path);
  if (getAt(state.merged.tree, splitPath(path)) === undefined && value !== undefined) {
    origin = { layer: "schema" };
  }
  const redact = (v: unknown) => secret ? REDACTED_TEXT : redactTree(v, state, path);
  const overridden = (state.merged.overridden.get(path) ?? []).map((o) => ({
    value: redact(o.value),
    origin: o.origin,
  }));
  const shown = redact(value);
  return {
    path,
    value: shown,
    origin,
    overridden,
    secret,
    toString() {
      const from = origin === undefined ? "" : ` from ${formatOrigin(origin)}`;
      const over = overridden.length === 0
        ? ""
        : ` (overrode ${
          overridden.slice().reverse().map((o) =>
            `${show(o.value)}${o.origin === undefined ? "" : ` from ${formatOrigin(o.origin)}`}`
          ).join(", ")
        })`;
      return `${path === "" ? "(root)" : path} = ${
        secret ? REDACTED_TEXT : show(shown)
      }${from}${over}`;
    },
  };
}

/** Renders the subtree at `path` in `state` as YAML or JSON, secrets redacted by default. */
export function dumpAt(state: State, path: string, options: DumpOptions): string {
  const value = getAt(state.value, splitPath(path));
  const plain = options.redact === false ? revealTree(value) : redactTree(value, state, path);
  if (options.format === "json") return `${JSON.stringify(plain, null, 2)}\n`;
  if (options.origins !== true) return stringifyYaml(plain ?? null);
  const doc = new YamlDocument(plain ?? null);
  const annotate = (node: unknown, nodePath: string) => {
    const items = isMap(node) || isSeq(node) ? node.items : [];
    items.forEach((item, index) => {
      const pair = isPair(item) ? item : undefined;
      const key = pair === undefined
        ? String(index)
        : String((pair.key as { value?: unknown }).value);
      const keyPath = childPath(nodePath, key);
      const child = pair === undefined ? item : pair.value;
      if (isScalar(child) || ((isMap(child) || isSeq(child)) && child.items.length === 0)) {
        const origin = originAt(state.merged.origins, keyPath);
        const inMerged = getAt(state.merged.tree, splitPath(keyPath)) !== undefined;
        const from = !inMerged
          ? "schema default"
          : origin === undefined
          ? undefined
          : formatOrigin(origin);
        if (from !== undefined) (child as { comment?: string }).comment = ` ${from}`;
      } else {
        annotate(child, keyPath);
      }
    });
  };
  annotate(doc.contents, path);
  return doc.toString();
}

/** Whether `path` or a path above it is secret. */
export function isSecretPath(secretPaths: ReadonlySet<string>, path: string): boolean {
  if (secretPaths.size === 0) return false;
  for (let p = path;;) {
    if (secretPaths.has(p)) return true;
    if (p === "") return false;
    const dot = p.lastIndexOf(".");
    p = dot === -1 ? "" : p.slice(0, dot);
  }
}

/** A value for messages: JSON, cut at 80 characters; secrets redacted. */
export function show(value: unknown): string {
  if (value === undefined) return "nothing";
  if (value instanceof Secret) return REDACTED_TEXT;
  if (typeof value === "string") return JSON.stringify(value);
  try {
    const text = JSON.stringify(value);
    if (text === undefined) return String(value);
    return text.length > 80 ? `${text.slice(0, 77)}...` : text;
  } catch {
    return String(value);
  }
}

function redactTree(value: unknown, state: State, path: string): unknown {
  if (value instanceof Secret || isSecretPath(state.secretPaths, path)) {
    return value === undefined ? undefined : REDACTED_TEXT;
  }
  if (Array.isArray(value)) return value.map((v, i) => redactTree(v, state, childPath(path, i)));
  if (isPlainObject(value)) {
    const out: Record<string, unknown> = {};
    for (const [key, child] of Object.entries(value)) {
      out[key] = redactTree(child, state, childPath(path, key));
    }
    return out;
  }
  return value;
}

function revealTree(value: unknown): unknown {
  return mapTree(value, (leaf) => leaf instanceof Secret ? leaf.reveal() : leaf);
}
