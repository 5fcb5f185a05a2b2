/**
 * Socket set-up through libc, shared by the epoll and uring backends.
 *
 * @module
 */
import { errnoName, parseSocketAddress, type SocketAddress } from "@triad/core";
import { E, errno, libc, syscallError } from "./_ffi.ts";
import { NetloopError } from "./errors.ts";
import { AF_INET, AF_INET6, decodeSockaddr, encodeSockaddr, SOCKADDR_MAX } from "./_sockaddr.ts";

/** Socket constants (Linux, all architectures netloop supports). */
export const SOCK_STREAM = 1;
/** SOCK_DGRAM. */
const SOCK_DGRAM = 2;
/** SOCK_NONBLOCK. */
export const SOCK_NONBLOCK = 0o4000;
/** SOCK_CLOEXEC. */
export const SOCK_CLOEXEC = 0o2000000;
const SOL_SOCKET = 1;
const SO_REUSEADDR = 2;
const SO_SNDBUF = 7;
const SO_RCVBUF = 8;
const SO_SNDBUFFORCE = 32;
const SO_RCVBUFFORCE = 33;
const SO_REUSEPORT = 15;
const SO_ERROR = 4;
/** IPPROTO_TCP. */
export const IPPROTO_TCP = 6;
const TCP_NODELAY = 1;
const IPPROTO_IPV6 = 41;
const IPV6_V6ONLY = 26;

const intBuffer = new Uint8Array(new ArrayBuffer(16));
const intView = new DataView(intBuffer.buffer);
const nameBuffer = new Uint8Array(new ArrayBuffer(128));
const lengthBuffer = new Uint8Array(new ArrayBuffer(16));
const lengthView = new DataView(lengthBuffer.buffer);

function setInt(fd: number, level: number, name: number, value: number, what: string): void {
  intView.setInt32(0, value, true);
  if (libc().setsockopt(fd, level, name, intBuffer, 4) !== 0) throw syscallError(what, errno());
}

const F_DUPFD_CLOEXEC = 1030;

/** File descriptor slots {@linkcode reserveFdTable} makes room for by default. */
const FD_TABLE_RESERVE = 8192;

/**
 * Grows the process's file descriptor table to `slots` entries now, while nothing waits on the
 * loop, by duplicating `fd` to the first free number at or above `slots - 1` and closing the copy.
 * The kernel doubles the table when a new descriptor does not fit, and in a process with threads
 * (every Deno process) each doubling waits for an RCU grace period: 7-13 ms here (`expand_files` ->
 * `synchronize_rcu`, traced with bpftrace), during which the loop thread sleeps in the middle of a
 * `socket()` or `accept4()`. A proxy dialing a socket per upstream query took three of those in its
 * first seconds of a cache-miss load, each a stall every query behind it waited out. The table
 * never shrinks, so doing it once at the start is enough; where `RLIMIT_NOFILE` is lower, the
 * largest power of two under the limit is reserved instead.
 *
 * @param fd Any open descriptor of this process.
 * @param slots Slots wanted (a power of two).
 * @returns The slots reserved (0 when none could be: no descriptor left).
 */
export function reserveFdTable(fd: number, slots: number = FD_TABLE_RESERVE): number {
  const lib = libc();
  for (let want = slots; want >= 64; want /= 2) {
    const copy = lib.fcntl(fd, F_DUPFD_CLOEXEC, want - 1);
    if (copy >= 0) {
      lib.close(copy);
      return want;
    }
    if (errno() !== E.EINVAL) return 0; // EMFILE: every number is taken; nothing to reserve
  }
  return 0;
}

/** The last descriptors under the limit, which dials leave to the runtime. */
const RUNTIME_DESCRIPTORS = 16;

let nofile: number | undefined;

/** This process's soft `RLIMIT_NOFILE`, read once. */
function openFileLimit(): number {
  if (nofile === undefined) {
    const limits = new BigUint64Array(2);
    nofile = libc().getrlimit(RLIMIT_NOFILE, new Uint8Array(limits.buffer)) === 0
      ? Number(limits[0]! > 1n << 31n ? 1n << 31n : limits[0]!)
      : 2 ** 31;
  }
  return nofile;
}

