/**
 * An ordered list of undo steps that always runs to the end.
 *
 * @module
 */
import { VmError } from "./errors.ts";

/**
 * Undo steps registered as resources are made (a namespace, a daemon, a pool, a VM), run in
 * reverse order on dispose. A failing step does not stop the others; their errors are collected
 * and thrown together once every step ran, so nothing is left behind because something else
 * failed first. Disposing twice runs nothing the second time.
 *
 * @example
 * ```ts
 * import { CleanupStack } from "@triad/vm";
 * import assert from "node:assert/strict";
 *
 * const order: string[] = [];
 * {
 *   await using cleanup = new CleanupStack();
 *   cleanup.defer("namespace", () => { order.push("namespace"); });
 *   cleanup.defer("vm", () => { order.push("vm"); });
 * }
 * assert.deepEqual(order, ["vm", "namespace"]);
 * ```
 */
export class CleanupStack implements AsyncDisposable {
  #steps: { name: string; fn: () => unknown }[] = [];

  /**
   * Registers an undo step.
   *
   * @param name What it removes, named in errors.
   * @param fn The step; may be async.
   */
  defer(name: string, fn: () => unknown): void {
    this.#steps.push({ name, fn });
  }

  /** The names of the steps still to run, in the order they will run. */
  get pending(): string[] {
    return this.#steps.map((step) => step.name).reverse();
  }

  /**
   * Runs every step, last registered first.
   *
   * @throws {VmError} `cleanup_failed` naming each step that failed, after all ran.
   */
  async run(): Promise<void> {
    const failures: { name: string; error: unknown }[] = [];
    while (this.#steps.length > 0) {
      const step = this.#steps.pop()!;
      try {
        await step.fn();
      } catch (error) {
        failures.push({ name: step.name, error });
      }
    }
    if (failures.length > 0) {
      const detail = failures.map((f) => `${f.name}: ${(f.error as Error)?.message ?? f.error}`);
      throw new VmError(`Cleanup failed: ${detail.join("; ")}`, {
        code: "cleanup_failed",
        cause: failures.length === 1 ? failures[0]!.error : new AggregateError(failures),
      });
    }
  }

  /** Runs every step; same as {@linkcode CleanupStack.run}. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.run();
  }
}
