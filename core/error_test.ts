import assert from "node:assert/strict";
import { TriadError } from "./error.ts";

Deno.test("TriadError carries code, cause and the subclass name", () => {
  class ConfigError extends TriadError {}
  const cause = new Error("disk gone");
  const error = new ConfigError("Cannot read app.yaml", { code: "read_failed", cause });
  assert.equal(error.code, "read_failed");
  assert.equal(error.cause, cause);
  assert.equal(error.name, "ConfigError");
  assert.ok(error instanceof TriadError);
  assert.equal("cause" in new TriadError("x", { code: "y" }), false);
});
