/**
 * The portable backend: `Deno.listen` for TCP and `node:dgram` for UDP, for macOS, Windows and runs
 * without `--allow-ffi`. Every connection has its own read loop; writes are gathered per turn of
 * the event loop (a microtask) and sent by one writer per connection.
 *
 * @module
 */
import dgram from "node:dgram";
import { ipFamily, type SocketAddress } from "@triad/core";
import { ConnImpl, PacketConn, State } from "../_conn.ts";
import { LoopCore } from "../_loop.ts";
import { NetloopError } from "../errors.ts";

interface PortableState {
  tcp?: Deno.TcpConn;
  udp?: dgram.Socket;
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

/** A loop on Deno's own networking. */
export class PortableLoop extends LoopCore {
  private listener: Deno.TcpListener | undefined;
  private udp: dgram.Socket | undefined;
  private flushScheduled = false;
  private stopped!: () => void;
  private readonly whenStopped = new Promise<void>((resolve) => (this.stopped = resolve));
  private readonly readers = new Set<Promise<void>>();

  override async listen(): Promise<void> {
    const { hostname, port, network } = this.config;
    if (network === "tcp") {
      const options: Deno.TcpListenOptions & { reusePort?: boolean } = { hostname, port };
      if (this.config.reusePort && this.config.loops > 1) options.reusePort = true;
      this.listener = Deno.listen(options) as Deno.TcpListener;
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
    if (this.listener !== undefined) this.acceptLoop(this.listener);
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

  private async acceptLoop(listener: Deno.TcpListener): Promise<void> {
    while (!this.stopping) {
      let tcp: Deno.TcpConn;
      try {
        tcp = await listener.accept();
      } catch (error) {
        if (this.stopping || error instanceof Deno.errors.BadResource) return;
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
      try {
        tcp.setNoDelay(true);
      } catch { /* not fatal */ }
      const conn = new ConnImpl(this, "tcp", this.handler, false, toAddress(tcp.remoteAddr));
      conn.backendState = { tcp, writing: false } satisfies PortableState;
      this.opened(conn);
      this.flushDirty();
      this.startReading(conn);
    }
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
    const reading = this.readLoop(conn);
    this.readers.add(reading);
    reading.finally(() => this.readers.delete(reading));
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
        if (conn.state < State.Closing) this.finish(conn, error as Error);
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
      this.finish(conn, error as Error);
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