const RLIMIT_NOFILE = 7;

/** Descriptors a loop keeps in reserve for the runtime (see {@linkcode DescriptorReserve}). */
export const DESCRIPTOR_RESERVE = 32;

/**
 * Descriptors a loop holds (copies of one of its own) so that accepting can never take the last
 * free ones: a Deno process needs a few for itself now and then (a signal handler, a file, a
 * Worker), and panics when it cannot get one. When accept fails with `EMFILE` the loop releases
 * them (the runtime has room again) and stops accepting; it takes them back before it accepts
 * again, and does not accept while it cannot.
 */
export class DescriptorReserve {
  readonly #fds: number[] = [];

  /**
   * @param source An open descriptor of this process to copy.
   * @param size Descriptors to hold.
   */
  constructor(readonly source: number, readonly size: number = DESCRIPTOR_RESERVE) {}

  /**
   * Takes the reserve back, if there is room for it and for at least one more descriptor (a
   * connection to accept); otherwise holds none.
   *
   * @returns Whether accepting may resume.
   */
  fill(): boolean {
    const lib = libc();
    while (this.#fds.length < this.size) {
      const fd = lib.fcntl(this.source, F_DUPFD_CLOEXEC, 0);
      if (fd < 0) break;
      this.#fds.push(fd);
    }
    const spare = this.#fds.length === this.size ? lib.fcntl(this.source, F_DUPFD_CLOEXEC, 0) : -1;
    if (spare < 0) {
      // Accepting now would fill the table at once and take the runtime's room for nothing.
      this.release();
      return false;
    }
    lib.close(spare);
    return true;
  }

  /** Gives the reserve back to the process. */
  release(): void {
    const lib = libc();
    for (const fd of this.#fds) lib.close(fd);
    this.#fds.length = 0;
  }
}

/** Turns Nagle off on a TCP socket (errors ignored: not fatal). */
export function setNoDelay(fd: number): void {
  intView.setInt32(0, 1, true);
  libc().setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, intBuffer, 4);
}

/**
 * Reads and clears a socket's pending error (`SO_ERROR`).
 *
 * @param fd The socket.
 * @returns The errno, 0 for none.
 */
export function socketError(fd: number): number {
  intView.setInt32(0, 0, true);
  lengthView.setUint32(0, 4, true);
  if (libc().getsockopt(fd, SOL_SOCKET, SO_ERROR, intBuffer, lengthBuffer) !== 0) return errno();
  return intView.getInt32(0, true);
}

/**
 * Returns a socket's local or peer address.
 *
 * @param fd The socket.
 * @param which `"local"` (getsockname) or `"remote"` (getpeername).
 * @returns The address; `0.0.0.0:0` when the call fails (a peer already gone).
 */
export function socketAddress(fd: number, which: "local" | "remote"): SocketAddress {
  lengthView.setUint32(0, SOCKADDR_MAX, true);
  nameBuffer.fill(0, 0, SOCKADDR_MAX);
  const lib = libc();
  const result = which === "local"
    ? lib.getsockname(fd, nameBuffer, lengthBuffer)
    : lib.getpeername(fd, nameBuffer, lengthBuffer);
  if (result !== 0) return { family: 4, address: "0.0.0.0", port: 0 };
  return decodeSockaddr(nameBuffer.subarray(0, SOCKADDR_MAX));
}

/** What {@linkcode openListener} needs. */
interface ListenerSpec {
  network: "tcp" | "udp";
  hostname: string;
  port: number;
  reusePort: boolean;
  nonblocking: boolean;
  /** UDP: SO_RCVBUF and SO_SNDBUF in bytes (0 or unset: the kernel's default). */
  socketBuffer?: number;
}

/**
 * Sets a socket buffer size: with the FORCE option first (past the sysctl maximum, needs
 * CAP_NET_ADMIN), else the plain one (capped by the kernel). Failures are not fatal.
 */
