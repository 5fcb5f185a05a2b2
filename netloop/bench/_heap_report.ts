/**
 * Answers `heap` lines on stdin with `heap BYTES` on stdout, for the Deno servers `bench:conns`
 * measures (the Deno heap per connection).
 *
 * @module
 */

/** Reads stdin lines; each `heap` prints `heap ${await measure()}`. Ends with stdin. */
export function answerHeapRequests(measure: () => number | Promise<number>): void {
  (async () => {
    let buffered = "";
    for await (const chunk of Deno.stdin.readable.pipeThrough(new TextDecoderStream())) {
      buffered += chunk;
      for (let at = buffered.indexOf("\n"); at >= 0; at = buffered.indexOf("\n")) {
        const line = buffered.slice(0, at).trim();
        buffered = buffered.slice(at + 1);
        if (line === "heap") console.log(`heap ${await measure()}`);
      }
    }
  })();
}

/** This isolate's used heap in bytes, after a full collection when `--expose-gc` is on. */
export function heapUsed(): number {
  (globalThis as { gc?: () => void }).gc?.();
  return Deno.memoryUsage().heapUsed;
}
