/**
 * The QUIC extension interface: what a QUIC implementation gives netloop (open a bidirectional
 * stream, accept the peer's, the connection's identity, the congestion controller, 0-RTT), and
 * one implementation on Deno's QUIC (`Deno.QuicEndpoint`, `Deno.connectQuic`, behind
 * `--unstable-net`). A stream is presented as a {@linkcode Conn}, so a TCP handler serves QUIC
 * streams unchanged.
 *
 * Deno's QUIC runs on Deno's own event loop (promises), not on netloop's kernel loops: a QUIC
 * server runs on the thread that starts it.
 *
 * @module
 */
import { createLogger, type Logger, type SocketAddress } from "@triad/core";
import { Action } from "./action.ts";
import type { Conn } from "./conn.ts";
import type { ConnHandler, HandlerResult, Loop } from "./event_handler.ts";
import { NetloopError } from "./errors.ts";

/** The congestion controllers a transport may offer. */
export type CongestionControl = "default" | "throughput" | "low-latency";

/** A QUIC connection: its identity, and its streams. */
export interface QuicSession {
  /** The connection's identity in this process (unique, stable for its life). */
  readonly id: string;
  /** The peer's UDP address. */
  readonly remoteAddress: SocketAddress;
  /** The ALPN protocol agreed. */
  readonly alpn: string | undefined;
  /** The server name the client asked for (server side). */
  readonly serverName: string | undefined;
  /** Whether the connection was set up with 0-RTT (client: sent before the handshake finished). */
  readonly zeroRtt: boolean;
  /**
   * Opens a bidirectional stream, handled by `handler` (`onOpen` at once, `onTraffic` as data
   * arrives, `onClose` when both sides are done).
   */
  openStream(handler?: ConnHandler): Promise<Conn>;
  /** Serves every stream the peer opens with `handler` (a server does this for each session). */
  acceptStreams(handler: ConnHandler): Promise<void>;
  /** Resolves when the connection closes. */
  readonly closed: Promise<{ code: number; reason: string }>;
  /** Closes the connection and its streams. */
  close(code?: number, reason?: string): void;
}

/** Options of a QUIC server. */
export interface QuicServeOptions {
  /** The address to listen on. @default {"127.0.0.1"} */
  hostname?: string;
  /** The UDP port; 0 picks one. @default {0} */
  port?: number;
  /** The certificate chain (PEM text). */
  cert: string;
  /** The private key (PEM text). */
  key: string;
  /** ALPN protocols (QUIC requires one). */
  alpn: string[];
  /** The congestion controller. @default {"default"} */
  congestionControl?: CongestionControl;
  /** Accept 0.5-RTT (reply before the client's Finished; replay caveats as for TLS). @default {false} */
  zeroRtt?: boolean;
  /** Close connections idle for this long (ms). */
  maxIdleTimeout?: number;
}

/** Options of a QUIC client connection. */
export interface QuicDialOptions {
  /** The server's address or name. */
  hostname: string;
  /** The server's UDP port. */
  port: number;
  /** Checked against the certificate. @default {hostname} */
  serverName?: string;
  /** Trusted CA certificates (PEM text). */
  ca?: string;
  /** ALPN protocols to offer (QUIC requires one). */
  alpn: string[];
  /** The congestion controller. @default {"default"} */
  congestionControl?: CongestionControl;
  /**
   * Try 0-RTT with a ticket from an earlier connection to the same server (from this transport).
   * Data sent before the handshake finishes can be replayed. @default {false}
   */
  zeroRtt?: boolean;
}

/** A running QUIC server. */
export interface QuicServer extends AsyncDisposable {
  /** The address it listens on. */
  readonly address: SocketAddress;
  /** Connections open now. */
  readonly sessions: ReadonlySet<QuicSession>;
  /** Stops listening and closes every connection. */
  stop(): Promise<void>;
}

/** What a QUIC implementation provides netloop. */
export interface QuicTransport {
  /** Serves `handler` on every stream a client opens. */
  serve(handler: ConnHandler, options: QuicServeOptions): Promise<QuicServer>;
  /** Connects to a server. */
  connect(options: QuicDialOptions): Promise<QuicSession>;
  /** Closes the transport's client endpoint. */
  close(): void;
}

type DenoQuic = {
  QuicEndpoint: new (options?: { hostname?: string; port?: number }) => Deno.QuicEndpoint;
  connectQuic: typeof Deno.connectQuic;
};

function denoQuic(): DenoQuic {
  const d = Deno as unknown as Partial<DenoQuic>;
  if (typeof d.QuicEndpoint !== "function" || typeof d.connectQuic !== "function") {
    throw new NetloopError("QUIC needs Deno's QUIC API: run with --unstable-net", {
      code: "backend_unavailable",
    });
  }
  return d as DenoQuic;
}

