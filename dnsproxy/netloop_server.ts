/**
 * Serving on `@triad/netloop`: one UDP and one TCP engine on the same address, `loops` Workers
 * each, every loop running its own proxy (cache included) from `_netloop_handler.ts`.
 *
 * @module
 */
import { formatPrometheus, parseSocketAddress } from "@triad/core";
import type { Logger, MetricSnapshot, SocketAddress } from "@triad/core";
import { NetloopError, serve } from "@triad/netloop";
import type { Engine, ServeOptions, TlsStats } from "@triad/netloop";
import { bindRetrying } from "./frontend/listener.ts";
import type { LoopData, LoopMessage } from "./_netloop_handler.ts";
import type { ProxySettings } from "./proxy.ts";
import type { DefenceEvent } from "./defence/rules.ts";

/** Options of {@linkcode serveDnsOnNetloop}. */
export interface NetloopDnsOptions {
  /** Where to listen (`127.0.0.1:5353`; port 0 picks one for both transports). */
  listen: string;
  /** Loops (Workers) per transport. @default {1} */
  loops?: number;
  /** The netloop backend. @default {"auto"} */
  backend?: "auto" | "uring" | "epoll" | "portable";
  /** Idle TCP connections are closed after this many ms. @default {10000} */
  idleTimeout?: number;
  /**
   * Most TCP clients at once, over every loop (each holds its share), and as many DNS over TLS
   * clients on the TLS engine; a client past it is closed as it connects. Unlimited when unset.
   */
  maxConnections?: number;
  /** Where the engines log. */
  logger?: Logger;
  /** Receives defence blocks starting and ending in the loops (for the kernel filter). */
  onDefence?: (event: DefenceEvent) => void;
  /**
   * Also serve DNS over TLS (RFC 7858) on netloop's TLS (OpenSSL on the loop, ALPN `dot`): a third
   * engine on its own address, the same handler and the same pipelined TCP path.
   */
  tls?: { listen: string; cert: string; key: string } | undefined;
  /**
   * Also serve DNS over HTTPS (RFC 8484) on netloop: a fourth engine, HTTP/2 (ALPN `h2`) and
   * HTTP/1.1 (ALPN `http/1.1`, or a client offering no ALPN) over netloop's TLS, or cleartext
   * HTTP/1.1 and HTTP/2 with prior knowledge without a certificate (behind a TLS-terminating
   * proxy).
   */
  https?: { listen: string; path: string; cert?: string; key?: string } | undefined;
}

/** The proxy running on netloop. */
export interface NetloopDnsServer extends AsyncDisposable {
  /** The address both transports listen on. */
  readonly address: SocketAddress;
  /** The backend netloop chose, and why. */
  readonly backend: string;
  /** How many loops serve, UDP and TCP together (each has its own proxy and upstream health). */
  readonly loops: number;
  /** The DNS over TLS address, when asked for. */
  readonly tlsAddress: SocketAddress | undefined;
  /** The DNS over HTTPS address, when asked for. */
  readonly httpsAddress: SocketAddress | undefined;
  /** Serves new TLS handshakes with this pair (PEM); a bad pair throws and the old one stays. */
  reloadTls(pair: { cert: string; key: string }): Promise<void>;
  /** Sends new settings to every loop (hot reload). */
  reconfigure(settings: ProxySettings): void;
  /** Prometheus text merged from every loop (and `extra`, say a main-thread proxy's). */
  metrics(extra?: readonly MetricSnapshot[]): Promise<string>;
  /** Stops both engines. */
  close(): Promise<void>;
}

const HANDLER = new URL("./_netloop_handler.ts", import.meta.url);

/**
 * Starts the proxy on netloop: a UDP engine and a TCP engine on the same address.
 *
 * @param settings The proxy settings, given to every loop.
 * @param options Address, loops, backend.
 * @returns The running server.
 * @throws {TriadError} With code `listen_failed`.
 *
 * @example
 * ```ts ignore
 * await using server = await serveDnsOnNetloop(
 *   { upstream: { upstreams: ["127.0.0.1:53"] } },
 *   { listen: "127.0.0.1:5353", loops: 2 },
 * );
 * ```
 */
