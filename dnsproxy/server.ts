/**
 * The proxy's listeners on Deno's sockets, one file per transport under `frontend/`: UDP and TCP
 * on the same address (RFC 7766), and optionally DNS over TLS (RFC 7858), over HTTPS (RFC 8484)
 * and over QUIC (RFC 9250) on addresses of their own.
 *
 * @module
 */
import { formatSocketAddress } from "@triad/core";
import type { Logger, SocketAddress } from "@triad/core";
import type { DnsProxy } from "./proxy.ts";
import { bindRetrying, needCertificate } from "./frontend/listener.ts";
import type { CertificatePair, CertifiedListener, FrontendListener } from "./frontend/listener.ts";
import { bindUdpSocket, serveUdp } from "./frontend/udp.ts";
import type { UdpSocket } from "./frontend/udp.ts";
import type { StreamOptions } from "./frontend/stream.ts";
import { listenTcp, serveTcp } from "./frontend/tcp.ts";
import { serveTls } from "./frontend/tls.ts";
import { serveHttps } from "./frontend/https.ts";
import { serveQuic } from "./frontend/quic.ts";

/** Options of {@linkcode serveDns}. */
export interface ServeDnsOptions {
  /** Where to listen, `127.0.0.1:5353` or `[::1]:5353`; port 0 picks a free port. */
  listen: string;
  /** Close a TCP connection with nothing in flight after this long (ms). @default {10000} */
  idleTimeout?: number;
  /** Most TCP connections at once; more are closed at accept. @default {1000} */
  maxConnections?: number;
  /** Most queries in flight per TCP connection; reading pauses beyond it. @default {100} */
  maxPipelined?: number;
  /** Where errors are logged. */
  logger?: Logger;
  /**
   * The UDP socket: `"deno"` is `Deno.listenDatagram` (needs `--unstable-net`), `"node"` is
   * `node:dgram`; `"auto"` takes the first available. @default {"auto"}
   */
  udp?: "auto" | "deno" | "node";
  /** Also serve on the encrypted transports given an address (each needs `certificate`). */
  encrypted?: EncryptedListenOptions;
}

/** Where the encrypted transports listen, and with which certificate. */
export interface EncryptedListenOptions {
  /** DNS over TLS address (TCP), say `127.0.0.1:853`. */
  tls?: string | undefined;
  /** DNS over HTTPS address (TCP), say `127.0.0.1:443`. */
  https?: string | undefined;
  /** DNS over QUIC address (UDP), say `127.0.0.1:853` (needs `--unstable-net`). */
  quic?: string | undefined;
  /** The URL path of DoH. @default {"/dns-query"} */
  httpsPath?: string | undefined;
  /** The certificate chain and key of all three. */
  certificate?: CertificatePair | undefined;
}

/** A running set of listeners. */
export interface DnsServer extends AsyncDisposable {
  /** The address UDP and TCP are bound to. */
  readonly address: SocketAddress;
  /** Open TCP connections. */
  readonly connections: number;
  /** Every listener, by transport (`udp`, `tcp`, and `tls`, `https`, `quic` when asked for). */
  readonly listeners: readonly FrontendListener[];
  /**
   * Serves new encrypted connections with this certificate; a bad pair throws and the running one
   * stays.
   */
  setCertificate(pair: CertificatePair): Promise<void>;
  /** Stops every listener and closes connections. */
  close(): Promise<void>;
}

/**
 * Serves a {@linkcode DnsProxy} over UDP and TCP on one address, and over TLS, HTTPS and QUIC
 * where asked. TCP and TLS connections carry pipelined queries answered as they complete (out of
 * order), two-byte length prefixes may be split anywhere across reads, messages are at most
 * 64 KiB by construction, idle connections are closed.
 *
 * @param proxy The query path.
 * @param options Address and limits.
 * @returns The running server.
 * @throws {TriadError} With code `listen_failed` when an address cannot be bound.
 *
 * @example
 * ```ts
 * import { DnsProxy, serveDns } from "@triad/dnsproxy";
 * import assert from "node:assert/strict";
 *
 * using proxy = new DnsProxy({ upstream: { upstreams: [], healthCheck: 0 } });
 * await using server = await serveDns(proxy, { listen: "127.0.0.1:0" });
 * assert.ok(server.address.port > 0);
 * ```
 */
