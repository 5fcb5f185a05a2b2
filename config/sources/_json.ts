/**
 * A strict JSON parser that keeps the line and column of every key and array item, and names
 * `line:col` in its errors (JSON.parse does neither).
 *
 * @module
 */
import { childPath } from "../_path.ts";

/** A JSON syntax error at a 1-based line and column. */
export class JsonSyntaxError extends Error {
  constructor(message: string, readonly line: number, readonly column: number) {
    super(message);
  }
}

/** Parses JSON text, calling `mark(path, offset)` for every key and array item. */
export function parseJsonWithPositions(
  text: string,
  mark: (path: string, offset: number) => void,
): unknown {
  let at = 0;
  const fail = (message: string, offset = at): never => {
    let line = 1;
    let lineStart = 0;
    for (let i = 0; i < offset && i < text.length; i++) {
      if (text.charCodeAt(i) === 10) {
        line++;
        lineStart = i + 1;
      }
    }
    throw new JsonSyntaxError(message, line, offset - lineStart + 1);
  };
  const space = () => {
    while (at < text.length) {
      const c = text.charCodeAt(at);
      if (c === 32 || c === 9 || c === 10 || c === 13) at++;
      else break;
    }
  };
  const describe = () => at >= text.length ? "end of input" : JSON.stringify(text[at]);
  const string = (): string => {
    const start = at;
    at++; // opening quote
    while (at < text.length) {
      const c = text.charCodeAt(at);
      if (c === 34) {
        at++;
        try {
          return JSON.parse(text.slice(start, at));
        } catch {
          return fail("Invalid escape in string", start);
        }
      }
      if (c === 92) at += 2;
      else if (c < 32) fail("Control character in string");
      else at++;
    }
    return fail("Unterminated string", start);
  };
  const value = (path: string, depth: number): unknown => {
    if (depth > 512) fail("Nesting too deep");
    space();
    const c = text[at];
    if (c === "{") {
      at++;
      const out: Record<string, unknown> = {};
      space();
      if (text[at] === "}") {
        at++;
        return out;
      }
      for (;;) {
        space();
        if (text[at] !== '"') fail(`Expected a string key, got ${describe()}`);
        const keyAt = at;
        const key = string();
        if (Object.hasOwn(out, key)) fail(`Duplicate key ${JSON.stringify(key)}`, keyAt);
        const keyPath = childPath(path, key);
        mark(keyPath, keyAt);
        space();
        if (text[at] !== ":") fail(`Expected ":" after key, got ${describe()}`);
        at++;
        out[key] = value(keyPath, depth + 1);
        space();
        if (text[at] === ",") {
          at++;
          continue;
        }
        if (text[at] === "}") {
          at++;
          return out;
        }
        fail(`Expected "," or "}", got ${describe()}`);
      }
    }
    if (c === "[") {
      at++;
      const out: unknown[] = [];
      space();
      if (text[at] === "]") {
        at++;
        return out;
      }
      for (;;) {
        space();
        const itemPath = childPath(path, out.length);
        mark(itemPath, at);
        out.push(value(itemPath, depth + 1));
        space();
        if (text[at] === ",") {
          at++;
          continue;
        }
        if (text[at] === "]") {
          at++;
          return out;
        }
        fail(`Expected "," or "]", got ${describe()}`);
      }
    }
    if (c === '"') return string();
    const literal = /^(?:true|false|null|-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][-+]?\d+)?)/.exec(
      text.slice(at, at + 64),
    );
    if (literal === null) return fail(`Unexpected ${describe()}`);
    at += literal[0].length;
    return JSON.parse(literal[0]);
  };
  const result = value("", 0);
  space();
  if (at < text.length) fail(`Unexpected ${describe()} after the document`);
  return result;
}
