/**
 * The cost of the netloop DoH server's HTTP/2 path alone, without sockets, TLS or the proxy: what
 * h2load sends on one connection (10 GET or 10 POST requests; captured from a real h2load run
 * over cleartext HTTP/2 with prior knowledge) is replayed into a new `Http2Connection` again and
 * again, each query answered at once with a fixed answer. Prints microseconds per request (frames,
 * HPACK with Huffman, base64url, the response's frames and its max-age; a new connection every 10
 * requests included). Needs h2load (Debian's `nghttp2-client`).
 *
 * ```sh
 * deno run -A dnsproxy/bench/doh_wire.ts
 * ```
 *
 * @module
 */
import { Http2Connection } from "../frontend/_doh_wire.ts";
import { encodeBase64Url } from "../frontend/https.ts";
import { buildQuery } from "../wire/builders.ts";
import { freePort } from "./_bench_util.ts";

/** Runs h2load against a listener that records its first bytes and never answers. */
async function capture(args: string[]): Promise<Uint8Array> {
  const port = freePort();
  const listener = Deno.listen({ hostname: "127.0.0.1", port });
  const child = new Deno.Command("h2load", {
    args: ["-n", "10", "-c", "1", "-m", "10", ...args, `http://127.0.0.1:${port}/dns-query`],
    stdout: "null",
    stderr: "null",
  }).spawn();
  const conn = await listener.accept();
  const chunks: number[] = [];
  const buffer = new Uint8Array(65_536);
  // h2load sends its preface, SETTINGS and 10 requests at once, then waits: read until 10
  // HEADERS frames arrived (bounded by the count of reads).
  for (let reads = 0; reads < 100 && countHeaders(chunks) < 10; reads++) {
    const n = await conn.read(buffer);
    if (n === null) break;
    chunks.push(...buffer.subarray(0, n));
  }
  child.kill("SIGKILL");
  await child.status;
  conn.close();
  listener.close();
  return new Uint8Array(chunks);
}

function countHeaders(bytes: number[]): number {
  let at = 24;
  let n = 0;
  while (bytes.length - at >= 9) {
    const length = (bytes[at]! << 16) | (bytes[at + 1]! << 8) | bytes[at + 2]!;
    if (bytes[at + 3] === 1) n++;
    at += 9 + length;
  }
  return n;
}

const query = buildQuery({ id: 0, name: "h0.bench.", type: 1 });
const dir = await Deno.makeTempDir();
await Deno.writeFile(`${dir}/query`, query);
const inputs = {
  GET: await capture([
    "-H",
    "accept: application/dns-message",
    `--header=:path: /dns-query?dns=${encodeBase64Url(query)}`,
  ]),
  POST: await capture(["-d", `${dir}/query`, "-H", "content-type: application/dns-message"]),
};
await Deno.remove(dir, { recursive: true });
// h0.bench. A 10.9.9.9, TTL 300.
const answer = new Uint8Array([
  0,
  0,
  0x81,
  0x80,
  0,
  1,
  0,
  1,
  0,
  0,
  0,
  0,
  2,
  0x68,
  0x30,
  5,
  0x62,
  0x65,
  0x6e,
  0x63,
  0x68,
  0,
  0,
  1,
  0,
  1,
  0xc0,
  12,
  0,
  1,
  0,
  1,
  0,
  0,
  1,
  44,
  0,
  4,
  10,
  9,
  9,
  9,
]); // deno-fmt-ignore
const out = { closed: false, write: () => 0, close() {} };
for (const [method, input] of Object.entries(inputs)) {
  let asked = 0;
  const ask = () => (asked++, answer);
  const runs: number[] = [];
  for (let round = 0; round < 7; round++) {
    const connections = 20_000;
    asked = 0;
    const started = performance.now();
    for (let i = 0; i < connections; i++) {
      new Http2Connection(out, { path: "/dns-query", ask }).traffic(input);
    }
    runs.push((performance.now() - started) * 1000 / asked);
  }
  runs.sort((a, b) => a - b);
  console.log(`${method}: ${runs[3]!.toFixed(2)} us/request (median of 7 rounds of 200,000)`);
}