let sessionIds = 0;
const logger: Logger = createLogger({ level: "warn", fields: { module: "netloop.quic" } });

function netAddress(a: Deno.NetAddr): SocketAddress {
  return { family: a.hostname.includes(":") ? 6 : 4, address: a.hostname, port: a.port };
}

/** The `Loop` a QUIC stream's `conn.loop` points at: Deno's event loop, without dialing. */
class QuicLoop implements Loop {
  readonly index = 0;
  readonly loops = 1;
  readonly backend = "portable" as const;
  readonly data = undefined;
  readonly logger = logger;
  connections = 0;
  constructor(readonly address: SocketAddress) {}
  get now(): number {
    return performance.now();
  }
  dial(): Conn {
    throw new NetloopError("dial is not available on a QUIC stream's loop", { code: "bad_option" });
  }
  postMessage(): void {}
  tickWithin(): void {}
}

/** A bidirectional stream as a `Conn`. */
class StreamConn implements Conn {
  readonly network = "tcp" as const;
  context: unknown = undefined;
  #buf = new Uint8Array(0);
  #start = 0;
  #end = 0;
  #writer: WritableStreamDefaultWriter<Uint8Array>;
  #queued = 0;
  #closed = false;

  constructor(
    readonly loop: QuicLoop,
    readonly session: QuicSession,
    readonly stream: Deno.QuicBidirectionalStream,
    readonly handler: ConnHandler,
    readonly localAddress: SocketAddress,
  ) {
    this.#writer = stream.writable.getWriter();
  }

  /** The stream's id within its connection. */
  get id(): bigint {
    return this.stream.writable.id;
  }
  get remoteAddress(): SocketAddress {
    return this.session.remoteAddress;
  }
  get inboundBuffered(): number {
    return this.#end - this.#start;
  }
  get outboundBuffered(): number {
    return this.#queued;
  }
  get closed(): boolean {
    return this.#closed;
  }

  peek(n?: number): Uint8Array {
    const k = n === undefined ? this.#end - this.#start : Math.min(n, this.#end - this.#start);
    return this.#buf.subarray(this.#start, this.#start + k);
  }
  next(n?: number): Uint8Array {
    const view = this.peek(n);
    this.#start += view.length;
    return view;
  }
  discard(n?: number): number {
    return this.next(n).length;
  }
  write(bytes: Uint8Array): number {
    if (this.#closed) return 0;
    const copy = bytes.slice();
    this.#queued += copy.length;
    this.#writer.write(copy).then(
      () => (this.#queued -= copy.length),
      () => this.finish(),
    );
    return copy.length;
  }
  writev(chunks: readonly Uint8Array[]): number {
    let n = 0;
    for (const c of chunks) n += this.write(c);
    return n;
  }
  flush(): void {}
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#writer.close().catch(() => {});
  }

  private finish(error?: Error): void {
    const wasClosed = this.#closed;
    this.#closed = true;
    if (!wasClosed) this.#writer.abort().catch(() => {});
    this.loop.connections--;
    try {
      const r = error === undefined
        ? this.handler.onClose?.(this)
        : this.handler.onClose?.(this, error);
      if (r === Action.Shutdown) {
        logger.warn("Action.Shutdown from a QUIC stream's onClose is ignored");
      }
    } catch (thrown) {
      logger.error("onClose threw", { error: thrown });
    }
  }

  private apply(result: HandlerResult): void {
    if (result === Action.Close || result === Action.Shutdown) this.close();
  }

  /** Runs the stream: onOpen, then onTraffic per chunk, then onClose. */
  async run(): Promise<void> {
    this.loop.connections++;
    try {
      this.apply(this.handler.onOpen?.(this));
      const reader = this.stream.readable.getReader();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        this.append(value);
        const result = this.handler.onTraffic === undefined
          ? (this.discard(), undefined)
          : this.handler.onTraffic(this);
        if (this.#start === this.#end) this.#start = this.#end = 0;
        this.apply(result);
      }
      // The peer finished its side: finish ours once what was written is out.
      this.close();
      this.finish();
    } catch (error) {
      this.finish(error instanceof Error ? error : new Error(String(error)));
    }
  }

