/**
 * What one call from C into TypeScript costs (`Deno.UnsafeCallback`): libc's `qsort` over 100,000
 * sorted integers with a comparator callback, timed per comparison. The figure that decided DoH's
 * HTTP/2 framing against nghttp2's callback API (see the module README).
 *
 * ```sh
 * deno run -A dnsproxy/bench/ffi_callback.ts
 * ```
 *
 * @module
 */
const libc = Deno.dlopen("libc.so.6", {
  qsort: { parameters: ["buffer", "usize", "usize", "function"], result: "void" },
});
let calls = 0;
const compare = new Deno.UnsafeCallback(
  { parameters: ["pointer", "pointer"], result: "i32" } as const,
  () => (calls++, 0),
);
const n = 100_000;
const values = new Uint32Array(n);
const runs: number[] = [];
for (let round = 0; round < 7; round++) {
  for (let i = 0; i < n; i++) values[i] = i;
  calls = 0;
  const started = performance.now();
  libc.symbols.qsort(values, BigInt(n), 4n, compare.pointer);
  runs.push((performance.now() - started) * 1e6 / calls);
}
compare.close();
libc.close();
runs.sort((a, b) => a - b);
console.log(
  `${calls} callbacks per round; ns per callback: median ${runs[3]!.toFixed(0)}, ` +
    `range ${runs[0]!.toFixed(0)}-${runs[6]!.toFixed(0)} (7 rounds)`,
);
