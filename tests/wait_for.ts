/**
 * Waiting in tests without fixed sleeps: for the first value a subscription delivers, or for a
 * condition to hold, each bounded by a timeout that names what was awaited.
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
 * Resolves once `condition()` holds (checked now, then every `interval` ms), or rejects after
 * `timeout` ms naming `what`. A condition that throws rejects at once.
 *
 * @param condition Checked until it returns true (may be async).
 * @param what What is awaited, for the timeout message.
 * @param timeout The timeout in ms. @default {5000}
 * @param interval The delay between checks in ms. @default {20}
 */
export async function pollUntil(
  condition: () => boolean | Promise<boolean>,
  what: string,
  timeout = 5000,
  interval = 20,
): Promise<void> {
  const deadline = Date.now() + timeout;
  while (!(await condition())) {
    if (Date.now() >= deadline) {
      throw new Error(`timed out after ${timeout} ms waiting for ${what}`);
    }
    await new Promise((resolve) => setTimeout(resolve, interval));
  }
}
