/**
 * A handler whose only work is timers: at boot it arms `setTimeout`s at fixed delays and posts to
 * the main thread how late each ran, so that the test sees whether an idle loop's block lets
 * handler timers run on time.
 *
 * @module
 */
import { Action, type Loop } from "@triad/netloop";

/** The delays (ms from boot): past the second after which the loop counts as idle. */
export const DELAYS = [1300, 1550, 1800, 2050];

/** Arms the timers and an interval; reports `{ timer, late }` for each run. */
export function onBoot(loop: Loop): Action {
  const start = performance.now();
  for (const delay of DELAYS) {
    setTimeout(() => {
      loop.postMessage({ timer: delay, late: performance.now() - start - delay });
    }, delay);
  }
  // A cleared timer must not keep the loop from blocking, nor make it miss the others.
  clearTimeout(setTimeout(() => loop.postMessage({ timer: -1, late: 0 }), 1200));
  let runs = 0;
  const interval = setInterval(() => {
    runs++;
    if (runs === 3) {
      clearInterval(interval);
      loop.postMessage({ timer: 0, late: performance.now() - start - 3 * 700 });
    }
  }, 700);
  return Action.None;
}
