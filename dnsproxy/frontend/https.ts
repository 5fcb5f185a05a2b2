/**
 * DNS over HTTPS (RFC 8484) on `Deno.serve`: `GET ?dns=` (base64url without padding) and `POST`
 * of `application/dns-message`, over HTTP/2 (TLS with ALPN `h2`) and HTTP/1.1. Answers carry
 * `Cache-Control: max-age` from their lowest TTL; errors are HTTP statuses (400 undecodable, 404
 * another path, 405 another method, 413 over 64 KiB, 415 another content type). Without a
 * certificate it serves cleartext HTTP (behind a TLS-terminating proxy).
 *
 * @module
 */
import type { Logger, SocketAddress } from "@triad/core";
import type { ClientInfo, DnsProxy } from "../proxy.ts";
import { maxAge } from "./_doh_wire.ts";
import { ask, bindRetrying, readAll, rebind } from "./listener.ts";
import type { CertificatePair, CertifiedListener } from "./listener.ts";

/** The media type of a DNS message (RFC 8484 §6). */
export const DNS_MESSAGE = "application/dns-message";

/** Options of {@linkcode serveHttps}. */
export interface HttpsListenOptions {
  /** Where to listen (`127.0.0.1:443`). */
  listen: string;
  /** The certificate chain and key; cleartext HTTP/1.1 without. */
  certificate?: CertificatePair | undefined;
  /** The URL path queries are sent to. @default {"/dns-query"} */
  path?: string | undefined;
  /** Where errors are logged. */
  logger?: Logger | undefined;
}

const MAX_MESSAGE = 65_535;

/**
 * Answers one DoH request (exported for tests and for embedding in another `Deno.serve`).
 *
 * @param request The HTTP request.
 * @param remote The client's address.
 * @param proxy The query path.
 * @param path The query path of the URL.
 * @param logger Where a failed query is logged.
 * @returns The HTTP response.
 *
 * @example
 * ```ts
 * import { answerDohRequest, buildQuery, DnsProxy, parseMessage, Rcode } from "@triad/dnsproxy";
 * import assert from "node:assert/strict";
 *
 * using proxy = new DnsProxy({ upstream: { upstreams: [], healthCheck: 0 } });
 * const query = new Request("https://p/dns-query", {
 *   method: "POST",
 *   headers: { "content-type": "application/dns-message" },
 *   body: buildQuery({ id: 0, name: "x.", type: 1 }) as Uint8Array<ArrayBuffer>,
 * });
 * const remote = { hostname: "8.8.8.8", port: 1000 }; // not an allowed client
 * const ok = await answerDohRequest(query, remote, proxy);
 * assert.equal(ok.headers.get("content-type"), "application/dns-message");
 * assert.equal(parseMessage(new Uint8Array(await ok.arrayBuffer())).rcode, Rcode.REFUSED);
 * const bad = await answerDohRequest(new Request("https://p/dns-query?dns=a="), remote, proxy);
 * assert.equal(bad.status, 400);
 * await bad.body?.cancel();
 * ```
 */
export async function answerDohRequest(
  request: Request,
  remote: { hostname: string; port: number },
  proxy: DnsProxy,
  path = "/dns-query",
  logger?: Logger,
): Promise<Response> {
  const url = new URL(request.url);
  if (url.pathname !== path) return problem(404, `Not found: queries go to ${path}`);
  let message: Uint8Array;
  if (request.method === "GET" || request.method === "HEAD") {
    const dns = url.searchParams.get("dns");
    if (dns === null) return problem(400, "Missing the dns parameter");
    if (dns.length > Math.ceil(MAX_MESSAGE * 4 / 3)) return problem(413, "Message over 64 KiB");
    const decoded = decodeBase64Url(dns);
    if (decoded === undefined) {
      return problem(400, "The dns parameter is not base64url without padding (RFC 8484 §4.1)");
    }
    message = decoded;
  } else if (request.method === "POST") {
    const type = (request.headers.get("content-type") ?? "").split(";")[0]!.trim().toLowerCase();
    if (type !== DNS_MESSAGE) return problem(415, `Content-Type must be ${DNS_MESSAGE}`);
    const length = request.headers.get("content-length");
    if (Number(length ?? "0") > MAX_MESSAGE) return problem(413, "Message over 64 KiB");
    // With a declared length (which the HTTP layer holds the body to) read it in one call: the
    // chunk-by-chunk read cost a third of a POST's CPU.
    const body = request.body === null
      ? new Uint8Array(0)
      : length !== null
      ? new Uint8Array(await request.arrayBuffer())
      : await readAll(request.body, MAX_MESSAGE);
    if (body === undefined) return problem(413, "Message over 64 KiB");
    message = body;
  } else {
    return problem(405, "Use GET or POST", { allow: "GET, POST" });
  }
  if (message.length < 12) return problem(400, "Not a DNS message: shorter than its header");
  const client: ClientInfo = { address: remote.hostname, port: remote.port, transport: "https" };
  const answer = await ask(proxy, message, client, logger);
  if (answer === null) return problem(400, "Not a DNS query");
  return new Response(request.method === "HEAD" ? null : answer as Uint8Array<ArrayBuffer>, {
    headers: {
      "content-type": DNS_MESSAGE,
      "content-length": String(answer.length),
      "cache-control": `max-age=${maxAge(answer)}`,
    },
  });
}

