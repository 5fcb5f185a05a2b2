import assert from "node:assert/strict";
import { CleanupStack } from "./cleanup_stack.ts";
import { VmError } from "./errors.ts";

Deno.test("CleanupStack runs steps last-registered first", async () => {
  const order: string[] = [];
  const cleanup = new CleanupStack();
  cleanup.defer("namespace", () => order.push("namespace"));
  cleanup.defer("daemon", async () => {
    await new Promise((resolve) => setTimeout(resolve, 5));
    order.push("daemon");
  });
  cleanup.defer("vm", () => order.push("vm"));
  assert.deepEqual(cleanup.pending, ["vm", "daemon", "namespace"]);
  await cleanup.run();
  assert.deepEqual(order, ["vm", "daemon", "namespace"]);
  assert.deepEqual(cleanup.pending, []);
});

Deno.test("CleanupStack keeps going after a failing step and reports every failure", async () => {
  const order: string[] = [];
  const cleanup = new CleanupStack();
  cleanup.defer("namespace", () => order.push("namespace"));
  cleanup.defer("pool", () => {
    throw new Error("pool busy");
  });
  cleanup.defer("vm", () => Promise.reject(new Error("domain stuck")));
  await assert.rejects(cleanup.run(), (error: unknown) => {
    assert.ok(error instanceof VmError);
    assert.equal(error.code, "cleanup_failed");
    assert.match(error.message, /vm: domain stuck; pool: pool busy/);
    return true;
  });
  // the namespace was still removed although two steps before it failed
  assert.deepEqual(order, ["namespace"]);
});

Deno.test("CleanupStack runs each step once, also through await using", async () => {
  let runs = 0;
  const cleanup = new CleanupStack();
  cleanup.defer("once", () => runs++);
  {
    await using _scope = cleanup;
  }
  await cleanup.run();
  assert.equal(runs, 1);
});
