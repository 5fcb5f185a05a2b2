/**
 * What every front-end transport shares: the listener interface, the one bind/port-retry loop,
 * and the call into the query path.
 *
 * @module
 */
import { parseSocketAddress, TriadError } from "@triad/core";
import type { Logger, SocketAddress } from "@triad/core";
import type { ClientInfo, DnsProxy, ProxyAnswer } from "../proxy.ts";
import type { ClientTransport } from "../metrics.ts";
export { readAll } from "../_bytes.ts";

/** A running listener of one transport. */
export interface FrontendListener {
  /** The transport it serves. */
  readonly transport: ClientTransport;
  /** The bound address. */
  readonly address: SocketAddress;
  /** Open client connections (0 for UDP). */
  readonly connections: number;
  /** Stops accepting and closes client connections. */
  close(): Promise<void>;
}

/** A listener whose certificate can be replaced without a restart. */
export interface CertifiedListener extends FrontendListener {
  /**
   * Serves new connections with this certificate chain and key (PEM); connections already open
   * keep theirs.
   */
  setCertificate(pair: CertificatePair): Promise<void>;
}

/** A certificate chain and its private key, in PEM. */
export interface CertificatePair {
  /** The certificate chain. */
  readonly cert: string;
  /** The private key. */
  readonly key: string;
}

/** Options every listener takes. */
export interface ListenerOptions {
  /** Where errors are logged. */
  logger?: Logger | undefined;
}

/**
 * Binds with `bind`, retrying on another free port up to ten times when the wanted port is 0 (two
 * transports sharing a port: the second may find it taken). Every failure becomes a
 * `listen_failed` error naming the address.
 *
 * @param listen The address as configured (`127.0.0.1:0`).
 * @param bind Binds at this address; throws when it cannot.
 * @returns What `bind` returned.
 * @throws {TriadError} With code `listen_failed`.
 */
export async function bindRetrying<T>(
  listen: string,
  bind: (at: SocketAddress) => Promise<T> | T,
): Promise<T> {
  let at: SocketAddress;
  try {
    at = parseSocketAddress(listen);
  } catch (cause) {
    throw new TriadError(`Cannot listen on ${listen}: ${String(cause)}`, {
      code: "listen_failed",
      cause,
    });
  }
  for (let attempt = 0;; attempt++) {
    try {
      return await bind(at);
    } catch (cause) {
      if (at.port !== 0 || attempt === 9) {
        throw new TriadError(`Cannot listen on ${listen}: ${String(cause)}`, {
          code: "listen_failed",
          cause,
        });
      }
    }
  }
}

/**
 * Calls the query path, turning a synchronous throw into a `null` answer (logged).
 *
 * @param proxy The query path.
 * @param message The query.
 * @param client Who sent it.
 * @param logger Where a failure is logged.
 * @returns The answer or a promise of it.
 */
export function ask(
  proxy: DnsProxy,
  message: Uint8Array,
  client: ClientInfo,
  logger: Logger | undefined,
): ProxyAnswer | Promise<ProxyAnswer> {
  try {
    const answer = proxy.handle(message, client);
    if (answer instanceof Promise) {
      return answer.catch((error) => {
        logger?.error("query failed", { error, transport: client.transport });
        return null;
      });
    }
    return answer;
  } catch (error) {
    logger?.error("query failed", { error, transport: client.transport });
    return null;
  }
}

/**
 * Binds again on a port just closed: the runtime releases a closed listener's socket once its
 * pending accept is cancelled, a moment later, so `AddrInUse` is retried for up to a second.
 *
 * @param bind Binds; throws `Deno.errors.AddrInUse` while the port is still held.
 * @returns What `bind` returned.
 */
export async function rebind<T>(bind: () => T): Promise<T> {
  for (let attempt = 0;; attempt++) {
    try {
      return bind();
    } catch (error) {
      if (!(error instanceof Deno.errors.AddrInUse) || attempt === 100) throw error;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }
}

/**
 * The certificate pair, or a `listen_failed` error saying which transport needs one.
 *
 * @param pair The configured pair, if any.
 * @param what The transport (`DNS over TLS`).
 * @returns The pair.
 * @throws {TriadError} With code `listen_failed` when there is none.
 */
export function needCertificate(pair: CertificatePair | undefined, what: string): CertificatePair {
  if (pair !== undefined) return pair;
  throw new TriadError(`${what} needs a certificate and key (--tls-cert, --tls-key)`, {
    code: "listen_failed",
  });
}
