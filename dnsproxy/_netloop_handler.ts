/**
 * The netloop handler: loaded in every loop (Worker), it runs one {@linkcode DnsProxy} per loop and
 * answers UDP datagrams, TCP and DoT frames, and DoH requests (HTTP/2 or HTTP/1.1, on the engine
 * whose `loop.data` has `https`; `frontend/_doh_wire.ts`). Cache hits are written from `onTraffic` itself; misses are
 * written when the upstream answers (the Conn stays usable). Messages from the main thread
 * reconfigure the proxy (hot reload) or ask for a metrics snapshot.
 *
 * @module
 */
import { Action } from "@triad/netloop";
import { DNS_FRAMING } from "./_bytes.ts";
import type { Conn, Loop } from "@triad/netloop";
import type { SocketAddress } from "@triad/core";
import { loopTransport } from "./_loop_transport.ts";
import type { LoopTransport } from "./_loop_transport.ts";
import { DnsMetrics } from "./metrics.ts";
import { DnsProxy } from "./proxy.ts";
import type { ClientInfo, ProxyAnswer, ProxySettings } from "./proxy.ts";
import { dohConnection } from "./frontend/_doh_wire.ts";
import type { DohWireOptions, Http1Connection, Http2Connection } from "./frontend/_doh_wire.ts";

/** What the main thread passes to every loop as `loop.data`. */
export interface LoopData {
  /** The proxy settings. */
  settings: ProxySettings;
  /** Most TCP clients this loop holds at once (its share of `tcp.max_connections`). */
  maxConnections?: number;
  /** Serve DNS over HTTPS (HTTP/2 and HTTP/1.1) on this engine's connections, at this path. */
  https?: { path: string };
}

/** Messages from the main thread. */
export type LoopMessage =
  | { type: "reconfigure"; settings: ProxySettings }
  | { type: "collect"; id: number };

let proxy: DnsProxy | undefined;
let loopRef: Loop | undefined;
let transport: LoopTransport | undefined;

/** Creates this loop's proxy. */
export function onBoot(loop: Loop): Action {
  loopRef = loop;
  const { settings } = loop.data as LoopData;
  proxy = new DnsProxy({
    ...settings,
    // The cache reads the loop's turn clock: reading the real one is an op call per query.
    cache: { ...settings.cache, now: () => loop.now },
    logger: loop.logger,
    metrics: new DnsMetrics(),
    transport: transport = loopTransport(loop),
    onDefence: (event) => loop.postMessage({ type: "defence", event }),
  });
  return Action.None;
}

/**
 * A new TCP client (dialed upstream connections have handlers of their own): closed at once when
 * the loop already holds its share of `tcp.max_connections`.
 */
export function onOpen(_conn: Conn): Action {
  const max = (loopRef?.data as LoopData | undefined)?.maxConnections;
  return max !== undefined && loopRef!.connections > max ? Action.Close : Action.None;
}

function client(conn: Conn, transport: "udp" | "tcp" | "tls" | "https"): ClientInfo {
  const remote = conn.remoteAddress;
  return { address: remote.address, port: remote.port, transport };
}

/**
 * UDP senders' client objects by their address object, which netloop keeps per recent sender:
 * a miss keeps its client until answered, and one made per datagram was 48 heap bytes each.
 */
const udpClients = new WeakMap<SocketAddress, ClientInfo>();

function udpClient(conn: Conn): ClientInfo {
  const remote = conn.remoteAddress;
  let info = udpClients.get(remote);
  if (info === undefined) {
    info = { address: remote.address, port: remote.port, transport: "udp" };
    udpClients.set(remote, info);
  }
  return info;
}

/** Writes a later answer to a UDP client (the Conn stays usable after onTraffic). */
function respondUdp(answer: ProxyAnswer, conn: Conn): void {
  if (answer !== null && !conn.closed) conn.write(answer);
}

/** Writes a later answer to a TCP client, length-prefixed. */
function respondTcp(answer: ProxyAnswer, conn: Conn): void {
  if (answer !== null && !conn.closed) writeFramed(conn, answer);
}

/**
 * Writes an answer behind its 2-byte length in one write: on DoT one TLS record (written apart,
 * the prefix was a record of its own: 22 more bytes and one more seal per answer).
 */
function writeFramed(conn: Conn, answer: Uint8Array): void {
  conn.write(DNS_FRAMING.encode(answer));
}

/**
 * Answers a datagram, or every complete frame on a TCP connection (pipelined, out of order).
 * Cache hits are written at once (write copies, so the proxy's reused answer buffer is fine);
 * misses are written by the upstream's receive callback, in the turn its reply arrives.
 */
export function onTraffic(conn: Conn): Action {
  if (proxy === undefined) return Action.Close;
  if (conn.network === "udp") {
    // The view is valid only during this call; the proxy copies what it keeps.
    const answer = proxy.answer(conn.next(), udpClient(conn), respondUdp, conn);
    if (answer) conn.write(answer);
    return Action.None;
  }
  const https = (loopRef!.data as LoopData).https;
  if (https !== undefined) return dohTraffic(conn, https.path, proxy);
  const from = client(conn, conn.tls === undefined ? "tcp" : "tls");
  for (;;) {
    let frame: Uint8Array | undefined;
    try {
      frame = DNS_FRAMING.decode(conn);
    } catch {
      return Action.Close;
    }
    if (frame === undefined) return Action.None;
    const answer = proxy.answer(frame, from, respondTcp, conn);
    if (answer) writeFramed(conn, answer);
  }
}

/** A DoH connection's bytes: HTTP/2 or HTTP/1.1 (chosen by ALPN and the first bytes). */
function dohTraffic(conn: Conn, path: string, proxy: DnsProxy): Action {
  const input = conn.peek();
  let doh = conn.context as Http2Connection | Http1Connection | undefined;
  if (doh === undefined) {
    const from = client(conn, "https");
    const options: DohWireOptions = {
      path,
      ask: (message, respond, context) => proxy.answer(message, from, respond, context),
    };
    doh = dohConnection(conn.tls?.alpn, input, conn, options);
    if (doh === undefined) return Action.None;
    conn.context = doh;
  }
  conn.discard(doh.traffic(input));
  return Action.None;
}

/** A client connection closed: a DoH connection drops the answers still to come. */
export function onClose(conn: Conn): Action {
  (conn.context as Http2Connection | Http1Connection | undefined)?.release?.();
  return Action.None;
}

/** Expires upstream queries past their timeout. */
export function onTick(): Action {
  transport?.sweep(performance.now());
  return Action.None;
}

/** Applies new settings, or returns a metrics snapshot to the main thread. */
export function onMessage(data: unknown): Action {
  const message = data as LoopMessage;
  if (proxy === undefined || loopRef === undefined) return Action.None;
  if (message.type === "reconfigure") {
    try {
      proxy.reconfigure(message.settings);
    } catch (error) {
      loopRef.logger.error("reconfiguration refused", { error });
    }
  } else if (message.type === "collect") {
    proxy.metrics.descriptors(loopRef.exhaustion);
    loopRef.postMessage({
      type: "metrics",
      id: message.id,
      snapshot: proxy.metrics.registry.snapshot(),
    });
  }
  return Action.None;
}

/** Closes the proxy's upstream connections and probes. */
export function onShutdown(): void {
  proxy?.close();
  proxy = undefined;
  transport = undefined;
}