  private append(bytes: Uint8Array): void {
    const live = this.#end - this.#start;
    if (this.#buf.length - this.#end < bytes.length) {
      const grown = new Uint8Array(Math.max(live + bytes.length, this.#buf.length * 2, 4096));
      grown.set(this.#buf.subarray(this.#start, this.#end));
      this.#buf = grown;
      this.#start = 0;
      this.#end = live;
    }
    this.#buf.set(bytes, this.#end);
    this.#end += bytes.length;
  }
}

class DenoQuicSession implements QuicSession {
  readonly id = `quic-${++sessionIds}`;
  readonly remoteAddress: SocketAddress;
  readonly loop: QuicLoop;

  constructor(
    readonly conn: Deno.QuicConn,
    readonly zeroRtt: boolean,
    readonly local: SocketAddress,
  ) {
    this.remoteAddress = netAddress(conn.remoteAddr);
    this.loop = new QuicLoop(local);
  }
  get alpn(): string | undefined {
    return this.conn.protocol;
  }
  get serverName(): string | undefined {
    return this.conn.serverName;
  }
  get closed(): Promise<{ code: number; reason: string }> {
    return this.conn.closed.then((i) => ({ code: i.closeCode, reason: i.reason }));
  }
  async openStream(handler: ConnHandler = {}): Promise<Conn> {
    const stream = await this.conn.createBidirectionalStream();
    const conn = new StreamConn(this.loop, this, stream, handler, this.local);
    void conn.run();
    return conn;
  }
  /** Serves every stream the peer opens with `handler`. */
  async acceptStreams(handler: ConnHandler): Promise<void> {
    const reader = this.conn.incomingBidirectionalStreams.getReader();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        void new StreamConn(this.loop, this, value, handler, this.local).run();
      }
    } catch { /* the connection closed */ }
  }
  close(code = 0, reason = ""): void {
    try {
      this.conn.close({ closeCode: code, reason });
    } catch { /* already closed */ }
  }
}

/**
 * The QUIC transport on Deno's QUIC. One client endpoint per transport, shared by its
 * connections, so a later connection can resume (and try 0-RTT) with an earlier one's ticket.
 *
 * @returns The transport.
 * @throws {NetloopError} `backend_unavailable` without `--unstable-net`.
 *
 * @example
 * ```ts ignore
 * const quic = denoQuicTransport();
 * const session = await quic.connect({ hostname: "127.0.0.1", port: 4433, alpn: ["echo"] });
 * const stream = await session.openStream({ onTraffic: (c) => console.log(c.next()) });
 * stream.write(new TextEncoder().encode("hi"));
 * ```
 */
export function denoQuicTransport(): QuicTransport {
  const quic = denoQuic();
  let client: Deno.QuicEndpoint | undefined;
  return {
    serve(handler: ConnHandler, options: QuicServeOptions): Promise<QuicServer> {
      const endpoint = new quic.QuicEndpoint({
        hostname: options.hostname ?? "127.0.0.1",
        port: options.port ?? 0,
      });
      const listener = endpoint.listen({
        cert: options.cert,
        key: options.key,
        alpnProtocols: options.alpn,
        congestionControl: options.congestionControl ?? "default",
        ...(options.maxIdleTimeout === undefined ? {} : { maxIdleTimeout: options.maxIdleTimeout }),
      });
      const address = netAddress(endpoint.addr);
      const sessions = new Set<QuicSession>();
      const accepting = (async () => {
        try {
          for await (const incoming of listener) {
            const zeroRtt = options.zeroRtt ?? false;
            Promise.resolve(incoming.accept({ zeroRtt })).then((conn) => {
              const session = new DenoQuicSession(conn, zeroRtt, address);
              sessions.add(session);
              conn.closed.then(() => sessions.delete(session), () => sessions.delete(session));
              void session.acceptStreams(handler);
            }, (error) => logger.warn("QUIC handshake failed", { error }));
          }
        } catch { /* the endpoint closed */ }
      })();
      let stopping: Promise<void> | undefined;
      const stop = () => {
        stopping ??= (async () => {
          listener.stop();
          for (const s of sessions) s.close(0, "server stopping");
          endpoint.close();
          await accepting;
        })();
        return stopping;
      };
      return Promise.resolve({ address, sessions, stop, [Symbol.asyncDispose]: stop });
    },
    async connect(options: QuicDialOptions): Promise<QuicSession> {
      client ??= new quic.QuicEndpoint({
        hostname: options.hostname.includes(":") ? "::" : "0.0.0.0",
      });
      const attempt = quic.connectQuic({
        hostname: options.hostname,
        port: options.port,
        alpnProtocols: options.alpn,
        endpoint: client,
        congestionControl: options.congestionControl ?? "default",
        ...(options.serverName === undefined ? {} : { serverName: options.serverName }),
        ...(options.ca === undefined ? {} : { caCerts: [options.ca] }),
        zeroRtt: options.zeroRtt ?? false,
      });
      // With a ticket, 0-RTT hands back the connection at once (before the handshake).
      const zeroRtt = !(attempt instanceof Promise);
      const conn = await attempt;
      return new DenoQuicSession(conn, zeroRtt, netAddress(client.addr));
    },
    close(): void {
      client?.close();
      client = undefined;
    },
  };
}
