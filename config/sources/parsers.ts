/**
 * One parser per format — YAML, JSON, TOML — each turning text into a tree and reporting the line
 * and column of every key and array item. Files and remote documents (etcd, Consul) both use them.
 *
 * @module
 */
import { isMap, isPair, isScalar, isSeq, LineCounter, parseDocument } from "yaml";
import type { Node as YamlNode } from "yaml";
import { parse as parseToml } from "smol-toml";
import { childPath } from "../_path.ts";
import { JsonSyntaxError, parseJsonWithPositions } from "./_json.ts";

/** The file formats configuration reads. */
export type ConfigFormat = "yaml" | "json" | "toml";

/** A syntax error at a 1-based line and column. */
export class ParseFailure extends Error {
  constructor(message: string, readonly line: number, readonly column: number) {
    super(message);
  }
}

/** Reports the 1-based position of the key or item at a dotted path. */
type MarkPosition = (path: string, line: number, column: number) => void;

/** A parser of one format. */
interface Parser {
  /**
   * Parses `text` into a tree, calling `mark` for every key and array item.
   *
   * @throws {ParseFailure} Where the text is not valid.
   */
  parse(text: string, mark: MarkPosition): unknown;
}

/** YAML 1.2: duplicate keys are errors; aliases are expanded (at most 1,000). */
const yamlParser: Parser = {
  parse(text, markAt) {
    const lineCounter = new LineCounter();
    const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
    const error = doc.errors[0];
    if (error !== undefined) {
      const pos = error.linePos?.[0] ?? lineCounter.linePos(error.pos[0]);
      const message = error.message.split("\n")[0]!.replace(/ at line \d+, column \d+:?$/, "");
      throw new ParseFailure(message, pos.line, pos.col);
    }
    const tree = doc.toJS({ maxAliasCount: 1000 }) ?? {};
    const mark = (path: string, offset: number | undefined) => {
      if (offset === undefined) return;
      const pos = lineCounter.linePos(offset);
      markAt(path, pos.line, pos.col);
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
    return tree;
  },
};

/** Strict JSON (duplicate keys are errors). */
const jsonParser: Parser = {
  parse(text, mark) {
    try {
      return parseJsonWithPositions(text, (path, offset) => {
        const { line, column } = lineAndColumn(text, offset);
        mark(path, line, column);
      });
    } catch (error) {
      if (error instanceof JsonSyntaxError) {
        throw new ParseFailure(error.message, error.line, error.column);
      }
      throw error;
    }
  },
};

/** TOML 1.0. */
const tomlParser: Parser = {
  parse(text, mark) {
    let tree: unknown;
    try {
      tree = parseToml(text);
    } catch (error) {
      const { line, column, message } = error as {
        line?: number;
        column?: number;
        message: string;
      };
      throw new ParseFailure(
        message.split("\n")[0]!.replace(/^Invalid TOML document: /, ""),
        line ?? 1,
        column ?? 1,
      );
    }
    tomlPositions(text, mark);
    return tree;
  },
};

/** The parser of each format. */
export const PARSERS: Readonly<Record<ConfigFormat, Parser>> = {
  yaml: yamlParser,
  json: jsonParser,
  toml: tomlParser,
};

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
