/**
 * DNS over a byte stream (RFC 7766 framing), shared by cleartext TCP and DNS over TLS (RFC 7858):
 * pipelined queries answered as they complete (out of order), two-byte length prefixes split
 * anywhere across reads (the proxy's one framing, `DNS_FRAMING`), messages at most 64 KiB by construction, idle connections closed.
 *
 * @module
 */
import type { Logger, SocketAddress } from "@triad/core";
import type { ClientInfo, DnsProxy, ProxyAnswer } from "../proxy.ts";
import type { ClientTransport } from "../metrics.ts";
import { DNS_FRAMING, FrameBuffer } from "../_bytes.ts";
import { ask } from "./listener.ts";
import type { FrontendListener } from "./listener.ts";

/** Limits of a stream listener. */
export interface StreamOptions {
  /** Close a connection with nothing in flight after this long (ms). @default {10000} */
  idleTimeout?: number | undefined;
  /** Most connections at once; more are closed at accept. @default {1000} */
  maxConnections?: number | undefined;
  /** Most queries in flight per connection; reading pauses beyond it. @default {100} */
  maxPipelined?: number | undefined;
  /** Where errors are logged. */
  logger?: Logger | undefined;
}

/** A source of accepted connections (a TCP or TLS listener), replaceable for a new certificate. */
export interface Acceptor {
  /** Next connection, or `null` once closed. */
  accept(): Promise<Deno.Conn | null>;
  /** Stops accepting. */
  close(): void;
}

/** Adapts a Deno listener to an {@linkcode Acceptor}. */
export function acceptorOf(listener: Deno.Listener): Acceptor {
  return {
    async accept() {
      try {
        return await listener.accept();
      } catch {
        return null;
      }
    },
    close() {
      try {
        listener.close();
      } catch { /* already closed */ }
    },
  };
}

/**
 * Serves DNS over the connections an acceptor yields.
 *
 * @param acceptor The connections.
 * @param address The bound address.
 * @param transport `tcp` or `tls`.
 * @param proxy The query path.
 * @param options Limits.
 * @param onConnection Runs first on each connection (a TLS handshake); a rejection closes it.
 * @returns The running listener.
 */
export function serveStream(
  acceptor: Acceptor,
  address: SocketAddress,
  transport: ClientTransport,
  proxy: DnsProxy,
  options: StreamOptions,
  onConnection?: (conn: Deno.Conn) => Promise<void>,
): FrontendListener & { replaceAcceptor(next: Acceptor): void } {
  const sessions = new Set<StreamSession>();
  const maxConnections = options.maxConnections ?? 1000;
  let current = acceptor;
  let closed = false;
  const loops = new Set<Promise<void>>();
  const run = (from: Acceptor) => {
    const loop = (async () => {
      while (!closed) {
        const conn = await from.accept();
        if (conn === null) break;
        if (sessions.size >= maxConnections) {
          conn.close();
          continue;
        }
        const session = new StreamSession(conn, transport, proxy, options, onConnection);
        sessions.add(session);
        session.done.finally(() => sessions.delete(session));
      }
    })().catch((error) => options.logger?.warn("accept failed", { error, transport }));
    loops.add(loop);
    loop.finally(() => loops.delete(loop));
  };
  run(acceptor);
  return {
    transport,
    address,
    get connections() {
      return sessions.size;
    },
    replaceAcceptor(next) {
      const old = current;
      current = next;
      run(next);
      old.close();
    },
    async close() {
      if (closed) return;
      closed = true;
      current.close();
      for (const session of sessions) session.close();
      await Promise.allSettled([...loops]);
      await Promise.allSettled([...sessions].map((s) => s.done));
    },
  };
}

/** One client connection: framing, pipelining, ordered writes, idle timeout. */
class StreamSession {
  readonly done: Promise<void>;
  #conn: Deno.Conn;
  #proxy: DnsProxy;
  #client: ClientInfo;
  #logger: Logger | undefined;
  #pending = 0;
  #writing: Promise<void> = Promise.resolve();
  #closed = false;
  #idleTimer: ReturnType<typeof setTimeout> | undefined;
  #idleTimeout: number;
  #maxPipelined: number;
  #resume: (() => void) | undefined;

  constructor(
    conn: Deno.Conn,
    transport: ClientTransport,
    proxy: DnsProxy,
    options: StreamOptions,
    onConnection: ((conn: Deno.Conn) => Promise<void>) | undefined,
  ) {
    this.#conn = conn;
    this.#proxy = proxy;
    this.#logger = options.logger;
    const remote = conn.remoteAddr as Deno.NetAddr;
    this.#client = { address: remote.hostname, port: remote.port, transport };
    this.#idleTimeout = options.idleTimeout ?? 10_000;
    this.#maxPipelined = options.maxPipelined ?? 100;
    // The idle timer also bounds a handshake that never completes.
    this.#armIdle();
    this.done = (onConnection === undefined ? Promise.resolve() : onConnection(conn)).then(
      () => this.#readLoop(),
      () => this.close(),
    );
  }

  #armIdle(): void {
    clearTimeout(this.#idleTimer);
    this.#idleTimer = setTimeout(() => {
      if (this.#pending === 0) this.close();
      else this.#armIdle();
    }, this.#idleTimeout);
  }

  async #readLoop(): Promise<void> {
    // One whole frame plus one read: the buffer never grows past this.
    const inbound = new FrameBuffer();
    try {
      while (!this.#closed) {
        if (this.#pending >= this.#maxPipelined) {
          await new Promise<void>((resolve) => this.#resume = resolve);
          continue;
        }
        if (!(await inbound.fill(this.#conn))) break;
        this.#armIdle();
        for (;;) {
          const m = DNS_FRAMING.decode(inbound);
          if (m === undefined) break;
          this.#query(m.slice());
        }
      }
    } catch {
      // Reset by the peer, a TLS alert, or closed by us.
    }
    // Let queries in flight finish writing before closing (half-closed clients still read).
    while (this.#pending > 0 && !this.#closed) {
      await new Promise<void>((resolve) => this.#resume = resolve);
    }
    await this.#writing;
    this.close();
  }

  #query(message: Uint8Array): void {
    const answer: ProxyAnswer | Promise<ProxyAnswer> = ask(
      this.#proxy,
      message,
      this.#client,
      this.#logger,
    );
    if (answer === null) return;
    if (answer instanceof Uint8Array) {
      this.#write(answer);
      return;
    }
    this.#pending++;
    answer.then((bytes) => {
      if (bytes !== null) this.#write(bytes);
    }).finally(() => {
      this.#pending--;
      const resume = this.#resume;
      this.#resume = undefined;
      resume?.();
    });
  }

  #write(answer: Uint8Array): void {
    const frame = DNS_FRAMING.encode(answer);
    this.#writing = this.#writing.then(async () => {
      if (this.#closed) return;
      let at = 0;
      while (at < frame.length) at += await this.#conn.write(frame.subarray(at));
    }).catch(() => this.close());
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#idleTimer);
    try {
      this.#conn.close();
    } catch { /* already closed */ }
    const resume = this.#resume;
    this.#resume = undefined;
    resume?.();
  }
}