/**
 * Decodes base64url without padding (RFC 4648 §5), or returns `undefined`.
 *
 * @param text The encoded text.
 * @returns The bytes, or `undefined` for anything else (padding included).
 *
 * @example
 * ```ts
 * import { decodeBase64Url, encodeBase64Url } from "./https.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(encodeBase64Url(new Uint8Array([0xfb, 0xff])), "-_8");
 * assert.deepEqual(decodeBase64Url("-_8"), new Uint8Array([0xfb, 0xff]));
 * assert.equal(decodeBase64Url("-_8="), undefined); // padding is refused (RFC 8484 §4.1)
 * ```
 */
export function decodeBase64Url(text: string): Uint8Array | undefined {
  if (!/^[A-Za-z0-9_-]*$/.test(text) || text.length % 4 === 1) return undefined;
  const base64 = text.replaceAll("-", "+").replaceAll("_", "/");
  try {
    const binary = atob(base64 + "=".repeat((4 - base64.length % 4) % 4));
    return Uint8Array.from(binary, (c) => c.charCodeAt(0));
  } catch {
    return undefined;
  }
}

/**
 * Encodes bytes as base64url without padding.
 *
 * @param bytes The bytes.
 * @returns The text.
 */
export function encodeBase64Url(bytes: Uint8Array): string {
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
}

function problem(status: number, text: string, headers: Record<string, string> = {}): Response {
  return new Response(`${text}\n`, {
    status,
    headers: { "content-type": "text/plain", ...headers },
  });
}

function bind(
  at: SocketAddress,
  options: HttpsListenOptions,
  certificate: CertificatePair | undefined,
  proxy: DnsProxy,
): Deno.HttpServer<Deno.NetAddr> {
  const path = options.path ?? "/dns-query";
  return Deno.serve({
    hostname: at.address,
    port: at.port,
    ...(certificate === undefined ? {} : { cert: certificate.cert, key: certificate.key }),
    onListen: () => {},
    onError: (error) => {
      options.logger?.error("DoH request failed", { error });
      return problem(500, "Internal error");
    },
  }, (request, info) => answerDohRequest(request, info.remoteAddr, proxy, path, options.logger));
}

/**
 * Serves DNS over HTTPS.
 *
 * @param proxy The query path.
 * @param options Address, certificate, path.
 * @returns The running listener.
 * @throws {TriadError} With code `listen_failed` (a bad certificate too).
 */
export async function serveHttps(
  proxy: DnsProxy,
  options: HttpsListenOptions,
): Promise<CertifiedListener> {
  let [server, at] = await bindRetrying(
    options.listen,
    (at) => [bind(at, options, options.certificate, proxy), at] as const,
  );
  const address = { ...at, port: server.addr.port };
  let closed = false;
  return {
    transport: "https",
    address,
    connections: 0,
    async setCertificate(pair) {
      // Check the pair on a throwaway port first: a bad one throws with the old server serving.
      await bind({ ...address, port: 0 }, options, pair, proxy).shutdown();
      const old = server;
      await old.shutdown();
      if (closed) return;
      server = await rebind(() => bind(address, options, pair, proxy));
    },
    async close() {
      closed = true;
      await server.shutdown();
    },
  };
}
