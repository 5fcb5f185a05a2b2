/**
 * The interface a handler module implements, and the loop it runs on.
 *
 * @module
 */
import type { Logger, SocketAddress } from "@triad/core";
import type { Action } from "./action.ts";
import type { Conn } from "./conn.ts";
import type { DialTlsOptions } from "./tls.ts";

/** A backend name: how a loop talks to the kernel. */
export type BackendName = "uring" | "epoll" | "portable";

/**
 * What a handler returns: an {@linkcode Action}, or nothing (the same as `Action.None`).
 */
export type HandlerResult = Action | void;

/**
 * The callbacks for connections dialed with {@linkcode Loop.dial}; each defaults to the loop's
 * own handler.
 */
export interface ConnHandler {
  /** A connection is established (dialed TCP: connected; dialed UDP: socket ready). */
  onOpen?(conn: Conn): HandlerResult;
  /** Data arrived: consume complete messages with `peek`/`next`/`discard`, reply with `write`. */
  onTraffic?(conn: Conn): HandlerResult;
  /** The connection is gone; `error` says why when it was not a clean close. */
  onClose?(conn: Conn, error?: Error): HandlerResult;
}

/**
 * The handler module's default export (or its named exports): gnet's `EventHandler`.
 *
 * The module is imported once in every loop Worker, so module-level state is per loop and needs
 * no locking. Every method is optional and synchronous: a loop calls them between kernel turns.
 *
 * @example An echo handler module
 * ```ts
 * import { Action, type Conn, type EventHandler } from "@triad/netloop";
 *
 * const echo: EventHandler = {
 *   onTraffic(conn: Conn) {
 *     conn.write(conn.next());
 *     return Action.None;
 *   },
 * };
 * export default echo;
 * ```
 */
export interface EventHandler extends ConnHandler {
  /** The loop is listening; may be async (the loop waits for it before accepting). */
  onBoot?(loop: Loop): HandlerResult | Promise<HandlerResult>;
  /**
   * Runs every `tick` (when the `tick` option is set), and when a {@linkcode Loop.tickWithin}
   * asked for it sooner.
   */
  onTick?(): HandlerResult;
  /** A message from {@linkcode Engine.broadcast} on the main thread. */
  onMessage?(data: unknown): HandlerResult;
  /** The loop is stopping: the last call, after every connection's `onClose`. */
  onShutdown?(loop: Loop): void;
}

/** Where {@linkcode Loop.dial} connects. */
export interface DialOptions {
  /** `"tcp"` or `"udp"` (UDP: a connected socket on a random local port). */
  network: "tcp" | "udp";
  /** The peer, as `"127.0.0.1:53"`, `"[::1]:53"` or a {@linkcode SocketAddress}. */
  address: string | SocketAddress;
  /**
   * Callbacks for this connection; the loop's handler is used for any left out. The methods are
   * read at the first dial with this object (pass one shared handler and keep per-connection
   * state in `context`: that is cheaper than a handler per dial).
   */
  handler?: ConnHandler;
  /** Initial {@linkcode Conn.context}. */
  context?: unknown;
  /**
   * Speak TLS over the connection (TCP only; system OpenSSL): the handler sees plaintext, and
   * `onOpen` runs once the handshake is done. The certificate is checked against `serverName`.
   */
  tls?: DialTlsOptions;
}

/** One event loop: a Worker with its own listener and ring or epoll set. */
export interface Loop {
  /** This loop's number, 0 to `loops - 1`. */
  readonly index: number;
  /** The number of loops in the engine. */
  readonly loops: number;
  /** The backend this loop runs on. */
  readonly backend: BackendName;
  /** The address the loop listens on. */
  readonly address: SocketAddress;
  /** `options.data` from {@linkcode serve}, structured-cloned into the Worker. */
  readonly data: unknown;
  /** A logger with the loop index in every record. */
  readonly logger: Logger;
  /**
   * Opens an outbound connection driven by this loop (a proxy's upstream sockets live beside its
   * clients). Returns at once; writes queue until the connection is up; a failure to connect is
   * reported to `onClose` with the error.
   *
   * @param options Network, address and callbacks.
   * @returns The new connection.
   */
  dial(options: DialOptions): Conn;
  /**
   * Sends a message to the main thread's {@linkcode ServeOptions.onMessage}.
   *
   * @param data A structured-cloneable value.
   */
  postMessage(data: unknown): void;
  /** The number of open connections on this loop (accepted and dialed). */
  readonly connections: number;
  /**
   * The clock of the current turn: `performance.now()` as read when the loop last came back from
   * the kernel with events (or, on `portable`, when the event arrived). Handlers can use it instead
   * of reading the clock themselves, which costs an op call (about 80 ns) each time.
   */
  readonly now: number;
  /**
   * Runs `onTick` at the latest `ms` from now (or at its regular `tick`, if that is sooner), then
   * every `tick` again. A loop with nothing to time keeps a long `tick` (an idle loop then sleeps
   * in the kernel) and asks for a short one only while it has something to time: a proxy's
   * upstream queries in flight.
   *
   * @param ms Milliseconds from the turn's clock ({@linkcode Loop.now}).
   */
  tickWithin(ms: number): void;
}
