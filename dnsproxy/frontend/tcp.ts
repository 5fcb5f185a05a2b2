/**
 * Cleartext DNS over TCP (RFC 7766) on `Deno.listen`.
 *
 * @module
 */
import type { SocketAddress } from "@triad/core";
import type { DnsProxy } from "../proxy.ts";
import type { FrontendListener } from "./listener.ts";
import { acceptorOf, serveStream } from "./stream.ts";
import type { StreamOptions } from "./stream.ts";

/**
 * Binds a TCP listener (throws when the address is taken: {@linkcode bindRetrying} retries).
 *
 * @param at Address and port.
 * @returns The listener.
 */
export function listenTcp(at: SocketAddress): Deno.TcpListener {
  return Deno.listen({ hostname: at.address, port: at.port, transport: "tcp" });
}

/**
 * Serves DNS over TCP on a bound listener.
 *
 * @param listener From {@linkcode listenTcp}.
 * @param at The address it was bound at (its port is read from the listener).
 * @param proxy The query path.
 * @param options Limits.
 * @returns The running listener.
 */
export function serveTcp(
  listener: Deno.TcpListener,
  at: SocketAddress,
  proxy: DnsProxy,
  options: StreamOptions,
): FrontendListener {
  const address = { ...at, port: (listener.addr as Deno.NetAddr).port };
  return serveStream(acceptorOf(listener), address, "tcp", proxy, options);
}
