import assert from "node:assert/strict";
import { ParseFailure, PARSERS } from "./parsers.ts";

const documents = {
  yaml: "dns:\n  port: 53\n  upstreams:\n    - a\n",
  json: '{\n  "dns": {\n    "port": 53,\n    "upstreams": ["a"]\n  }\n}',
  toml: '[dns]\nport = 53\nupstreams = ["a"]\n',
} as const;
const portAt = { yaml: [2, 3], json: [3, 5], toml: [2, 1] };

Deno.test("each parser returns the tree and the position of keys", () => {
  for (const [format, text] of Object.entries(documents)) {
    const marks = new Map<string, [number, number]>();
    const tree = PARSERS[format as keyof typeof documents].parse(text, (path, line, column) => {
      marks.set(path, [line, column]);
    });
    assert.deepEqual(JSON.parse(JSON.stringify(tree)), { dns: { port: 53, upstreams: ["a"] } });
    assert.deepEqual(marks.get("dns.port"), portAt[format as keyof typeof documents], format);
  }
});

Deno.test("each parser fails with a ParseFailure at a line and column", () => {
  const bad = { yaml: "a: [\n", json: '{"a": 1,}', toml: "a = \n" } as const;
  for (const [format, text] of Object.entries(bad)) {
    assert.throws(
      () => PARSERS[format as keyof typeof bad].parse(text, () => {}),
      (error: unknown) => error instanceof ParseFailure && error.line >= 1 && error.column >= 1,
      format,
    );
  }
  assert.throws(() => PARSERS.yaml.parse("a: 1\na: 2\n", () => {}), /a/);
});
