/**
 * What an event handler asks the loop to do next.
 *
 * @module
 */

/**
 * The result of every {@linkcode EventHandler} method: carry on, close the connection, or shut the
 * whole engine down.
 *
 * @example
 * ```ts
 * import { Action } from "@triad/netloop";
 * import assert from "node:assert/strict";
 *
 * assert.equal(Action.None, 0);
 * assert.notEqual(Action.Close, Action.Shutdown);
 * ```
 */
export const Action = {
  /** Nothing to do: keep going. */
  None: 0,
  /** Close the connection the event was about (after flushing what was written). */
  Close: 1,
  /** Stop the engine: every loop closes its connections and listeners. */
  Shutdown: 2,
} as const;

/** One of the {@linkcode Action} values. */
export type Action = typeof Action[keyof typeof Action];
