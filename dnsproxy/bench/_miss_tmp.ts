import { buildQuery, DnsProxy, parseMessage } from "@triad/dnsproxy";
import { checkReply } from "../upstream/reply_check.ts";
const mode = Deno.args[0] ?? "full";
const transport = {
  udpQuery(
    _server: unknown,
    query: Uint8Array,
    id: number,
    info: unknown,
    _t: number,
    _m: unknown,
    done: (e: undefined, r: unknown) => void,
  ) {
    if (mode === "noop") return;
    // unbound's reply: the query with QR/RA set and one A record (TTL 300) before the OPT record.
    const q = query.length - 11;
    const reply = new Uint8Array(query.length + 16);
    reply.set(query.subarray(0, q));
    reply.set([0xc0, 12, 0, 1, 0, 1, 0, 0, 1, 44, 0, 4, 10, 9, 9, 9], q);
    reply.set(query.subarray(q), q + 16);
    reply[2] = 0x81;
    reply[3] = 0x80;
    reply[7] = 1;
    const result = checkReply(reply, id, info as never);
    if (typeof result === "string") throw new Error(result);
    done(undefined, { bytes: reply.slice(), info: result.info });
  },
};
const proxy = new DnsProxy(
  {
    upstream: { upstreams: ["127.0.0.1:53"], healthCheck: 0 },
    cache: { prefetchHits: 0, maxEntries: 1000 },
    transport,
  } as never,
);
const client = { address: "127.0.0.1", port: 5000, transport: "udp" } as const;
let answered = 0;
const respond = () => {
  answered++;
};
const N = 300_000;
const template = buildQuery({ id: 1, name: "q0000000.bench", type: 1, edns: true });
const arena = new Uint8Array((N + 50_000) * 64);
const queries = Array.from({ length: N + 50_000 }, (_, i) => {
  const q = arena.subarray(i * 64, i * 64 + template.length);
  q.set(template);
  const digits = String(i).padStart(7, "0");
  for (let d = 0; d < 7; d++) q[14 + d] = digits.charCodeAt(d);
  return q;
});
let i = 0;
for (let k = 0; k < 50_000; k++) proxy.answer(queries[i++]!, client, respond, undefined);
// @ts-ignore gc
globalThis.gc();
const h0 = Deno.memoryUsage().heapUsed;
console.log("MEASURE");
const t0 = performance.now();
for (let k = 0; k < N; k++) proxy.answer(queries[i++]!, client, respond, undefined);
console.log(mode, ((performance.now() - t0) * 1e6 / N).toFixed(0), "ns/miss", answered);
// @ts-ignore gc
globalThis.gc();
console.log(
  "retained per miss",
  (Deno.memoryUsage().heapUsed - h0) / N,
  "bytes; cache",
  proxy.cache.size,
);
