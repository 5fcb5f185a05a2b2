/**
 * The DoH floor of `bench:dns --transport doh`: `Deno.serve` over TLS answering every request with
 * one fixed DNS answer and no DNS work (no parsing, no cache): what Deno's HTTP/2 server costs per
 * request before the proxy does anything.
 *
 * ```sh
 * deno run -A dnsproxy/bench/doh_floor.ts PORT CERT KEY
 * ```
 *
 * @module
 */
import { buildQuery } from "../wire/builders.ts";

const [port, cert, key] = Deno.args;
const query = buildQuery({ id: 0, name: "h0.bench.", type: 1, edns: false });
// The query as a response (QR, RA) with one answer: h0.bench. 300 IN A 10.9.9.9.
const record = [0xc0, 12, 0, 1, 0, 1, 0, 0, 1, 44, 0, 4, 10, 9, 9, 9];
const answer = new Uint8Array([...query, ...record]);
answer[2] = 0x81;
answer[3] = 0x80;
answer[7] = 1;
Deno.serve({
  hostname: "127.0.0.1",
  port: Number(port),
  cert: await Deno.readTextFile(cert!),
  key: await Deno.readTextFile(key!),
  onListen: () => {},
}, () =>
  new Response(answer as Uint8Array<ArrayBuffer>, {
    headers: { "content-type": "application/dns-message", "cache-control": "max-age=300" },
  }));
