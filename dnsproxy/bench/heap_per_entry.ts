/**
 * Heap bytes per cache entry: stores N answers (`h0000000.bench A`, one A record, 47 bytes each)
 * in a `DnsCache` and prints what the V8 heap and the slabs (array buffers, outside the heap; the
 * slot arrays are made for the cache's `maxEntries` before the first store, so not counted)
 * grew by, per entry, after a full collection each side. Needs `--v8-flags=--expose-gc`.
 *
 * ```sh
 * deno run --v8-flags=--expose-gc dnsproxy/bench/heap_per_entry.ts [N]
 * ```
 *
 * @module
 */
// The modules themselves, not @triad/dnsproxy: its defence loads @triad/ebpf, which reads the
// environment (this runs with no permissions).
import { cacheKey, DnsCache } from "../cache.ts";
import { buildQuery } from "../wire/builders.ts";
import { parseMessage } from "../wire/message.ts";

const n = Number(Deno.args[0] ?? 100_000);
const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) throw new Error("run with --v8-flags=--expose-gc");
const query = buildQuery({ id: 1, name: "h0000000.bench", type: 1, edns: false });
const answer = new Uint8Array(query.length + 16);
answer.set(query);
answer[2] = 0x81;
answer[3] = 0x80;
answer[7] = 1;
answer.set([0xc0, 12, 0, 1, 0, 1, 0, 0, 0x0e, 0x10, 0, 4, 10, 0, 0, 1], query.length);
const cache = new DnsCache({ maxEntries: n });
const digits = (i: number) => String(i).padStart(7, "0");
// A first store outside the measure (the cache's first slab and tables).
const first = parseMessage(answer);
cache.store(cacheKey(first), answer, first);
gc();
gc();
const before = Deno.memoryUsage();
for (let i = 1; i < n; i++) {
  const text = digits(i);
  for (let j = 0; j < 7; j++) answer[14 + j] = text.charCodeAt(j);
  const info = parseMessage(answer);
  cache.store(cacheKey(info), answer, info);
}
gc();
gc();
const after = Deno.memoryUsage();
const stored = n - 1;
console.log(JSON.stringify({
  entries: cache.size,
  heapBytesPerEntry: Math.round((after.heapUsed - before.heapUsed) / stored),
  externalBytesPerEntry: Math.round((after.external - before.external) / stored),
  slabBytes: cache.slabBytes,
}));