export async function serveDnsOnNetloop(
  settings: ProxySettings,
  options: NetloopDnsOptions,
): Promise<NetloopDnsServer> {
  const at = parseSocketAddress(options.listen);
  const data: LoopData = { settings };
  const pending = new Map<
    number,
    { snapshots: MetricSnapshot[]; left: number; done: () => void }
  >();
  const onMessage = (message: unknown) => {
    const reply = message as {
      type: string;
      id: number;
      snapshot: MetricSnapshot[];
      event: DefenceEvent;
    };
    if (reply.type === "defence") options.onDefence?.(reply.event);
    const waiting = reply.type === "metrics" ? pending.get(reply.id) : undefined;
    if (waiting === undefined) return;
    waiting.snapshots.push(...reply.snapshot);
    if (--waiting.left === 0) waiting.done();
  };
  const common = {
    hostname: at.address,
    loops: options.loops ?? 1,
    backend: options.backend ?? "auto",
    // onTick sweeps expired upstream queries, every 10 ms while a loop has UDP queries in flight
    // (the transport asks for those ticks); an idle loop ticks once a second and otherwise sleeps
    // in the kernel (at most 50 ms at a time: netloop gives the Worker's timers a turn). UDP
    // upstream replies answer their clients from the receive path itself; only TCP/TLS upstreams
    // go through promises, which run when the loop yields (whenever a turn finds nothing to do,
    // at least every 2 ms).
    tick: 1000,
    data,
    onMessage,
    ...(options.logger === undefined ? {} : { logger: options.logger }),
  } as const;
  // `auto` carries UDP on epoll where it can run: on the benchmark's kernel recvmmsg/sendmmsg
  // answered at 40,000 q/s with lower latency than netloop's io_uring path (85 against 111 µs,
  // median of 4 interleaved rounds) at the same CPU per query. TCP stays on `auto` (uring).
  let udpBackend: "auto" | "uring" | "epoll" | "portable" = common.backend === "auto"
    ? "epoll"
    : common.backend;
  // TCP and TLS clients past their loop's share of `maxConnections` are closed as they connect.
  const streamLimit = options.maxConnections === undefined ? {} : {
    data: {
      ...data,
      maxConnections: Math.ceil(options.maxConnections / common.loops),
    } satisfies LoopData,
  };
  // With port 0, find a port free for both transports (the one retry loop, frontend/listener.ts).
  const [udp, tcp] = await bindRetrying(options.listen, async (): Promise<[Engine, Engine]> => {
    let bound: Engine;
    try {
      bound = await serve(HANDLER, {
        ...common,
        backend: udpBackend,
        network: "udp",
        port: at.port,
      });
    } catch (error) {
      // No FFI (or no epoll): let netloop pick, as for TCP.
      if (udpBackend !== "epoll" || common.backend !== "auto") throw error;
      if (!(error instanceof NetloopError) || error.code !== "backend_unavailable") throw error;
      udpBackend = "auto";
      bound = await serve(HANDLER, { ...common, network: "udp", port: at.port });
    }
    try {
      return [
        bound,
        await serve(HANDLER, {
          ...common,
          network: "tcp",
          port: bound.address.port,
          idleTimeout: options.idleTimeout ?? 10_000,
          ...streamLimit,
        }),
      ];
    } catch (error) {
      await bound.stop();
      throw error;
    }
  });
  const engines = [udp, tcp];
  /** Binds one more TCP engine (DoT, DoH) at `listen`; on failure stops the ones started. */
  const streamEngine = async (listen: string, extra: Partial<ServeOptions>) => {
    try {
      const engine = await bindRetrying(listen, (at) =>
        serve(HANDLER, {
          ...common,
          hostname: at.address,
          network: "tcp",
          port: at.port,
          idleTimeout: options.idleTimeout ?? 10_000,
          ...streamLimit,
          ...extra,
        }));
      engines.push(engine);
      return engine;
    } catch (error) {
      await Promise.all(engines.map((engine) => engine.stop()));
      throw error;
    }
  };
  const tls = options.tls;
  const tlsEngine = tls === undefined
    ? undefined
    : await streamEngine(tls.listen, { tls: { cert: tls.cert, key: tls.key, alpn: ["dot"] } });
  const https = options.https;
  const httpsEngine = https === undefined ? undefined : await streamEngine(https.listen, {
    data: { ...(streamLimit.data ?? data), https: { path: https.path } } satisfies LoopData,
    ...(https.cert === undefined || https.key === undefined
      ? {}
      : { tls: { cert: https.cert, key: https.key, alpn: ["h2", "http/1.1"] } }),
  });
  let nextId = 0;
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    await Promise.all(engines.map((engine) => engine.stop()));
  };
  return {
    address: { ...at, port: udp.address.port },
    backend: common.backend === "auto" && udpBackend === "epoll"
      ? `epoll for UDP (lower latency than io_uring for UDP), ${tcp.backend} for TCP (${tcp.reason})`
      : `${udp.backend} (${udp.reason})`,
    loops: engines.reduce((sum, engine) => sum + engine.loops, 0),
    reconfigure(next) {
      const message: LoopMessage = { type: "reconfigure", settings: next };
      for (const engine of engines) engine.broadcast(message);
    },
    tlsAddress: tlsEngine === undefined
      ? undefined
      : { ...parseSocketAddress(options.tls!.listen), port: tlsEngine.address.port },
    httpsAddress: httpsEngine === undefined
      ? undefined
      : { ...parseSocketAddress(options.https!.listen), port: httpsEngine.address.port },
    async reloadTls(pair) {
      await tlsEngine?.reloadTls(pair);
      if (options.https?.cert !== undefined) await httpsEngine?.reloadTls(pair);
    },
    async metrics(extra = []) {
      const counted: [string, TlsStats][] = [];
      if (tlsEngine !== undefined) counted.push(["tls", await tlsEngine.tlsStats()]);
      if (httpsEngine !== undefined && options.https?.cert !== undefined) {
        counted.push(["https", await httpsEngine.tlsStats()]);
      }
      const handshakes = counted.length === 0 ? [] : [handshakeSnapshot(counted)];
      const id = ++nextId;
      const loops = engines.reduce((sum, engine) => sum + engine.loops, 0);
      return new Promise<string>((resolve) => {
        const entry = {
          snapshots: [] as MetricSnapshot[],
          left: loops,
          done: () => {
            clearTimeout(timer);
            pending.delete(id);
            resolve(formatPrometheus([...entry.snapshots, ...extra, ...handshakes]));
          },
        };
        // A loop that does not answer within a second is left out rather than hanging /metrics.
        const timer = setTimeout(entry.done, 1000);
        pending.set(id, entry);
        const message: LoopMessage = { type: "collect", id };
        for (const engine of engines) engine.broadcast(message);
      });
    },
    close,
    [Symbol.asyncDispose]: close,
  };
}

/** netloop's TLS counters as `dns_tls_handshakes_total{transport,result}`. */
function handshakeSnapshot(engines: [string, TlsStats][]): MetricSnapshot {
  return {
    kind: "counter",
    name: "dns_tls_handshakes_total",
    help: "TLS and QUIC handshakes of client connections, by transport and result.",
    labels: ["transport", "result"],
    series: engines.flatMap(([transport, stats]) => [
      { values: [transport, "ok"], value: stats.handshakes },
      { values: [transport, "resumed"], value: stats.resumed },
      { values: [transport, "failed"], value: stats.handshakeErrors + stats.handshakeTimeouts },
    ]),
  };
}
