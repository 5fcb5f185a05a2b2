import assert from "node:assert/strict";
import { serialTail, shellQuote } from "./_machine.ts";

Deno.test("shellQuote() leaves plain words and quotes the rest", () => {
  assert.equal(shellQuote("tests/ebpf_test.ts"), "tests/ebpf_test.ts");
  assert.equal(shellQuote("--filter=maps"), "--filter=maps");
  assert.equal(shellQuote("two words"), "'two words'");
  assert.equal(shellQuote("it's"), `'it'\\''s'`);
  assert.equal(shellQuote("$(reboot)"), "'$(reboot)'");
  assert.equal(shellQuote(""), "''");
});

Deno.test("serialTail() keeps the last lines without terminal escapes", () => {
  const log = "SeaBIOS\r\n\x1b[0;32m  OK  \x1b[0m] Started ssh\r\nline3\nline4\n";
  assert.equal(serialTail(log, 3), "  OK  ] Started ssh\nline3\nline4");
  assert.equal(serialTail("", 3), "");
});
