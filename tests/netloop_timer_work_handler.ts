/**
 * A handler whose only event is one timer, armed at boot past the point where the loop blocks for
 * a second at a time: the timer starts a file read (an async op the Worker's event loop completes)
 * and posts how long the read took to come back, so a test sees whether work a timer starts waits
 * for the loop's long idle block.
 *
 * @module
 */
import { Action, type Loop } from "@triad/netloop";

/** When the timer runs (ms from boot): past the 3 s after which an idle loop blocks 1 s. */
export const AT_MS = 3500;

/** Arms the timer; posts `{ readMs }`. */
export function onBoot(loop: Loop): Action {
  setTimeout(async () => {
    const start = performance.now();
    await Deno.readFile(new URL(import.meta.url));
    loop.postMessage({ readMs: performance.now() - start });
  }, AT_MS);
  return Action.None;
}
