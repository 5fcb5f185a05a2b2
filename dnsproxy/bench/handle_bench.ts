/**
 * `deno bench dnsproxy/bench/handle_bench.ts`: the proxy's own work per query, without sockets:
 * a cache hit through `DnsProxy.handle` (parse, ACL, key, lookup, copy, ID/case/TTL rewrite, OPT
 * handling, metrics), the strict parse alone, a cache store, and a cache miss through the proxy and
 * its socket pool with the upstream answering in the same turn (the JS of a miss, no sockets).
 *
 * @module
 */
import { buildQuery, DnsCache, DnsProxy, parseMessage } from "@triad/dnsproxy";
import { cacheKey } from "../cache.ts";
import { socketlessMiss } from "./_socketless_miss.ts";
import { unboundAnswer } from "./_unbound_answer.ts";

const proxy = new DnsProxy({
  upstream: { upstreams: [], healthCheck: 0 },
  cache: { prefetchHits: 0 },
});
const query = buildQuery({ id: 1, name: "h1.bench", type: 1, edns: false });
const queryWithEdns = buildQuery({ id: 1, name: "h1.bench", type: 1 });
const answer = unboundAnswer(queryWithEdns);
proxy.cache.store(cacheKey(parseMessage(queryWithEdns)), answer, parseMessage(answer));
const client = { address: "127.0.0.1", port: 5000, transport: "udp" } as const;
if (!(proxy.handle(query, client) instanceof Uint8Array)) throw new Error("Expected a cache hit");

Deno.bench("DnsProxy.handle: cache hit, client without EDNS", () => {
  proxy.handle(query, client);
});

Deno.bench("DnsProxy.handle: cache hit, client with EDNS", () => {
  proxy.handle(queryWithEdns, client);
});

const respond = () => {};
Deno.bench("DnsProxy.answer: cache hit into the reused buffer, client without EDNS", () => {
  proxy.answer(query, client, respond, undefined);
});

Deno.bench("parseMessage: a query", () => {
  parseMessage(queryWithEdns);
});

Deno.bench("parseMessage: an answer", () => {
  parseMessage(answer);
});

// A miss's cache work: storing a new answer into a full cache of 100,000 (one eviction each).
const full = new DnsCache({ maxEntries: 100_000 });
const missQuery = buildQuery({ id: 1, name: "m0000000.bench", type: 1 });
const missAnswer = unboundAnswer(missQuery);
let stored = 0;
function storeNext(): void {
  const text = String(stored++ % 10_000_000).padStart(7, "0");
  for (let j = 0; j < 7; j++) missAnswer[14 + j] = text.charCodeAt(j);
  const info = parseMessage(missAnswer);
  full.store(cacheKey(info), missAnswer, info);
}
for (let i = 0; i < 100_000; i++) storeNext();
Deno.bench("DnsCache.store: a new answer into a full cache of 100,000", () => {
  storeNext();
});

// A cache miss through the proxy and the socket pool, the upstream answering in the same turn
// (no sockets): what a miss costs in JS above netloop's own work. The reply is unbound's shape.
const miss = socketlessMiss();
const missName = buildQuery({ id: 1, name: "r0000000.bench", type: 1 });
let misses = 0;
const answered = () => {};
Deno.bench("DnsProxy.answer: a cache miss through the socket pool, answered in the turn", () => {
  const text = String(misses++ % 10_000_000).padStart(7, "0");
  for (let j = 0; j < 7; j++) missName[14 + j] = text.charCodeAt(j);
  miss.proxy.answer(missName, client, answered, undefined);
  miss.replyAll();
  if (misses % 64 === 0) miss.tick();
});
