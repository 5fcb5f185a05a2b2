/**
 * DNS over TLS (RFC 7858) on `Deno.listenTls`: ALPN `dot`, the same pipelined, out-of-order
 * stream path as TCP, idle connections closed per RFC 7766 §6.2.3 and RFC 7858 §3.4. A new
 * certificate binds a fresh listener on the same port; open connections keep the old one.
 *
 * @module
 */
import type { SocketAddress } from "@triad/core";
import type { DnsProxy } from "../proxy.ts";
import { bindRetrying, rebind } from "./listener.ts";
import type { CertificatePair, CertifiedListener } from "./listener.ts";
import { acceptorOf, serveStream } from "./stream.ts";
import type { StreamOptions } from "./stream.ts";

/** Options of {@linkcode serveTls}. */
export interface TlsListenOptions extends StreamOptions {
  /** Where to listen (`127.0.0.1:853`). */
  listen: string;
  /** The certificate chain and key. */
  certificate: CertificatePair;
}

function bind(at: SocketAddress, pair: CertificatePair): Deno.TlsListener {
  return Deno.listenTls({
    hostname: at.address,
    port: at.port,
    transport: "tcp",
    cert: pair.cert,
    key: pair.key,
    alpnProtocols: ["dot"],
  });
}

/**
 * Serves DNS over TLS.
 *
 * @param proxy The query path (its metrics count handshakes).
 * @param options Address, certificate, limits.
 * @returns The running listener.
 * @throws {TriadError} With code `listen_failed` (a bad certificate too).
 */
export async function serveTls(
  proxy: DnsProxy,
  options: TlsListenOptions,
): Promise<CertifiedListener> {
  const [listener, at] = await bindRetrying(
    options.listen,
    (at) => [bind(at, options.certificate), at] as const,
  );
  const address = { ...at, port: listener.addr.port };
  const handshake = async (conn: Deno.Conn) => {
    try {
      await (conn as Deno.TlsConn).handshake();
      proxy.metrics.handshake("tls", "ok");
    } catch (error) {
      proxy.metrics.handshake("tls", "failed");
      throw error;
    }
  };
  const served = serveStream(acceptorOf(listener), address, "tls", proxy, options, handshake);
  return {
    transport: "tls",
    address,
    get connections() {
      return served.connections;
    },
    async setCertificate(pair) {
      // Check the pair on a throwaway port first (throws on a bad pair, the old one serving on).
      bind({ ...address, port: 0 }, pair).close();
      // Linux refuses a second listener on the port while the old one is open: close it first
      // (a connect in between is refused; open connections are untouched).
      served.replaceAcceptor(CLOSED);
      served.replaceAcceptor(acceptorOf(await rebind(() => bind(address, pair))));
    },
    close: () => served.close(),
  };
}

const CLOSED = { accept: () => Promise.resolve(null), close() {} };
