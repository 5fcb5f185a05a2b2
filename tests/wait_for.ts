/**
 * Waits for the first value a subscription delivers, bounded by a timeout.
 *
 * @module
 */

/**
 * Resolves with the first value passed to the subscriber, or rejects after `ms` naming `what`.
 *
 * @param subscribe Registers the callback and returns its unsubscribe function.
 * @param what What is awaited, for the timeout message.
 * @param ms The timeout. @default {5000}
 */
export function waitFor<T>(
  subscribe: (fn: (value: T) => void) => () => void,
  what: string,
  ms = 5000,
): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`timed out after ${ms} ms waiting for ${what}`));
    }, ms);
    const off = subscribe((value) => {
      clearTimeout(timer);
      off();
      resolve(value);
    });
  });
}

/**
 * Polls `condition` every 10 ms until it holds, or throws after `timeoutMs` naming `what`.
 *
 * @param condition What must come true.
 * @param what What is awaited, for the timeout message (`the tracer's first event`).
 * @param timeoutMs The timeout. @default {5000}
 */
export async function pollUntil(
  condition: () => boolean | Promise<boolean>,
  what: string,
  timeoutMs = 5000,
): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() >= until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
