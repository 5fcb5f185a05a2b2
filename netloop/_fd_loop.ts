/**
 * What the two descriptor backends (epoll and io_uring) share on top of {@linkcode LoopCore}:
 * dialing. A dial takes a kept UDP socket or opens one, connects it, and either reports it on the
 * next turn (UDP, and every dial that failed at once) or hands it to the backend to watch for the
 * end of the connect (TCP). The portable backend dials with Deno's sockets instead.
 *
 * @module
 */
import type { SocketAddress } from "@triad/core";
import { type ConnImpl, State } from "./_conn.ts";
import { LoopCore } from "./_loop.ts";
import { E, syscallError } from "./_ffi.ts";
import { connectDialSocket, DialSocketPool, openDialSocket, sendConnected } from "./_socket.ts";

/** A socket {@linkcode openDialSocket} made: its descriptor, its peer's sockaddr, the errno. */
export type DialSocket = ReturnType<typeof openDialSocket>;

/** A loop on file descriptors through libc: dials the same way whatever waits for the kernel. */
export abstract class FdLoopCore extends LoopCore {
  /** Dialed connections that opened (UDP) or failed at once: reported on the next turn. */
  protected pendingOpen: ConnImpl[] = [];
  /** Closed dialed UDP sockets kept for the next dials. */
  protected readonly dialPool: DialSocketPool = new DialSocketPool();

  /**
   * How a new socket is opened: non-blocking and connected at once (epoll waits for it to become
   * writable), or blocking and not connected (io_uring submits IORING_OP_CONNECT).
   */
  protected abstract readonly connectsAtOnce: boolean;

  /** Ends a connection: closes or keeps its socket, calls `onClose`. */
  protected abstract finish(conn: ConnImpl, error?: Error): void;

  /** A dialed connection has its descriptor (`socket` unset: a kept UDP socket). */
  protected abstract adoptDialed(conn: ConnImpl, socket: DialSocket | undefined): void;

  /** A new socket dialed without error: watch it (for TCP, for the end of its connect). */
  protected abstract watchDialed(conn: ConnImpl, socket: DialSocket): void;

  /** A dialed connection just opened (before it is marked dirty). */
  protected dialOpened(_conn: ConnImpl): void {}

  /**
   * Whether a dialed UDP datagram whose send fails (not for want of room) ends its connection at
   * the next flush (epoll), or is let be as the flush lets it be (uring).
   */
  protected abstract readonly endOnSendError: boolean;
  /** Dialed UDP connections whose datagram sent at once failed, with the errno. */
  protected readonly failedSends: Map<ConnImpl, number> = new Map();

  /**
   * A connected socket's datagram goes out in the handler's call rather than at the turn's flush:
   * the same system call, without a copy of the datagram to keep until then (a DNS proxy's
   * upstream queries filled a 64 KiB slab every 1,200 queries, left to the collector). A full
   * socket buffer drops it (EAGAIN), as it would at the flush.
   */
  override sendDialed(conn: ConnImpl, bytes: Uint8Array): boolean {
    if (conn.state !== State.Open || conn.datagrams!.length > 0) return false;
    const code = sendConnected(conn.fd, bytes);
    if (code !== 0 && code !== E.EAGAIN && this.endOnSendError) {
      this.failedSends.set(conn, code);
      this.markDirty(conn);
    }
    return true;
  }

  protected override connect(conn: ConnImpl, address: SocketAddress): void {
    if (conn.network === "udp") {
      const fd = this.dialPool.take(address.family);
      if (fd >= 0) {
        conn.fd = fd;
        this.adoptDialed(conn, undefined);
        const code = connectDialSocket(fd, address);
        if (code !== 0) {
          conn.closeError = syscallError(`connect(${address.address}:${address.port})`, code);
        }
        this.pendingOpen.push(conn);
        return;
      }
    }
    let socket;
    try {
      socket = openDialSocket(conn.network, address, this.connectsAtOnce, this.connectsAtOnce);
    } catch (error) {
      conn.closeError = error as Error;
      this.pendingOpen.push(conn);
      return;
    }
    conn.fd = socket.fd;
    this.adoptDialed(conn, socket);
    if (socket.error !== 0 && socket.error !== E.EINPROGRESS) {
      conn.closeError = syscallError(`connect(${address.address}:${address.port})`, socket.error);
      this.pendingOpen.push(conn);
      return;
    }
    this.watchDialed(conn, socket);
    if (conn.network === "udp") this.pendingOpen.push(conn);
  }

  /** Reports the dials of {@linkcode pendingOpen}: opened, or failed with their error. */
  protected openPending(): void {
    const pending = this.pendingOpen;
    this.pendingOpen = [];
    for (const conn of pending) {
      if (conn.state !== State.Connecting) continue;
      if (conn.closeError !== undefined) {
        this.finish(conn, conn.closeError);
        continue;
      }
      this.opened(conn);
      this.dialOpened(conn);
      this.markDirty(conn);
    }
  }

  /** At shutdown: ends the dials not yet reported. */
  protected finishPending(): void {
    for (const conn of this.pendingOpen) this.finish(conn);
    this.pendingOpen = [];
  }
}
