/**
 * The proxy's listeners: UDP and TCP on the same address (RFC 7766), over the portable Deno
 * socket APIs (`Deno.listenDatagram` or `node:dgram` for UDP, `Deno.listen` for TCP).
 *
 * @module
 */
import { formatSocketAddress, parseSocketAddress, TriadError } from "@triad/core";
import type { Logger, SocketAddress } from "@triad/core";
import type { ClientInfo, DnsProxy, ProxyAnswer } from "./proxy.ts";
import { bindUdpSocket } from "./_udp_socket.ts";
import type { UdpSocket } from "./_udp_socket.ts";

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
}

/** A running pair of listeners. */
export interface DnsServer extends AsyncDisposable {
  /** The address both listeners are bound to. */
  readonly address: SocketAddress;
  /** Open TCP connections. */
  readonly connections: number;
  /** Stops both listeners and closes TCP connections. */
  close(): Promise<void>;
}

/**
 * Serves a {@linkcode DnsProxy} over UDP and TCP on one address. TCP connections carry pipelined
 * queries answered as they complete (out of order), two-byte length prefixes may be split anywhere
 * across reads, messages are at most 64 KiB by construction, idle connections are closed.
 *
 * @param proxy The query path.
 * @param options Address and limits.
 * @returns The running server.
 * @throws {TriadError} With code `listen_failed` when the address cannot be bound.
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
  const wanted = parseSocketAddress(options.listen);
  const logger = options.logger;
  const onUdpError = (error: unknown) => logger?.warn("UDP socket error", { error });
  let udp: UdpSocket | undefined;
  let tcp: Deno.TcpListener | undefined;
  // With port 0, find a port free for both transports.
  for (let attempt = 0; attempt < 10 && tcp === undefined; attempt++) {
    try {
      udp = await bindUdpSocket(wanted, onUdpError, options.udp ?? "auto");
      tcp = Deno.listen({ hostname: wanted.address, port: udp.port, transport: "tcp" });
    } catch (cause) {
      await udp?.close();
      udp = undefined;
      if (wanted.port !== 0 || attempt === 9) {
        throw new TriadError(`Cannot listen on ${options.listen}: ${String(cause)}`, {
          code: "listen_failed",
          cause,
        });
      }
    }
  }
  const udpSocket = udp!;
  const listener = tcp!;
  const address: SocketAddress = { ...wanted, port: udpSocket.port };

  udpSocket.start((packet, from, port) => {
    const client: ClientInfo = { address: from, port, transport: "udp" };
    let answer: ProxyAnswer | Promise<ProxyAnswer>;
    try {
      answer = proxy.handle(packet, client);
    } catch (error) {
      logger?.error("query failed", { error });
      return;
    }
    if (answer === null) return;
    if (answer instanceof Uint8Array) {
      udpSocket.send(answer, from, port);
      return;
    }
    answer.then((bytes) => {
      if (bytes !== null) udpSocket.send(bytes, from, port);
    }).catch((error) => logger?.error("query failed", { error }));
  });

  const connections = new Set<TcpSession>();
  const maxConnections = options.maxConnections ?? 1000;
  const accepting = (async () => {
    for await (const conn of listener) {
      if (connections.size >= maxConnections) {
        conn.close();
        continue;
      }
      const session = new TcpSession(conn, proxy, options);
      connections.add(session);
      session.done.finally(() => connections.delete(session));
    }
  })().catch(() => {});

  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    listener.close();
    await udpSocket.close();
    for (const session of connections) session.close();
    await accepting;
    await Promise.allSettled([...connections].map((s) => s.done));
  };
  logger?.info("listening", {
    address: formatSocketAddress(address),
    transports: "udp+tcp",
    udp: udpSocket.kind === "deno" ? "Deno.listenDatagram" : "node:dgram",
  });
  return {
    address,
    get connections() {
      return connections.size;
    },
    close,
    [Symbol.asyncDispose]: close,
  };
}

/** One TCP client connection: framing, pipelining, ordered writes, idle timeout. */
class TcpSession {
  readonly done: Promise<void>;
  #conn: Deno.TcpConn;
  #proxy: DnsProxy;
  #client: ClientInfo;
  #pending = 0;
  #writing: Promise<void> = Promise.resolve();
  #closed = false;
  #idleTimer: ReturnType<typeof setTimeout> | undefined;
  #idleTimeout: number;
  #maxPipelined: number;
  #resume: (() => void) | undefined;

  constructor(conn: Deno.TcpConn, proxy: DnsProxy, options: ServeDnsOptions) {
    this.#conn = conn;
    this.#proxy = proxy;
    const remote = conn.remoteAddr;
    this.#client = { address: remote.hostname, port: remote.port, transport: "tcp" };
    this.#idleTimeout = options.idleTimeout ?? 10_000;
    this.#maxPipelined = options.maxPipelined ?? 100;
    this.#armIdle();
    this.done = this.#readLoop();
  }

  #armIdle(): void {
    clearTimeout(this.#idleTimer);
    this.#idleTimer = setTimeout(() => {
      if (this.#pending === 0) this.close();
      else this.#armIdle();
    }, this.#idleTimeout);
  }

  async #readLoop(): Promise<void> {
    // Two bytes of length plus at most 65535 of message: the buffer never grows past this.
    const buffer = new Uint8Array(65_537 + 16_384);
    let filled = 0;
    try {
      while (!this.#closed) {
        if (this.#pending >= this.#maxPipelined) {
          await new Promise<void>((resolve) => this.#resume = resolve);
          continue;
        }
        const n = await this.#conn.read(buffer.subarray(filled));
        if (n === null) break;
        filled += n;
        this.#armIdle();
        let at = 0;
        while (filled - at >= 2) {
          const length = (buffer[at]! << 8) | buffer[at + 1]!;
          if (filled - at - 2 < length) break;
          this.#query(buffer.slice(at + 2, at + 2 + length));
          at += 2 + length;
        }
        if (at > 0) {
          buffer.copyWithin(0, at, filled);
          filled -= at;
        }
      }
    } catch {
      // Reset by the peer or closed by us.
    }
    // Let queries in flight finish writing before closing (half-closed clients still read).
    while (this.#pending > 0 && !this.#closed) {
      await new Promise<void>((resolve) => this.#resume = resolve);
    }
    await this.#writing;
    this.close();
  }

  #query(message: Uint8Array): void {
    let answer: ProxyAnswer | Promise<ProxyAnswer>;
    try {
      answer = this.#proxy.handle(message, this.#client);
    } catch {
      return;
    }
    if (answer === null) return;
    if (answer instanceof Uint8Array) {
      this.#write(answer);
      return;
    }
    this.#pending++;
    answer.then((bytes) => {
      if (bytes !== null) this.#write(bytes);
    }).catch(() => {}).finally(() => {
      this.#pending--;
      const resume = this.#resume;
      this.#resume = undefined;
      resume?.();
    });
  }

  #write(answer: Uint8Array): void {
    const frame = new Uint8Array(answer.length + 2);
    frame[0] = answer.length >> 8;
    frame[1] = answer.length & 0xff;
    frame.set(answer, 2);
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
