import assert from "node:assert/strict";
import { runCommand } from "./_command.ts";
import { VmError } from "./errors.ts";

Deno.test("runCommand() names the Debian package of a program that is not installed", async () => {
  // PATH without sfdisk: as on a machine without fdisk
  await assert.rejects(
    runCommand("sfdisk", ["--version"], { env: { PATH: "/nonexistent" } }),
    (error: unknown) => {
      assert.ok(error instanceof VmError);
      assert.equal(error.code, "missing_tool");
      assert.match(
        error.message,
        /^Cannot start sfdisk, it is not installed: apt-get install fdisk /,
      );
      return true;
    },
  );
  await assert.rejects(
    runCommand("triad-no-such-program", []),
    /^VmError: Cannot start triad-no-such-program: NotFound/,
  );
});
