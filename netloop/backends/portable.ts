/**
 * The portable backend: `Deno.listen` for TCP and `node:dgram` for UDP, for macOS, Windows and runs
 * without `--allow-ffi`. Every connection has its own read loop; writes are gathered per turn of
 * the event loop (a microtask) and sent by one writer per connection. TLS is Deno's own
 * (`Deno.listenTls`, `Deno.startTls`: rustls), not the OpenSSL layer the other backends use.
 *
 * @module
 */
import dgram from "node:dgram";
import { ipFamily, parseSocketAddress, type SocketAddress } from "@triad/core";
import { ConnImpl, PacketConn, State } from "../_conn.ts";
import { LoopCore } from "../_loop.ts";
import { NetloopError } from "../errors.ts";
import type { Conn } from "../conn.ts";
import type { ConnHandler, DialOptions } from "../event_handler.ts";
import type { DialTlsOptions, TlsInfo } from "../tls.ts";
import { stats as tlsCounters } from "../_tls.ts";

interface PortableState {
  tcp?: Deno.TcpConn | Deno.TlsConn;
  udp?: dgram.Socket;
  /** A TLS connection (counted in `live` until it is finished). */
  tls?: boolean;
  /** A dialed TLS connection whose handshake runs (closed if the loop stops first). */
  handshaking?: Deno.TlsConn | undefined;
  writing: boolean;
  resume?: () => void;
  reading?: Promise<void>;
}

function toAddress(addr: Deno.Addr): SocketAddress {
  const net = addr as Deno.NetAddr;
  const family = ipFamily(net.hostname) ?? 4;
  return { family, address: net.hostname, port: net.port };
}

/** Descriptors held back from accepting (see `LoopCore.reserve`). */
const DESCRIPTOR_RESERVE = 32;

/**
 * The reserve of descriptors (as the FFI backends' `DescriptorReserve`): `/dev/null` opened for
 * reading, when that is allowed (none otherwise).
 */
class NullReserve {
  readonly #files: Deno.FsFile[] = [];
  #allowed = true;