function setBuffer(fd: number, force: number, plain: number, bytes: number): void {
  const lib = libc();
  intView.setInt32(0, bytes, true);
  if (lib.setsockopt(fd, SOL_SOCKET, force, intBuffer, 4) === 0) return;
  lib.setsockopt(fd, SOL_SOCKET, plain, intBuffer, 4);
}

/**
 * Opens a socket of `spec`'s network and binds it to `address` with the listener's options
 * (`SO_REUSEADDR`, `SO_REUSEPORT` if asked, `IPV6_V6ONLY`): shared by a listener and its reply
 * socket, which must be made alike to join the listener's `SO_REUSEPORT` group.
 *
 * @returns The socket and the sockaddr it is bound to.
 * @throws {NetloopError} `syscall`, naming the call and `where` (the socket is closed).
 */
function openBound(
  spec: ListenerSpec,
  address: SocketAddress,
  where: string,
): { fd: number; sockaddr: Uint8Array; length: number } {
  const family = address.family === 6 ? AF_INET6 : AF_INET;
  const type = (spec.network === "tcp" ? SOCK_STREAM : SOCK_DGRAM) | SOCK_CLOEXEC |
    (spec.nonblocking ? SOCK_NONBLOCK : 0);
  const lib = libc();
  const fd = lib.socket(family, type, 0);
  if (fd < 0) throw syscallError(`socket(${where})`, errno());
  try {
    setInt(fd, SOL_SOCKET, SO_REUSEADDR, 1, `setsockopt(SO_REUSEADDR, ${where})`);
    if (spec.reusePort) {
      setInt(fd, SOL_SOCKET, SO_REUSEPORT, 1, `setsockopt(SO_REUSEPORT, ${where})`);
    }
    if (family === AF_INET6) setInt(fd, IPPROTO_IPV6, IPV6_V6ONLY, 1, `setsockopt(IPV6_V6ONLY)`);
    const sockaddr = new Uint8Array(new ArrayBuffer(128));
    const length = encodeSockaddr(address, sockaddr);
    if (lib.bind(fd, sockaddr, length) !== 0) throw syscallError(`bind(${where})`, errno());
    return { fd, sockaddr, length };
  } catch (error) {
    lib.close(fd);
    throw error;
  }
}

/**
 * Opens, binds and (TCP) listens a socket.
 *
 * @param spec Network, address, options.
 * @returns The socket and its bound address.
 * @throws {NetloopError} `syscall`, naming the call and the address.
 */
export function openListener(spec: ListenerSpec): { fd: number; address: SocketAddress } {
  const address = parseSocketAddress(
    spec.hostname.includes(":")
      ? `[${spec.hostname}]:${spec.port}`
      : `${spec.hostname}:${spec.port}`,
  );
  const where = `${spec.network} ${spec.hostname}:${spec.port}`;
  const { fd } = openBound(spec, address, where);
  const lib = libc();
  try {
    const buffer = spec.socketBuffer ?? 0;
    if (spec.network === "udp" && buffer > 0) {
      setBuffer(fd, SO_RCVBUFFORCE, SO_RCVBUF, buffer);
      setBuffer(fd, SO_SNDBUFFORCE, SO_SNDBUF, buffer);
    }
    if (spec.network === "tcp" && lib.listen(fd, 4096) !== 0) {
      throw syscallError(`listen(${where})`, errno());
    }
    return { fd, address: socketAddress(fd, "local") };
  } catch (error) {
    lib.close(fd);
    throw error;
  }
}

