/**
 * `deno bench dnsproxy/bench/handle_bench.ts`: the proxy's own work per query, without sockets:
 * a cache hit through `DnsProxy.handle` (parse, ACL, key, lookup, copy, ID/case/TTL rewrite, OPT
 * handling, metrics), and the strict parse alone.
 *
 * @module
 */
import { buildQuery, cacheKey, DnsProxy, parseMessage } from "@triad/dnsproxy";

const proxy = new DnsProxy({
  upstream: { upstreams: [], healthCheck: 0 },
  cache: { prefetchHits: 0 },
});
const query = buildQuery({ id: 1, name: "h1.bench", type: 1, edns: false });
const queryWithEdns = buildQuery({ id: 1, name: "h1.bench", type: 1 });
// The answer unbound gives: the question, one A record (TTL 300), an OPT record.
const answer = new Uint8Array([
  ...queryWithEdns.subarray(0, 26),
  ...[0xc0, 12, 0, 1, 0, 1, 0, 0, 1, 44, 0, 4, 10, 9, 9, 9],
  ...[0, 0, 41, 4, 208, 0, 0, 0, 0, 0, 0],
]);
answer[2] = 0x81;
answer[3] = 0x80;
answer[7] = 1;
answer[11] = 1;
proxy.cache.store(cacheKey(parseMessage(queryWithEdns)), answer, parseMessage(answer));
const client = { address: "127.0.0.1", port: 5000, transport: "udp" } as const;
if (!(proxy.handle(query, client) instanceof Uint8Array)) throw new Error("Expected a cache hit");

Deno.bench("DnsProxy.handle: cache hit, client without EDNS", () => {
  proxy.handle(query, client);
});

Deno.bench("DnsProxy.handle: cache hit, client with EDNS", () => {
  proxy.handle(queryWithEdns, client);
});

Deno.bench("parseMessage: a query", () => {
  parseMessage(queryWithEdns);
});

Deno.bench("parseMessage: an answer", () => {
  parseMessage(answer);
});
