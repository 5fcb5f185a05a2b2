/**
 * Configuration files: YAML, JSON and TOML parsed into a {@linkcode Layer} that keeps the
 * `file:line:col` of every key.
 *
 * @module
 */
import { isMap, isPair, isScalar, isSeq, LineCounter, parseDocument } from "yaml";
import type { Node as YamlNode } from "yaml";
import { parse as parseToml } from "smol-toml";
import { ConfigError } from "../errors.ts";
import type { Layer } from "../layer.ts";
import type { Origin } from "../origin.ts";
import { childPath, isPlainObject } from "../_path.ts";
import { JsonSyntaxError, parseJsonWithPositions } from "./_json.ts";

/** The file formats configuration reads. */
export type ConfigFormat = "yaml" | "json" | "toml";

/** File extensions and their format, in search order. */
export const CONFIG_EXTENSIONS: readonly (readonly [string, ConfigFormat])[] = [
  [".yaml", "yaml"],
  [".yml", "yaml"],
  [".json", "json"],
  [".toml", "toml"],
];

/** Returns the format of a file from its extension, `undefined` when it is none of ours. */
export function formatOfFile(path: string): ConfigFormat | undefined {
  const lower = path.toLowerCase();
  return CONFIG_EXTENSIONS.find(([ext]) => lower.endsWith(ext))?.[1];
}

/** The layers a configuration file can belong to. */
export type FileLayerKind = "files" | "profile" | "configDir";

/**
 * Parses configuration text into a layer, with the position of every key.
 *
 * @param text The file's contents.
 * @param format YAML, JSON or TOML.
 * @param file The file name used in origins and errors.
 * @param kind The layer the file belongs to.
 * @returns The layer.
 * @throws {ConfigError} With code `parse`, naming `file:line:col`.
 *
 * @example
 * ```ts
 * import { parseConfigText } from "./file.ts";
 * import assert from "node:assert/strict";
 *
 * const layer = parseConfigText("dns:\n  port: 53\n", "yaml", "app.yaml");
 * assert.deepEqual(layer.tree, { dns: { port: 53 } });
 * assert.deepEqual(layer.origins.get("dns.port"), { layer: "files", file: "app.yaml", line: 2, column: 3 });
 * ```
 */
export function parseConfigText(
  text: string,
  format: ConfigFormat,
  file: string,
  kind: FileLayerKind = "files",
): Layer {
  const origins = new Map<string, Origin>();
  const at = (line: number, column: number): Origin => ({ layer: kind, file, line, column });
  let tree: unknown;
  if (format === "yaml") {
    const lineCounter = new LineCounter();
    const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
    const error = doc.errors[0];
    if (error !== undefined) {
      const pos = error.linePos?.[0] ?? lineCounter.linePos(error.pos[0]);
      const message = error.message.split("\n")[0]!.replace(/ at line \d+, column \d+:?$/, "");
      throw parseError(file, pos.line, pos.col, message);
    }
    tree = doc.toJS({ maxAliasCount: 1000 }) ?? {};
    const mark = (path: string, offset: number | undefined) => {
      if (offset === undefined) return;
      const pos = lineCounter.linePos(offset);
      origins.set(path, at(pos.line, pos.col));
    };
    const walk = (node: unknown, path: string, depth: number) => {
      if (depth > 64) return;
      if (isMap(node)) {
        for (const pair of node.items) {
          if (!isPair(pair)) continue;
          const keyNode = pair.key as YamlNode | null;
          const key = isScalar(keyNode) ? String(keyNode.value) : String(keyNode);
          const child = childPath(path, key);
          mark(child, keyNode?.range?.[0]);
          walk(pair.value, child, depth + 1);
        }
      } else if (isSeq(node)) {
        node.items.forEach((item, index) => {
          const child = childPath(path, index);
          mark(child, (item as YamlNode | null)?.range?.[0]);
          walk(item, child, depth + 1);
        });
      }
    };
    walk(doc.contents, "", 0);
  } else if (format === "json") {
    try {
      tree = parseJsonWithPositions(text, (path, offset) => {
        const { line, column } = lineAndColumn(text, offset);
        origins.set(path, at(line, column));
      });
    } catch (error) {
      if (error instanceof JsonSyntaxError) {
        throw parseError(file, error.line, error.column, error.message);
      }
      throw error;
    }
  } else {
    try {
      tree = parseToml(text);
    } catch (error) {
      const { line, column, message } = error as {
        line?: number;
        column?: number;
        message: string;
      };
      throw parseError(
        file,
        line ?? 1,
        column ?? 1,
        message.split("\n")[0]!.replace(/^Invalid TOML document: /, ""),
      );
    }
    tomlPositions(text, (path, line, column) => origins.set(path, at(line, column)));
  }
  if (!isPlainObject(tree)) {
    throw new ConfigError(`${file}:1:1: expected a mapping of keys at the top level`, {
      code: "parse",
      issues: [{ path: "", message: "expected a mapping at the top level", origin: at(1, 1) }],
    });
  }
  return { kind, name: file, tree, origins };
}

function parseError(file: string, line: number, column: number, message: string): ConfigError {
  const text = message.charAt(0).toLowerCase() + message.slice(1);
  return new ConfigError(`${file}:${line}:${column}: ${text}`, {
    code: "parse",
    issues: [{ path: "", message: text, origin: { layer: "files", file, line, column } }],
  });
}

/** 1-based line and column of an offset (columns count UTF-16 units). */
function lineAndColumn(text: string, offset: number): { line: number; column: number } {
  let line = 1;
  let lineStart = 0;
  let index = text.indexOf("\n");
  while (index !== -1 && index < offset) {
    line++;
    lineStart = index + 1;
    index = text.indexOf("\n", lineStart);
  }
  return { line, column: offset - lineStart + 1 };
}

const TOML_KEY =
  /^(\s*)((?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|'[^']*'))*)\s*=/;
const TOML_TABLE = /^(\s*)\[(\[)?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$/;

/** Positions of TOML keys: a line scanner for `[table]`, `[[array]]` and `key = value` lines. */
function tomlPositions(text: string, mark: (path: string, line: number, column: number) => void) {
  const splitKey = (key: string) =>
    [...key.matchAll(/[A-Za-z0-9_-]+|"((?:[^"\\]|\\.)*)"|'([^']*)'/g)].map((m) =>
      m[1] !== undefined ? JSON.parse(`"${m[1]}"`) as string : m[2] ?? m[0]
    );
  let table: string[] = [];
  const arrayCounts = new Map<string, number>();
  let inMultiline: string | undefined;
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (inMultiline !== undefined) {
      if (line.split(inMultiline).length % 2 === 0) inMultiline = undefined;
      continue;
    }
    const header = TOML_TABLE.exec(line);
    if (header !== null) {
      const keys = splitKey(header[3]!);
      const base = keys.join(".");
      if (header[2] !== undefined) {
        const index = arrayCounts.get(base) ?? 0;
        arrayCounts.set(base, index + 1);
        table = [...keys, String(index)];
      } else {
        table = keys;
      }
      mark(table.join("."), i + 1, header[1]!.length + 1);
      continue;
    }
    const assignment = TOML_KEY.exec(line);
    if (assignment !== null) {
      const path = [...table, ...splitKey(assignment[2]!)].join(".");
      mark(path, i + 1, assignment[1]!.length + 1);
      const rest = line.slice(assignment[0].length);
      for (const quote of ['"""', "'''"]) {
        if (rest.split(quote).length === 2) inMultiline = quote;
      }
    }
  }
}
