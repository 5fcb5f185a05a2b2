/**
 * DNS over QUIC (RFC 9250) on Deno's QUIC (`--unstable-net`): ALPN `doq`, one query per
 * client-opened bidirectional stream with a two-byte length prefix, the message ID 0 on the wire,
 * the RFC's error codes on the connection. A new certificate is taken by listening again on the
 * same endpoint: open connections keep the old one.
 *
 * @module
 */
import type { Logger } from "@triad/core";
import type { ClientInfo, DnsProxy } from "../proxy.ts";
import { ask, bindRetrying, readAll } from "./listener.ts";
import type { CertificatePair, CertifiedListener } from "./listener.ts";
import { DNS_FRAMING, onlyMessage } from "../_bytes.ts";

/** RFC 9250 §4.3 error codes. */
const DoqError = {
  /** No error: closing a connection without a problem. */
  NO_ERROR: 0,
  /** The DoQ implementation encountered an internal error. */
  INTERNAL_ERROR: 1,
  /** A protocol error: a malformed or unexpected message or stream. */
  PROTOCOL_ERROR: 2,
  /** A request was cancelled. */
  REQUEST_CANCELLED: 3,
  /** The server is closing the connection because of excessive load. */
  EXCESSIVE_LOAD: 4,
} as const;

/** Options of {@linkcode serveQuic}. */
export interface QuicListenOptions {
  /** Where to listen (`127.0.0.1:853`, UDP). */
  listen: string;
  /** The certificate chain and key. */
  certificate: CertificatePair;
  /** Idle connections are closed after this long (ms). @default {10000} */
  idleTimeout?: number | undefined;
  /** Most queries (streams) in flight per connection. @default {100} */
  maxPipelined?: number | undefined;
  /** Where errors are logged. */
  logger?: Logger | undefined;
}

/** Whether this runtime offers QUIC (Deno with `--unstable-net`). */
function quicAvailable(): boolean {
  return typeof (Deno as { QuicEndpoint?: unknown }).QuicEndpoint === "function";
}

/**
 * Serves DNS over QUIC.
 *
 * @param proxy The query path (its metrics count handshakes).
 * @param options Address, certificate, limits.
 * @returns The running listener.
 * @throws {TriadError} With code `listen_failed`, also when the runtime has no QUIC.
 */
export async function serveQuic(
  proxy: DnsProxy,
  options: QuicListenOptions,
): Promise<CertifiedListener> {
  const [endpoint, at] = await bindRetrying(options.listen, (at) => {
    if (!quicAvailable()) throw new Error("QUIC needs Deno's --unstable-net");
    return [new Deno.QuicEndpoint({ hostname: at.address, port: at.port }), at] as const;
  });
  const address = { ...at, port: endpoint.addr.port };
  const logger = options.logger;
  const conns = new Set<Deno.QuicConn>();
  const loops = new Set<Promise<void>>();
  let closed = false;
  const listen = (pair: CertificatePair) =>
    endpoint.listen({
      cert: pair.cert,
      key: pair.key,
      alpnProtocols: ["doq"],
      maxIdleTimeout: options.idleTimeout ?? 10_000,
      maxConcurrentBidirectionalStreams: options.maxPipelined ?? 100,
      maxConcurrentUnidirectionalStreams: 0,
    });

  const serveConn = async (conn: Deno.QuicConn) => {
    const remote = conn.remoteAddr;
    const client: ClientInfo = { address: remote.hostname, port: remote.port, transport: "quic" };
    const streams = conn.incomingBidirectionalStreams.getReader();
    try {
      while (true) {
        const { value: stream, done } = await streams.read();
        if (done) break;
        serveStream(conn, stream, client).catch((error) => {
          logger?.debug("DoQ stream failed", { error });
        });
      }
    } catch {
      // the connection closed
    }
  };

  const serveStream = async (
    conn: Deno.QuicConn,
    stream: Deno.QuicBidirectionalStream,
    client: ClientInfo,
  ) => {
    const bytes = await readAll(stream.readable, 65_537);
    // RFC 9250 §4.2: one length-prefixed message, then FIN; the ID is 0 (§4.2.1).
    const message = bytes === undefined ? undefined : onlyMessage(bytes);
    if (message === undefined || message.length < 12) {
      conn.close({ closeCode: DoqError.PROTOCOL_ERROR, reason: "malformed DoQ stream" });
      return;
    }
    if (message[0] !== 0 || message[1] !== 0) {
      conn.close({ closeCode: DoqError.PROTOCOL_ERROR, reason: "DNS message ID is not 0" });
      return;
    }
    const answer = await ask(proxy, message, client, logger);
    if (answer === null) {
      conn.close({ closeCode: DoqError.PROTOCOL_ERROR, reason: "not a DNS query" });
      return;
    }
    const writer = stream.writable.getWriter();
    await writer.write(DNS_FRAMING.encode(answer));
    await writer.close();
  };

  const acceptLoop = (listener: Deno.QuicListener) => {
    const loop = (async () => {
      for await (const incoming of listener) {
        if (closed) {
          incoming.refuse();
          continue;
        }
        (async () => {
          let conn: Deno.QuicConn;
          try {
            conn = await incoming.accept();
            await conn.handshake;
            proxy.metrics.handshake("quic", "ok");
          } catch (error) {
            proxy.metrics.handshake("quic", "failed");
            logger?.debug("DoQ handshake failed", { error });
            return;
          }
          conns.add(conn);
          conn.closed.catch(() => {}).finally(() => conns.delete(conn));
          await serveConn(conn);
        })().catch((error) => logger?.warn("DoQ connection failed", { error }));
      }
    })().catch(() => {});
    loops.add(loop);
    loop.finally(() => loops.delete(loop));
  };

  let listener = listen(options.certificate);
  acceptLoop(listener);
  return {
    transport: "quic",
    address,
    get connections() {
      return conns.size;
    },
    setCertificate(pair) {
      // endpoint.listen checks the pair; a bad one throws with the old listener still serving.
      const next = listen(pair);
      const old = listener;
      listener = next;
      acceptLoop(next);
      old.stop();
      return Promise.resolve();
    },
    async close() {
      if (closed) return;
      closed = true;
      listener.stop();
      for (const conn of conns) conn.close({ closeCode: DoqError.NO_ERROR, reason: "shutdown" });
      endpoint.close({ closeCode: DoqError.NO_ERROR, reason: "shutdown" });
      await Promise.allSettled([...loops]);
    },
  };
}