/**
 * Opens the socket a UDP listener's replies leave from: a second socket on the listener's own
 * address and port, connected to that same address, so it sends from where clients sent to but
 * receives nothing (a connected UDP socket gets only what its peer sends, and `SO_REUSEPORT`
 * leaves connected sockets out of its spread).
 *
 * Why: epoll keeps an entry on the wait queue of every socket it watches, and a socket with a
 * waiter takes that queue's lock for each datagram it sends, when the kernel frees the sent buffer
 * (`sock_wfree`, to report write space): the lock every arriving datagram takes too, on its
 * sender's CPU. A socket nobody waits on skips that (a DNS proxy's cache hit:
 * 5.09 → 4.87 µs of CPU, 9 interleaved rounds).
 *
 * Not on a wildcard address (`0.0.0.0`, `::`): connecting would fix one source address for every
 * reply. A datagram that reaches the socket between its bind and its connect stays queued on it:
 * the loop reads it once, at its start.
 *
 * @param spec The listener's spec (its options and socket buffer are copied).
 * @param bound The listener's bound address, port included.
 * @returns The socket, or -1 when there is none (the listener then sends its replies itself).
 */
export function openReplySocket(spec: ListenerSpec, bound: SocketAddress): number {
  if (spec.network !== "udp" || bound.address === "0.0.0.0" || bound.address === "::") return -1;
  let socket;
  try {
    socket = openBound(spec, bound, "reply socket");
  } catch {
    return -1;
  }
  const { fd, sockaddr, length } = socket;
  if (libc().connect(fd, sockaddr, length) !== 0) {
    libc().close(fd);
    return -1;
  }
  if ((spec.socketBuffer ?? 0) > 0) setBuffer(fd, SO_SNDBUFFORCE, SO_SNDBUF, spec.socketBuffer!);
  return fd;
}

/** sockaddrs of the addresses dialed, kept while the address objects live (the kernel may read one
 * after the call that handed it over: uring's CONNECT, so they are never rewritten). */
const sockaddrs = new WeakMap<SocketAddress, { sockaddr: Uint8Array; length: number }>();

function encodedSockaddr(address: SocketAddress): { sockaddr: Uint8Array; length: number } {
  let encoded = sockaddrs.get(address);
  if (encoded === undefined) {
    const sockaddr = new Uint8Array(new ArrayBuffer(128));
    encoded = { sockaddr, length: encodeSockaddr(address, sockaddr) };
    // Only frozen addresses can be remembered: another could be changed after it was encoded.
    if (Object.isFrozen(address)) sockaddrs.set(address, encoded);
  }
  return encoded;
}

/**
 * Creates a socket for dialing and starts connecting it.
 *
 * @param network `"tcp"` or `"udp"`.
 * @param address The peer.
 * @param nonblocking Open it non-blocking (epoll) or blocking (uring does its own waiting).
 * @param connectNow Call connect(2) here (epoll; uring submits IORING_OP_CONNECT instead).
 * @returns The socket, the sockaddr, and the errno of connect (0, or EINPROGRESS).
 */
export function openDialSocket(
  network: "tcp" | "udp",
  address: SocketAddress,
  nonblocking: boolean,
  connectNow: boolean,
): { fd: number; sockaddr: Uint8Array; length: number; error: number } {
  const family = address.family === 6 ? AF_INET6 : AF_INET;
  const type = (network === "tcp" ? SOCK_STREAM : SOCK_DGRAM) | SOCK_CLOEXEC |
    (nonblocking ? SOCK_NONBLOCK : 0);
  const lib = libc();
  const fd = lib.socket(family, type, 0);
  if (fd < 0) throw dialSocketError(network, errno());
  if (fd >= openFileLimit() - RUNTIME_DESCRIPTORS) {
    // Descriptors are handed out lowest first: this one means fewer than RUNTIME_DESCRIPTORS
    // are left, and those are the runtime's.
    lib.close(fd);
    throw dialSocketError(network, E.EMFILE);
  }
  const { sockaddr, length } = encodedSockaddr(address);
  if (network === "tcp") setNoDelay(fd);
  let error = 0;
  if (connectNow || network === "udp") {
    if (lib.connect(fd, sockaddr, length) !== 0) error = errno();
  }
  return { fd, sockaddr, length, error };
}

