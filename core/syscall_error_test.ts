import assert from "node:assert/strict";
import { Errno, errnoName, SyscallError } from "./syscall_error.ts";
import { TriadError } from "./error.ts";

Deno.test("errnoName names positive and negative errnos, and says when it does not know one", () => {
  assert.equal(errnoName(Errno.EMFILE), "EMFILE");
  assert.equal(errnoName(-Errno.EINPROGRESS), "EINPROGRESS");
  assert.equal(errnoName(524), "ENOTSUPP");
  assert.equal(errnoName(999), "errno 999");
});

Deno.test("SyscallError keeps the positive errno, 0 when there is none", () => {
  class SocketError extends SyscallError {}
  const error = new SocketError("connect failed: ECONNREFUSED", { code: "syscall", errno: -111 });
  assert.equal(error.errno, 111);
  assert.equal(error.name, "SocketError");
  assert.ok(error instanceof TriadError);
  assert.equal(new SyscallError("x", { code: "y" }).errno, 0);
});
