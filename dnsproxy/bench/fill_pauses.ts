/**
 * Pauses while a cache fills: stores N new answers (`m0000000.bench A`, one A record) into a
 * `DnsCache` allowed N entries, timing each store, and prints the stores that took over 1 ms (the
 * entry count and the time) and the longest. A cache whose arrays grew on demand paused at each
 * doubling; they are now made for `maxEntries` up front.
 *
 * ```sh
 * taskset -c 0 deno run dnsproxy/bench/fill_pauses.ts [N]
 * ```
 *
 * @module
 */
// The modules themselves, not @triad/dnsproxy: its defence loads @triad/ebpf, which reads the
// environment (this runs with no permissions).
import { cacheKey, DnsCache } from "../cache.ts";
import { buildQuery } from "../wire/builders.ts";
import { parseMessage } from "../wire/message.ts";
import { unboundAnswer } from "./_unbound_answer.ts";

const entries = Number(Deno.args[0] ?? 2_000_000);
const query = buildQuery({ id: 1, name: "m0000000.bench", type: 1 });
const answer = unboundAnswer(query);
const cache = new DnsCache({ maxEntries: entries, maxBytes: entries * 1024 });
const slow: string[] = [];
let longest = 0;
for (let i = 0; i < entries; i++) {
  const text = String(i).padStart(7, "0");
  for (let j = 0; j < 7; j++) answer[14 + j] = text.charCodeAt(j);
  const info = parseMessage(answer);
  const key = cacheKey(info);
  const start = performance.now();
  cache.store(key, answer, info);
  const took = performance.now() - start;
  longest = Math.max(longest, took);
  if (took > 1) slow.push(`${i}: ${took.toFixed(1)}`);
}
console.log(`${cache.size} entries stored; stores over 1 ms (entries before it: ms):`);
console.log(slow.join(", ") || "none");
console.log(`longest ${longest.toFixed(1)} ms`);