  /** Takes the reserve back if there is room for it and one more (see `DescriptorReserve`). */
  fill(): boolean {
    try {
      while (this.#allowed && this.#files.length < DESCRIPTOR_RESERVE) {
        this.#files.push(Deno.openSync("/dev/null"));
      }
      if (this.#allowed) Deno.openSync("/dev/null").close();
      return true;
    } catch (error) {
      if (error instanceof Deno.errors.NotCapable || error instanceof Deno.errors.NotFound) {
        this.#allowed = false;
        this.release();
        return true;
      }
      this.release();
      return false;
    }
  }

  release(): void {
    for (const file of this.#files) file.close();
    this.#files.length = 0;
  }
}

/** Lets a pause end a timer's granularity early (setTimeout may fire a little before its time). */
const ACCEPT_SLACK_MS = 2;

/** `EMFILE` or `ENFILE` when a Deno error says the process or system ran out of descriptors. */
function exhaustionCode(error: unknown): string | undefined {
  const message = error instanceof Error ? error.message : "";
  if (/os error 24\b/.test(message)) return "EMFILE";
  if (/os error 23\b/.test(message)) return "ENFILE";
  return undefined;
}

function state(conn: ConnImpl): PortableState {
  return conn.backendState as PortableState;
}

/** What Deno tells of a TLS handshake: the ALPN protocol; the rest is unknown here. */
function tlsInfo(handshake: Deno.TlsHandshakeInfo): TlsInfo {
  return {
    protocol: undefined,
    alpn: handshake.alpnProtocol ?? undefined,
    cipher: undefined,
    resumed: undefined,
    earlyDataAccepted: false,
    earlyBytes: 0,
  };
}

/** A Deno TLS error that means the peer left in the middle of the handshake or a record. */
function isTruncation(error: unknown): boolean {
  return error instanceof Deno.errors.UnexpectedEof ||
    (error instanceof Error && /eof|close_notify/i.test(error.message));
}

function addressText(a: SocketAddress): string {
  return a.family === 6 ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
}

/** A loop on Deno's own networking. */
export class PortableLoop extends LoopCore {
  private listener: Deno.TcpListener | Deno.TlsListener | undefined;
  /** The accept loop running. */
  private accepting: Promise<void> = Promise.resolve();
  /** Accepted TLS connections whose handshake runs (closed if the loop stops first). */
  private readonly handshaking = new Set<Deno.TlsConn>();
  private udp: dgram.Socket | undefined;
  private flushScheduled = false;
  private stopped!: () => void;
  private readonly whenStopped = new Promise<void>((resolve) => (this.stopped = resolve));
  private readonly readers = new Set<Promise<void>>();

  override async listen(): Promise<void> {
    const { hostname, port, network } = this.config;
    if (network === "tcp") {
      const tls = this.config.tls;
      if (tls !== undefined) {
        this.listener = this.listenTls(tls.cert, tls.key, tls.certName, tls.keyName, port);
      } else {
        const options: Deno.TcpListenOptions & { reusePort?: boolean } = { hostname, port };
        if (this.config.reusePort && this.config.loops > 1) options.reusePort = true;
        this.listener = Deno.listen(options) as Deno.TcpListener;
      }
      this.address = toAddress(this.listener.addr);
      this.reserve = new NullReserve();
      this.reserve.fill();
      return;
    }
    const socket = dgram.createSocket({
      type: ipFamily(hostname) === 6 ? "udp6" : "udp4",
      reuseAddr: this.config.reusePort,
    });
    await new Promise<void>((resolve, reject) => {
      socket.once("error", reject);
      socket.bind(port, hostname, () => {
        socket.off("error", reject);
        resolve();
      });
    });
    const bound = socket.address();
    this.address = {
      family: bound.family === "IPv6" ? 6 : 4,
      address: bound.address,
      port: bound.port,
    };
    socket.on("message", (message: Uint8Array, rinfo: dgram.RemoteInfo) => {
      if (this.stopping) return;
      const remote: SocketAddress = {
        family: rinfo.family === "IPv6" ? 6 : 4,
        address: rinfo.address,
        port: rinfo.port,
      };
      this.now = performance.now();
      this.packet(new PacketConn(this, 0, message, 0, message.length, remote));
    });
    this.udp = socket;
  }

  /**
   * A `Deno.listenTls` listener on the loop's address.
   *
   * @throws {NetloopError} `bad_tls` when Deno refuses the pair (naming both files).
   */
  private listenTls(
    cert: string,
    key: string,
    certName: string,
    keyName: string,
    port: number,
    hostname = this.config.hostname,
    trial = false,
  ): Deno.TlsListener {
    const tls = this.config.tls!;
    const options: Deno.ListenTlsOptions & Deno.TlsCertifiedKeyPem & { reusePort?: boolean } = {
      hostname,
      port,
      cert,
      key,
    };
    if (tls.alpn.length > 0) options.alpnProtocols = tls.alpn;
    if (this.config.reusePort && this.config.loops > 1 && !trial) options.reusePort = true;
    try {
      return Deno.listenTls(options);
    } catch (cause) {
      if (cause instanceof Deno.errors.AddrInUse || cause instanceof Deno.errors.NotCapable) {
        throw cause;
      }
      throw new NetloopError(
        `TLS certificate ${certName} and key ${keyName} refused by Deno.listenTls: ` +
          (cause as Error).message,
        { code: "bad_tls", cause },
      );
    }
  }

  /**
   * Swaps the certificate and key: the pair is tried on a throwaway listener first (a bad one
   * leaves the old listener in place), then the listener is replaced (new connections are
   * refused for the moment between the two, unless another loop shares the port).
   */
  async reloadTls(cert: string, key: string, certName: string, keyName: string): Promise<void> {
    if (this.config.tls === undefined || this.listener === undefined) {
      throw new NetloopError("This engine does not serve TLS", { code: "bad_option" });
    }
    this.listenTls(cert, key, certName, keyName, 0, "127.0.0.1", true).close();
    this.listener.close();
    await this.accepting;
    // The old socket goes once Deno has dropped its cancelled accept: a few turns at most.
    let next: Deno.TlsListener | undefined;
    for (let attempt = 0; next === undefined; attempt++) {
      try {
        next = this.listenTls(cert, key, certName, keyName, this.address.port);
      } catch (error) {
        if (!(error instanceof Deno.errors.AddrInUse) || attempt >= 100) throw error;
        await new Promise((resolve) => setTimeout(resolve, 1));
      }
    }
    this.config.tls = { ...this.config.tls, cert, key, certName, keyName };
    this.listener = next;
    this.accepting = this.acceptLoop(next);
  }

  /** A one-off timer for a tick {@linkcode LoopCore.tickWithin} moved before the interval's. */
  private soonTimer: ReturnType<typeof setTimeout> | undefined;

  protected override tickMoved(at: number): void {
    if (this.stopping) return;
    clearTimeout(this.soonTimer);
    this.soonTimer = setTimeout(() => {
      this.soonTimer = undefined;
      this.timers(this.now = performance.now());
      this.flushDirty();
    }, Math.max(0, at - performance.now()));
  }

  override async run(): Promise<void> {
    if (this.listener !== undefined) this.accepting = this.acceptLoop(this.listener);
    const every = Math.min(this.config.tickMs ?? Infinity, this.config.idleTimeoutMs ?? Infinity);
    const timer = Number.isFinite(every)
      ? setInterval(() => {
        this.timers(this.now = performance.now());
        this.flushDirty();
      }, Math.max(1, Math.min(every, 250)))
      : undefined;
    await this.whenStopped;
    if (timer !== undefined) clearInterval(timer);
    clearTimeout(this.soonTimer);
    try {
      this.listener?.close();
    } catch { /* already closed */ }
    for (const tls of this.handshaking) {
      try {
        tls.close();
      } catch { /* already closed */ }
    }
    if (this.udp !== undefined) {
      await new Promise<void>((resolve) => this.udp!.close(() => resolve()));
    }
    for (const conn of [...this.conns]) this.finish(conn);
    this.reserve?.release();
    await Promise.allSettled([...this.readers]);
  }

  override requestStop(): void {
    this.stopping = true;
    this.stopped();
  }

  private async acceptLoop(listener: Deno.TcpListener | Deno.TlsListener): Promise<void> {
    while (!this.stopping && listener === this.listener) {
      let tcp: Deno.TcpConn | Deno.TlsConn;
      try {
        tcp = await listener.accept();
      } catch (error) {
        if (this.stopping || listener !== this.listener) return;
        if (error instanceof Deno.errors.BadResource) return;
        const code = exhaustionCode(error);
        if (code !== undefined) {
          // Accepting again at once would fail again at once: wait for a close or the pause.
          this.now = performance.now();
          this.acceptExhausted(code);
          do await this.acceptPause(); while (!this.stopping && this.exhaustion.paused);
          continue;
        }
        // A peer that reset before accept completed: that connection only.
        this.logger.debug("accept failed", { error });
        continue;
      }
      this.acceptWorked();
      if (this.stopping) {
        tcp.close();
        return;
      }
      if (this.config.tls !== undefined) {
        this.track(this.tlsAccepted(tcp as Deno.TlsConn));
        continue;
      }
      try {
        (tcp as Deno.TcpConn).setNoDelay(true);
      } catch { /* not fatal */ }
      const conn = new ConnImpl(this, "tcp", this.handler, false, toAddress(tcp.remoteAddr));
      conn.backendState = { tcp, writing: false } satisfies PortableState;
      this.opened(conn);
      this.flushDirty();
      this.startReading(conn);
    }
  }

  /**
   * Runs an accepted connection's TLS handshake (Deno's), then opens it to the handler. A
   * failure, a timeout or an early end closes that connection alone, counted.
   */
  private async tlsAccepted(tls: Deno.TlsConn): Promise<void> {
    const timeoutMs = this.config.tls!.handshakeTimeoutMs;
    tlsCounters.live++;
    this.handshaking.add(tls);
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        tls.close();
      } catch { /* already closed */ }
    }, timeoutMs);
    let info: Deno.TlsHandshakeInfo;
    try {
      info = await tls.handshake();
    } catch (error) {
      if (!this.stopping) {
        if (timedOut) tlsCounters.handshakeTimeouts++;
        else if (isTruncation(error)) tlsCounters.truncated++;
        else tlsCounters.handshakeErrors++;
        this.logger.debug("TLS handshake failed", { error });
      }
      try {
        tls.close();
      } catch { /* already closed */ }
      tlsCounters.live--;
      return;
    } finally {
      clearTimeout(timer);
      this.handshaking.delete(tls);
    }
    if (this.stopping) {
      tls.close();
      tlsCounters.live--;
      return;
    }
    tlsCounters.handshakes++;
    const conn = new ConnImpl(this, "tcp", this.handler, false, toAddress(tls.remoteAddr));
    conn.backendState = { tcp: tls, writing: false, tls: true } satisfies PortableState;
    conn.tls = tlsInfo(info);
    this.opened(conn);
    this.flushDirty();
    this.startReading(conn);
  }

  /** A TLS dial on Deno's client (`Deno.connect`, then `Deno.startTls`). */
  protected override dialTls(
    options: DialOptions & { tls: DialTlsOptions },
    handler: ConnHandler,
  ): Conn {
    if (options.network !== "tcp") {
      throw new NetloopError(`TLS needs network "tcp", got "${options.network}"`, {
        code: "bad_option",
      });
    }
    const address = typeof options.address === "string"
      ? parseSocketAddress(options.address)
      : options.address;
    const conn = new ConnImpl(this, "tcp", handler, false, address);
    conn.state = State.Connecting;
    if (options.context !== undefined) conn.context = options.context;
    conn.lastActive = this.now;
    this.conns.add(conn);
    const st: PortableState = { writing: false, tls: true };
    conn.backendState = st;
    tlsCounters.live++;
    const { serverName, ca, alpn } = options.tls;
    const timeoutMs = options.tls.handshakeTimeout ?? 10_000;
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        st.handshaking?.close();
      } catch { /* already closed */ }
    }, timeoutMs);
    const handshake = async (): Promise<void> => {
      const tcp = await Deno.connect({ hostname: address.address, port: address.port });
      if (conn.state !== State.Connecting || timedOut) {
        tcp.close();
        throw new Error("closed before the handshake");
      }
      tcp.setNoDelay(true);
      const tls = await Deno.startTls(tcp, {
        hostname: serverName ?? address.address,
        ...(ca === undefined ? {} : { caCerts: [ca] }),
        ...(alpn === undefined || alpn.length === 0 ? {} : { alpnProtocols: alpn }),
      });
      st.handshaking = tls;
      if (conn.state !== State.Connecting || timedOut) {
        tls.close();
        throw new Error("closed before the handshake");
      }
      const info = await tls.handshake();
      st.handshaking = undefined;
      if (conn.state !== State.Connecting) {
        tls.close();
        return;
      }
      st.tcp = tls;
      conn.tls = tlsInfo(info);
      tlsCounters.handshakes++;
      this.opened(conn);
      this.markDirty(conn);
      this.startReading(conn);
    };
    this.track(
      handshake().then(() => clearTimeout(timer), (error) => {
        clearTimeout(timer);
        try {
          st.handshaking?.close();
        } catch { /* already closed */ }
        st.handshaking = undefined;
        if (conn.state === State.Closed) return;
        let failure: NetloopError;
        if (timedOut) {
          tlsCounters.handshakeTimeouts++;
          failure = new NetloopError(
            `TLS handshake with ${addressText(address)} did not finish in time`,
            { code: "tls_handshake_timeout", cause: error },
          );
        } else {
          tlsCounters.handshakeErrors++;
          failure = new NetloopError(
            `TLS handshake with ${addressText(address)} failed: ${(error as Error).message}`,
            { code: "tls_handshake", cause: error },
          );
        }
        this.finish(conn, failure);
      }),
    );
    return conn;
  }

  /** Keeps a connection's task until it ends, so that stopping waits for it. */
  private track(task: Promise<void>): void {
    this.readers.add(task);
    task.finally(() => this.readers.delete(task));
  }

  /** Wakes {@linkcode acceptPause} (a descriptor came free, or the loop stops). */
  private wakeAccept: (() => void) | undefined;

  /** Waits out a pause of accepting: until a connection closes or the pause is over. */
  private async acceptPause(): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    await new Promise<void>((resolve) => {
      this.wakeAccept = resolve;
      timer = setTimeout(resolve, Math.max(0, this.acceptResumeAt - performance.now()));
      void this.whenStopped.then(resolve);
    });
    clearTimeout(timer);
    this.wakeAccept = undefined;
    this.now = performance.now();
    this.acceptTimer(this.now + ACCEPT_SLACK_MS);
  }

  protected override freed(): void {
    super.freed();
    this.wakeAccept?.();
  }

  private startReading(conn: ConnImpl): void {
    this.track(this.readLoop(conn));
  }

  private async readLoop(conn: ConnImpl): Promise<void> {
    const tcp = state(conn).tcp!;
    const buffer = new Uint8Array(this.config.readBufferSize);
    while (conn.state < State.Closing) {
      if (conn.paused) {
        await new Promise<void>((resolve) => (state(conn).resume = resolve));
        continue;
      }
      let n: number | null;
      try {
        n = await tcp.read(buffer);
      } catch (error) {
        if (conn.state < State.Closing) {
          if (state(conn).tls) {
            if (isTruncation(error)) tlsCounters.truncated++;
            else if (error instanceof Deno.errors.InvalidData) tlsCounters.recordErrors++;
          }
          this.finish(conn, error as Error);
        }
        return;
      }
      if (n === null) {
        conn.close();
        this.flushDirty();
        return;
      }
      this.traffic(conn, buffer.subarray(0, n), this.now = performance.now());
      if (conn.state === State.Open && this.overLimit(conn)) conn.paused = true;
      this.flushDirty();
    }
  }

  /** No turns here: the clock is read when a connection opens (and as each event arrives). */
  override opened(conn: ConnImpl): void {
    this.now = performance.now();
    super.opened(conn);
  }

  override markDirty(conn: ConnImpl): void {
    super.markDirty(conn);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      queueMicrotask(() => this.flushDirty());
    }
  }

  /** Starts a writer for every connection with something to send or to close. */
  flushDirty(): void {
    this.flushScheduled = false;
    const dirty = this.dirty;
    if (dirty.length === 0) return;
    this.dirty = [];
    for (const conn of dirty) {
      conn.dirty = false;
      const st = state(conn);
      if (st === undefined || st.writing || conn.state === State.Closed) continue;
      if (conn.state === State.Connecting) continue;
      this.writeLoop(conn);
    }
  }

  private async writeLoop(conn: ConnImpl): Promise<void> {
    const st = state(conn);
    st.writing = true;
    try {
      if (st.udp !== undefined) {
        // One at a time: node:dgram may reorder sends that overlap.
        const queue = conn.datagrams!;
        while (queue.length > 0) {
          const datagram = queue.shift()!;
          await new Promise<void>((resolve, reject) =>
            st.udp!.send(datagram, (error) => error ? reject(error) : resolve())
          );
        }
      } else {
        while (conn.takeOutbound() > 0) {
          const n = await st.tcp!.write(conn.fly!.subarray(conn.flyOff, conn.flyLen));
          conn.flyOff += n;
          if (conn.paused && !this.overLimit(conn)) {
            conn.paused = false;
            st.resume?.();
          }
        }
      }
    } catch (error) {
      st.writing = false;
      // A reset after the handler closed ends the connection without an error (see LoopCore).
      this.finish(conn, conn.state === State.Closing ? undefined : error as Error);
      return;
    }
    st.writing = false;
    if (st.tcp !== undefined) conn.idleOutbound();
    if (conn.paused) {
      conn.paused = false;
      st.resume?.();
    }
    if (conn.state === State.Closing) this.finish(conn);
  }

  /** Closes the socket and reports the close. */
  private finish(conn: ConnImpl, error?: Error): void {
    if (conn.state === State.Closed) return;
    const st = state(conn);
    try {
      st?.tcp?.close();
    } catch { /* already closed */ }
    try {
      st?.handshaking?.close();
    } catch { /* already closed */ }
    if (st?.tls) {
      st.tls = false;
      tlsCounters.live--;
    }
    try {
      st?.udp?.close();
    } catch { /* already closed */ }
    st?.resume?.();
    this.closed(conn, error);
    conn.release();
  }

  protected override connect(conn: ConnImpl, address: SocketAddress): void {
    const st: PortableState = { writing: false };
    conn.backendState = st;
    if (conn.network === "udp") {
      const socket = dgram.createSocket(address.family === 6 ? "udp6" : "udp4");
      st.udp = socket;
      socket.on("error", (error) => this.finish(conn, error));
      socket.on("message", (message: Uint8Array) => {
        this.traffic(conn, message, this.now = performance.now());
        this.flushDirty();
      });
      socket.connect(address.port, address.address, () => {
        if (conn.state !== State.Connecting) return;
        this.opened(conn);
        this.flushDirty();
        this.markDirty(conn);
      });
      return;
    }
    Deno.connect({ hostname: address.address, port: address.port }).then((tcp) => {
      if (conn.state !== State.Connecting) {
        tcp.close();
        return;
      }
      st.tcp = tcp;
      tcp.setNoDelay(true);
      this.opened(conn);
      this.markDirty(conn);
      this.startReading(conn);
    }, (error) => {
      const exhausted = exhaustionCode(error) !== undefined;
      const failure = new NetloopError(
        `Cannot connect to ${address.address}:${address.port}: ${error.message}`,
        { code: exhausted ? "descriptors_exhausted" : "connect_failed", cause: error },
      );
      if (exhausted) {
        this.exhaustion.dials++;
        this.logExhaustion("dial", failure.message);
      }
      this.finish(conn, failure);
    });
  }

  override addressOf(conn: ConnImpl, which: "local" | "remote"): SocketAddress {
    const st = state(conn);
    if (st.tcp !== undefined) {
      return toAddress(which === "local" ? st.tcp.localAddr : st.tcp.remoteAddr);
    }
    if (st.udp !== undefined) {
      const info = which === "local" ? st.udp.address() : st.udp.remoteAddress();
      return { family: info.family === "IPv6" ? 6 : 4, address: info.address, port: info.port };
    }
    return { family: 4, address: "0.0.0.0", port: 0 };
  }

  override sendDatagram(conn: PacketConn, bytes: Uint8Array): void {
    const to = conn.remoteAddress;
    this.udp?.send(bytes.slice(), to.port, to.address);
  }
}
