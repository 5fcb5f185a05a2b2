import assert from "node:assert/strict";
import {
  command,
  kernelAtLeast,
  kernelVersion,
  missing,
  type Requirement,
} from "./requirements.ts";

Deno.test("missing() returns the first unmet requirement's reason", () => {
  const met: Requirement = { name: "met", check: () => undefined };
  const unmet: Requirement = { name: "unmet", check: () => "needs a thing" };
  assert.equal(missing([met]), undefined);
  assert.equal(missing([met, unmet, { name: "x", check: () => "other" }]), "needs a thing");
});

Deno.test("command() names the Debian package when a program is absent", () => {
  assert.equal(command("sh").check(), undefined);
  assert.equal(
    command("no-such-program-triad", "triad-pkg").check(),
    "needs no-such-program-triad: apt-get install triad-pkg",
  );
});

Deno.test("kernelAtLeast() compares against the running kernel", () => {
  const [major, minor] = kernelVersion();
  assert.ok(major >= 3);
  assert.equal(kernelAtLeast(major, minor, "this kernel").check(), undefined);
  assert.match(kernelAtLeast(major + 1, 0, "a future feature").check()!, /a future feature/);
});
