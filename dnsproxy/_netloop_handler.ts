/**
 * The netloop handler: loaded in every loop (Worker), it runs one {@linkcode DnsProxy} per loop and
 * answers UDP datagrams and TCP frames. Cache hits are written from `onTraffic` itself; misses are
 * written when the upstream answers (the Conn stays usable). Messages from the main thread
 * reconfigure the proxy (hot reload) or ask for a metrics snapshot.
 *
 * @module
 */
import { Action, LengthFieldCodec } from "@triad/netloop";
import type { Conn, Loop } from "@triad/netloop";
import { loopTransport } from "./_loop_transport.ts";
import { DnsMetrics } from "./metrics.ts";
import { DnsProxy } from "./proxy.ts";
import type { ClientInfo, ProxyAnswer, ProxySettings } from "./proxy.ts";

/** What the main thread passes to every loop as `loop.data`. */
export interface LoopData {
  /** The proxy settings. */
  settings: ProxySettings;
}

/** Messages from the main thread. */
export type LoopMessage =
  | { type: "reconfigure"; settings: ProxySettings }
  | { type: "collect"; id: number };

let proxy: DnsProxy | undefined;
let loopRef: Loop | undefined;
const codec = new LengthFieldCodec({ lengthFieldLength: 2 });

/** Creates this loop's proxy. */
export function onBoot(loop: Loop): Action {
  loopRef = loop;
  const { settings } = loop.data as LoopData;
  proxy = new DnsProxy({
    ...settings,
    logger: loop.logger,
    metrics: new DnsMetrics(),
    transport: loopTransport(loop),
  });
  return Action.None;
}

function client(conn: Conn, transport: "udp" | "tcp"): ClientInfo {
  const remote = conn.remoteAddress;
  return { address: remote.address, port: remote.port, transport };
}

function send(conn: Conn, answer: ProxyAnswer | Promise<ProxyAnswer>, framed: boolean): void {
  if (answer === null) return;
  if (answer instanceof Uint8Array) {
    write(conn, answer, framed);
    return;
  }
  answer.then((bytes) => {
    if (bytes !== null && !conn.closed) write(conn, bytes, framed);
  }).catch((error) => loopRef?.logger.error("query failed", { error }));
}

function write(conn: Conn, answer: Uint8Array, framed: boolean): void {
  if (!framed) {
    conn.write(answer);
    return;
  }
  conn.writev([new Uint8Array([answer.length >> 8, answer.length & 0xff]), answer]);
}

/** Answers a datagram, or every complete frame on a TCP connection (pipelined, out of order). */
export function onTraffic(conn: Conn): Action {
  if (proxy === undefined) return Action.Close;
  if (conn.network === "udp") {
    // The view is valid only during this call; the proxy may keep the query past it.
    const packet = conn.next().slice();
    send(conn, proxy.handle(packet, client(conn, "udp")), false);
    return Action.None;
  }
  const from = client(conn, "tcp");
  for (;;) {
    let frame: Uint8Array | undefined;
    try {
      frame = codec.decode(conn);
    } catch {
      return Action.Close;
    }
    if (frame === undefined) return Action.None;
    send(conn, proxy.handle(frame.slice(), from), true);
  }
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
}