const MSG_DONTWAIT = 0x40;
/** A sockaddr with family AF_UNSPEC: connect(2) with it dissolves a UDP socket's association. */
const UNSPEC = new Uint8Array(new ArrayBuffer(SOCKADDR_MAX));
const drainBuffer = new Uint8Array(new ArrayBuffer(2048));
/**
 * Sockets kept per family by a {@linkcode DialSocketPool}: enough for a burst of 500 queries in
 * flight (dnsperf -q 500) to find its sockets kept; 256 opened and closed ~3% of a miss's time.
 */
const POOL_MAX = 1024;

/**
 * The error for a socket(2) that failed: `descriptors_exhausted` when the process (`EMFILE`) or
 * the system (`ENFILE`) has no descriptor left, so that a dialer can tell it from other failures.
 */
function dialSocketError(network: string, code: number): NetloopError {
  if (code !== E.EMFILE && code !== E.ENFILE) return syscallError(`socket(${network})`, code);
  const which = code === E.EMFILE
    ? `this process is at its descriptor limit (RLIMIT_NOFILE ${openFileLimit()}, ulimit -n; ` +
      `the last ${RUNTIME_DESCRIPTORS} are left to the runtime)`
    : "the system is at its descriptor limit (fs.file-max)";
  return new NetloopError(
    `socket(${network}) failed: ${errnoName(code)}: ${which}; dials fail until connections close`,
    { code: "descriptors_exhausted", errno: code },
  );
}

/**
 * Dialed UDP sockets a loop keeps for its next dials, so a query-per-socket client (a DNS
 * proxy's upstream queries) does not create and destroy a socket per query.
 *
 * A kept socket is disconnected with `connect(AF_UNSPEC)`: the kernel then unhashes it and drops
 * the port it bound automatically, so a datagram sent to that port later reaches nothing, and the
 * next `connect(2)` binds it to a new random port, just as a new socket would get. What was
 * queued before the disconnect (late or duplicate replies, a pending ICMP error) is dropped before
 * the socket is dialed again: read at once ({@linkcode disconnect}, then {@linkcode park} once the
 * loop has no more use for it), or, for a loop whose level-triggered wait watches the socket, read
 * only when that wait reports it readable ({@linkcode keepUnread} and {@linkcode settle}), which
 * saves a system call per dial. Sockets that cannot be drained, and any beyond 1024 per family, are
 * closed.
 */
export class DialSocketPool {
  readonly #free: { 4: number[]; 6: number[] } = { 4: [], 6: [] };
  /** Kept by {@linkcode keepUnread}, not yet {@linkcode settle}d: fds, and their families. */
  readonly #unsettled: number[] = [];
  readonly #unsettledFamily: (4 | 6)[] = [];

  /** Takes a kept socket of the address family, or returns -1 when there is none. */
  take(family: 4 | 6): number {
    return this.#free[family].pop() ?? -1;
  }

  /**
   * Disconnects a dialed UDP socket and keeps it without reading what it had queued, for a loop
   * that watches it with a level-triggered wait (epoll, `EPOLLIN`): no dial takes it until
   * {@linkcode settle} says a wait since its disconnect has returned and its events were answered,
   * a readable socket with {@linkcode drain}. Nothing can be queued after the disconnect, so that
   * wait saw all there was. One system call fewer per dial than {@linkcode park} (a DNS proxy's
   * cache miss: 0.9 µs of 16).
   *
   * @param fd A UDP socket made by {@linkcode openDialSocket}.
   * @param family Its address family.
   * @returns Whether it was kept (else it was closed).
   */
  keepUnread(fd: number, family: 4 | 6): boolean {
    if (this.#free[family].length + this.#unsettled.length >= POOL_MAX) {
      libc().close(fd);
      return false;
    }
    if (!this.disconnect(fd)) return false;
    this.#unsettled.push(fd);
    this.#unsettledFamily.push(family);
    return true;
  }

  /** How many sockets {@linkcode keepUnread} kept that are not settled yet (read before a wait). */
  get unsettled(): number {
    return this.#unsettled.length;
  }

