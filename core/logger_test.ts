import assert from "node:assert/strict";
import { createLogger, parseLogLevel } from "./logger.ts";
import { TriadError } from "./error.ts";

function capture(options: Parameters<typeof createLogger>[0] = {}) {
  const lines: string[] = [];
  const log = createLogger({ now: () => new Date(0), write: (l) => lines.push(l), ...options });
  return { log, lines };
}

Deno.test("createLogger() filters by level", () => {
  const { log, lines } = capture({ level: "warn" });
  log.debug("a");
  log.info("b");
  log.warn("c");
  log.error("d");
  assert.deepEqual(lines.map((l) => JSON.parse(l).msg), ["c", "d"]);
  assert.equal(log.enabled("info"), false);
  assert.equal(log.enabled("error"), true);
});

Deno.test("createLogger() writes structured JSON with child fields and errors", () => {
  const { log, lines } = capture({ fields: { app: "dns" } });
  const cause = new Error("refused");
  log.child({ loop: 1 }).error("upstream failed", {
    error: new TriadError("Upstream 1.1.1.1:53 timed out", { code: "timeout", cause }),
    bytes: 10n,
  });
  assert.deepEqual(JSON.parse(lines[0]!), {
    time: "1970-01-01T00:00:00.000Z",
    level: "error",
    msg: "upstream failed",
    app: "dns",
    loop: 1,
    error: {
      name: "TriadError",
      message: "Upstream 1.1.1.1:53 timed out",
      code: "timeout",
      cause: { name: "Error", message: "refused" },
    },
    bytes: "10",
  });
});

Deno.test("createLogger() pretty format quotes values that need it", () => {
  const { log, lines } = capture({ format: "pretty" });
  log.info("listening", { addr: "127.0.0.1:5353", note: "two words", n: 3 });
  assert.equal(
    lines[0],
    '1970-01-01T00:00:00.000Z INFO  listening addr=127.0.0.1:5353 note="two words" n=3',
  );
});

Deno.test("parseLogLevel() accepts names case-insensitively", () => {
  assert.equal(parseLogLevel("DEBUG"), "debug");
  assert.equal(parseLogLevel("warning"), "warn");
  assert.equal(parseLogLevel("loud"), undefined);
});
