/**
 * The connection type handlers receive.
 *
 * @module
 */
import type { SocketAddress } from "@triad/core";
import type { Loop } from "./event_handler.ts";
import type { TlsInfo } from "./tls.ts";

/**
 * One TCP connection, or one UDP datagram and its sender, as an {@linkcode EventHandler} sees it.
 *
 * Reading: `peek`, `next` and `discard` work on what has arrived and not been consumed. The views
 * they return point into the loop's buffers and are valid only until the handler method returns;
 * copy what must live longer. Bytes left unconsumed when `onTraffic` returns are kept in the
 * connection's own elastic buffer and come first next time (TCP; for UDP the rest of a datagram
 * is dropped).
 *
 * Writing: `write` and `writev` copy the bytes into the connection's outbound buffer, which the
 * loop sends once per turn, batched with every other connection's. Writing from outside a handler
 * method (a timer, another connection's `onTraffic`) is allowed; the loop sends it on its next
 * turn. For UDP, each `write` or `writev` is one datagram to the sender of the datagram being
 * handled, and the `Conn` stays usable after `onTraffic` returns so that a reply can be sent later.
 */
export interface Conn {
  /** `"tcp"` or `"udp"`. */
  readonly network: "tcp" | "udp";
  /** The loop this connection lives on. */
  readonly loop: Loop;
  /** The local address of the socket. */
  readonly localAddress: SocketAddress;
  /** The peer's address (for UDP, the sender of the datagram being handled). */
  readonly remoteAddress: SocketAddress;
  /** Free for the handler: per-connection state. */
  context: unknown;
  /** Bytes received and not yet consumed. */
  readonly inboundBuffered: number;
  /** Bytes written and not yet sent. */
  readonly outboundBuffered: number;
  /** Whether the connection is closed or closing. */
  readonly closed: boolean;
  /**
   * What was negotiated, on a TLS connection (`serve()`'s or `dial()`'s `tls` option); absent
   * otherwise.
   */
  readonly tls?: TlsInfo;

  /**
   * Returns up to `n` unconsumed bytes without consuming them (all of them when `n` is omitted).
   *
   * @param n How many bytes to look at.
   * @returns A view valid until the handler method returns; shorter than `n` when less arrived.
   */
  peek(n?: number): Uint8Array;
  /**
   * Returns up to `n` unconsumed bytes and consumes them (all of them when `n` is omitted).
   *
   * @param n How many bytes to take.
   * @returns A view valid until the handler method returns; shorter than `n` when less arrived.
   */
  next(n?: number): Uint8Array;
  /**
   * Consumes up to `n` bytes without looking at them (all of them when `n` is omitted).
   *
   * @param n How many bytes to drop.
   * @returns How many bytes were dropped.
   */
  discard(n?: number): number;
  /**
   * Queues bytes to send (copied: the caller may reuse `bytes` at once).
   *
   * @param bytes What to send; for UDP, one datagram.
   * @returns The number of bytes queued.
   */
  write(bytes: Uint8Array): number;
  /**
   * Queues several chunks to send, in order (for UDP, gathered into one datagram).
   *
   * @param chunks What to send.
   * @returns The number of bytes queued.
   */
  writev(chunks: readonly Uint8Array[]): number;
  /** Asks the loop to send what is queued now rather than at the end of the turn. */
  flush(): void;
  /** Closes the connection after sending what is queued; `onClose` follows. No-op for UDP. */
  close(): void;
}