  /**
   * Lets dials take the first `count` unsettled sockets: call it with {@linkcode unsettled} as
   * read before a wait, once the events that wait returned have been answered.
   *
   * @param count How many, oldest first.
   */
  settle(count: number): void {
    if (count === 0) return;
    const fds = this.#unsettled;
    const families = this.#unsettledFamily;
    for (let i = 0; i < count; i++) if (fds[i]! >= 0) this.#free[families[i]!].push(fds[i]!);
    if (count === fds.length) {
      fds.length = 0;
      families.length = 0;
    } else {
      fds.splice(0, count);
      families.splice(0, count);
    }
  }

  /**
   * Dissolves a dialed UDP socket's association (its port goes; later datagrams to it reach
   * nothing); closes it when that fails. For a backend that must wait before {@linkcode park}
   * (io_uring: until the socket's cancelled recv has completed).
   *
   * @returns Whether the socket is still open.
   */
  disconnect(fd: number): boolean {
    const lib = libc();
    if (lib.connect(fd, UNSPEC, 16) === 0) return true;
    lib.close(fd);
    return false;
  }

  /**
   * Keeps a disconnected socket once what it had queued is dropped, or closes it (pool full, or
   * it cannot be drained).
   *
   * @returns Whether it was kept.
   */
  park(fd: number, family: 4 | 6): boolean {
    const free = this.#free[family];
    if (free.length >= POOL_MAX || !this.drain(fd)) {
      libc().close(fd);
      return false;
    }
    free.push(fd);
    return true;
  }

  /** Whether `fd` is a kept socket (asked only for events on fds no connection owns: rare). */
  has(fd: number): boolean {
    return this.#free[4].includes(fd) || this.#free[6].includes(fd) ||
      this.#unsettled.includes(fd);
  }

  /**
   * Reads and drops what a kept socket has queued (without blocking, whether or not the socket
   * is non-blocking).
   *
   * @returns Whether it is empty now.
   */
  drain(fd: number): boolean {
    const lib = libc();
    for (let i = 0; i < 64; i++) {
      if (
        lib.recvfrom(fd, drainBuffer, drainBuffer.length, MSG_DONTWAIT, null, null) < 0 &&
        errno() === E.EAGAIN
      ) {
        return true;
      }
    }
    return false;
  }

  /**
   * Drains a kept socket a wait reported readable; closes it and forgets it when it cannot be
   * emptied (more than 64 datagrams queued).
   *
   * @returns Whether it is still kept.
   */
  drainKept(fd: number): boolean {
    if (this.drain(fd)) return true;
    for (const list of [this.#free[4], this.#free[6]]) {
      const at = list.indexOf(fd);
      if (at >= 0) list.splice(at, 1);
    }
    // Left in place as -1: settle() counts entries from before a wait.
    const at = this.#unsettled.indexOf(fd);
    if (at >= 0) this.#unsettled[at] = -1;
    libc().close(fd);
    return false;
  }

  /** Closes every kept socket. */
  close(): void {
    const lib = libc();
    for (const free of [this.#free[4], this.#free[6], this.#unsettled]) {
      for (const fd of free) if (fd >= 0) lib.close(fd);
      free.length = 0;
    }
    this.#unsettledFamily.length = 0;
  }
}

/**
 * Connects a socket taken from a {@linkcode DialSocketPool} to a peer.
 *
 * @returns 0, or the errno of connect(2).
 */
export function connectDialSocket(fd: number, address: SocketAddress): number {
  const { sockaddr, length } = encodedSockaddr(address);
  return libc().connect(fd, sockaddr, length) === 0 ? 0 : errno();
}

const MSG_NOSIGNAL = 0x4000;

/**
 * Sends one datagram on a connected socket without blocking.
 *
 * @param fd The socket.
 * @param datagram The payload.
 * @returns 0, or the errno (EAGAIN: the socket buffer is full and the datagram was dropped).
 */
export function sendConnected(fd: number, datagram: Uint8Array): number {
  const sent = libc().sendto(
    fd,
    datagram,
    datagram.length,
    MSG_DONTWAIT | MSG_NOSIGNAL,
    null,
    0,
  );
  return sent < 0 ? errno() : 0;
}
