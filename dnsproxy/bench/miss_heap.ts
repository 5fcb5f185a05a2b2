/**
 * Heap bytes of a cache miss, without sockets: `DnsProxy.answer` through the UDP socket pool, the
 * upstream's reply (unbound's shape) handed to the pool's socket in the same turn. Prints the heap
 * bytes allocated per miss (young generation sized so no scavenge runs in the window) and the heap
 * bytes a miss keeps alive while it waits for its reply (what a scavenge copies for every query in
 * flight), after a full collection each side. Needs `--expose-gc` and a large semi-space:
 *
 * ```sh
 * deno run --v8-flags=--expose-gc,--min-semi-space-size=256,--max-semi-space-size=256 \
 *   dnsproxy/bench/miss_heap.ts [N]
 * ```
 *
 * @module
 */
import { socketlessMiss } from "./_socketless_miss.ts";

const n = Number(Deno.args[0] ?? 10_000);
const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) throw new Error("run with --v8-flags=--expose-gc");

const harness = socketlessMiss();
const { proxy, replyAll, tick, ask } = harness;
/** Lets the pools forget finished queries (they sweep them with the expired ones). */
function settle(): void {
  tick();
  tick(100);
}

// Warm-up: the JIT's tiers, the pools' sockets and slabs.
for (let i = 0; i < 50_000; i++) {
  ask();
  replyAll();
  if (i % 64 === 0) tick();
}
settle();
gc();
gc();
// Allocated per miss: nothing collected in the window (a big young generation).
let before = Deno.memoryUsage().heapUsed;
for (let i = 0; i < n; i++) {
  ask();
  replyAll();
  if (i % 64 === 0) tick();
}
const allocated = (Deno.memoryUsage().heapUsed - before) / n;
settle();
gc();
gc();
// Kept alive per miss in flight: n misses asked, none answered yet.
before = Deno.memoryUsage().heapUsed;
const answeredBefore = harness.answers;
for (let i = 0; i < n; i++) ask();
gc();
gc();
const inFlight = (Deno.memoryUsage().heapUsed - before) / n;
replyAll();
const answered = harness.answers - answeredBefore;
if (answered !== n) throw new Error(`${answered} of ${n} answered`);
console.log(JSON.stringify({
  misses: n,
  heapBytesAllocatedPerMiss: Math.round(allocated),
  heapBytesPerMissInFlight: Math.round(inFlight),
}));
proxy.close();