export async function serveDns(proxy: DnsProxy, options: ServeDnsOptions): Promise<DnsServer> {
  const logger = options.logger;
  const onUdpError = (error: unknown) => logger?.warn("UDP socket error", { error });
  // With port 0, find a port free for both transports.
  const [udpSocket, listener, wanted] = await bindRetrying(options.listen, async (at) => {
    const udp: UdpSocket = await bindUdpSocket(at, onUdpError, options.udp ?? "auto");
    try {
      return [udp, listenTcp({ ...at, port: udp.port }), at] as const;
    } catch (error) {
      await udp.close();
      throw error;
    }
  });
  const streamOptions = {
    idleTimeout: options.idleTimeout,
    maxConnections: options.maxConnections,
    maxPipelined: options.maxPipelined,
    logger,
  };
  const listeners: FrontendListener[] = [
    serveUdp(udpSocket, wanted, proxy, logger),
    serveTcp(listener, wanted, proxy, streamOptions),
  ];
  let encrypted: EncryptedDnsServer;
  try {
    encrypted = await serveEncryptedDns(proxy, options.encrypted ?? {}, streamOptions);
  } catch (error) {
    await Promise.allSettled(listeners.map((l) => l.close()));
    throw error;
  }
  listeners.push(...encrypted.listeners);
  const address: SocketAddress = listeners[0]!.address;
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    await Promise.allSettled(listeners.map((l) => l.close()));
  };
  for (const served of listeners) {
    logger?.info("listening", {
      address: formatSocketAddress(served.address),
      transport: served.transport,
      ...(served.transport === "udp"
        ? { udp: udpSocket.kind === "deno" ? "Deno.listenDatagram" : "node:dgram" }
        : {}),
    });
  }
  return {
    address,
    get connections() {
      return listeners[1]!.connections;
    },
    listeners,
    setCertificate: (pair) => encrypted.setCertificate(pair),
    close,
    [Symbol.asyncDispose]: close,
  };
}

/** The encrypted listeners of {@linkcode serveEncryptedDns}. */
export interface EncryptedDnsServer {
  /** The listeners started (none when no address was given). */
  readonly listeners: readonly FrontendListener[];
  /** Serves new connections with this pair; a bad pair throws and the running one stays. */
  setCertificate(pair: CertificatePair): Promise<void>;
  /** Stops them. */
  close(): Promise<void>;
}

/**
 * Serves a {@linkcode DnsProxy} over TLS, HTTPS and QUIC, on the addresses given (any of them).
 *
 * @param proxy The query path.
 * @param options Addresses, DoH path, certificate.
 * @param limits Stream limits and logger (as {@linkcode ServeDnsOptions}).
 * @returns The running listeners.
 * @throws {TriadError} With code `listen_failed` (an address taken, a certificate refused, or
 *   none given for DoT or DoQ).
 */
export async function serveEncryptedDns(
  proxy: DnsProxy,
  options: EncryptedListenOptions,
  limits: StreamOptions,
): Promise<EncryptedDnsServer> {
  const listeners: CertifiedListener[] = [];
  const certificate = options.certificate;
  try {
    if (options.tls !== undefined) {
      listeners.push(
        await serveTls(proxy, {
          ...limits,
          listen: options.tls,
          certificate: needCertificate(certificate, "DNS over TLS"),
        }),
      );
    }
    if (options.https !== undefined) {
      listeners.push(
        await serveHttps(proxy, {
          listen: options.https,
          certificate,
          path: options.httpsPath,
          logger: limits.logger,
        }),
      );
    }
    if (options.quic !== undefined) {
      listeners.push(
        await serveQuic(proxy, {
          listen: options.quic,
          certificate: needCertificate(certificate, "DNS over QUIC"),
          idleTimeout: limits.idleTimeout,
          maxPipelined: limits.maxPipelined,
          logger: limits.logger,
        }),
      );
    }
  } catch (error) {
    await Promise.allSettled(listeners.map((l) => l.close()));
    throw error;
  }
  return {
    listeners,
    async setCertificate(pair) {
      for (const served of listeners) await served.setCertificate(pair);
    },
    async close() {
      await Promise.allSettled(listeners.map((l) => l.close()));
    },
  };
}
