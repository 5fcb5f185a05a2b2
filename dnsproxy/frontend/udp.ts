/**
 * DNS over UDP. The socket behind an interface: `Deno.listenDatagram` where the runtime offers it (with
 * `--unstable-net`; about a third faster here), `node:dgram` everywhere else.
 *
 * @module
 */
import dgram from "node:dgram";
import type { Logger, SocketAddress } from "@triad/core";
import type { DnsProxy } from "../proxy.ts";
import { ask } from "./listener.ts";
import type { FrontendListener } from "./listener.ts";

/** A bound UDP socket delivering datagrams to one callback. */
export interface UdpSocket {
  /** The bound port. */
  readonly port: number;
  /** Which implementation this is. */
  readonly kind: "deno" | "node";
  /** Starts delivering datagrams. */
  start(onPacket: (packet: Uint8Array, address: string, port: number) => void): void;
  /** Sends a datagram (errors are reported to the `onError` given to `bindUdpSocket`). */
  send(bytes: Uint8Array, address: string, port: number): void;
  /** Closes the socket. */
  close(): Promise<void>;
}

type ListenDatagram = (options: {
  hostname: string;
  port: number;
  transport: "udp";
}) => Deno.DatagramConn;

/**
 * Binds a UDP socket.
 *
 * @param at Address and port (0 for any).
 * @param onError Called with send and receive errors.
 * @param prefer `"auto"` uses `Deno.listenDatagram` when present.
 * @returns The bound socket.
 */
export async function bindUdpSocket(
  at: SocketAddress,
  onError: (error: unknown) => void,
  prefer: "auto" | "deno" | "node" = "auto",
): Promise<UdpSocket> {
  const listenDatagram = (Deno as unknown as { listenDatagram?: ListenDatagram }).listenDatagram;
  if (prefer !== "node" && typeof listenDatagram === "function") {
    const conn = listenDatagram({ hostname: at.address, port: at.port, transport: "udp" });
    const port = (conn.addr as Deno.NetAddr).port;
    let closed = false;
    let loop: Promise<void> = Promise.resolve();
    return {
      port,
      kind: "deno",
      start(onPacket) {
        loop = (async () => {
          // One receive buffer, reused: the async iterator allocates 64 KiB per datagram, which
          // cost an eighth of the CPU in garbage collection. Each datagram is copied out (small).
          const buffer = new Uint8Array(65_536);
          let failures = 0;
          while (!closed) {
            try {
              const [data, from] = await conn.receive(buffer);
              failures = 0;
              const remote = from as Deno.NetAddr;
              onPacket(data.slice(), remote.hostname, remote.port);
            } catch (error) {
              if (closed || error instanceof Deno.errors.BadResource) break;
              // A receive error (an ICMP error reported on the socket, say) must not stop serving;
              // back off a little if errors repeat.
              onError(error);
              if (++failures > 10) await new Promise((resolve) => setTimeout(resolve, 10));
            }
          }
        })();
      },
      send(bytes, address, port) {
        conn.send(bytes, { transport: "udp", hostname: address, port }).catch(onError);
      },
      async close() {
        closed = true;
        conn.close();
        await loop;
      },
    };
  }
  const socket = await new Promise<dgram.Socket>((resolve, reject) => {
    const s = dgram.createSocket(at.family === 6 ? "udp6" : "udp4");
    s.once("error", reject);
    s.bind(at.port, at.address, () => {
      s.off("error", reject);
      resolve(s);
    });
  });
  socket.on("error", onError);
  return {
    port: socket.address().port,
    kind: "node",
    start(onPacket) {
      socket.on("message", (message: Uint8Array, from: { address: string; port: number }) => {
        // A plain view: Buffer#slice would share memory where the proxy expects a copy.
        const packet = new Uint8Array(message.buffer, message.byteOffset, message.byteLength);
        onPacket(packet, from.address, from.port);
      });
    },
    send(bytes, address, port) {
      socket.send(bytes, port, address);
    },
    close() {
      return new Promise<void>((resolve) => socket.close(() => resolve()));
    },
  };
}

/**
 * Serves DNS over UDP on a bound socket.
 *
 * @param socket From {@linkcode bindUdpSocket}.
 * @param at The address it was bound at.
 * @param proxy The query path.
 * @param logger Where failures are logged.
 * @returns The running listener.
 */
export function serveUdp(
  socket: UdpSocket,
  at: SocketAddress,
  proxy: DnsProxy,
  logger: Logger | undefined,
): FrontendListener {
  socket.start((packet, from, port) => {
    const answer = ask(proxy, packet, { address: from, port, transport: "udp" }, logger);
    if (answer === null) return;
    if (answer instanceof Uint8Array) {
      socket.send(answer, from, port);
      return;
    }
    answer.then((bytes) => {
      if (bytes !== null) socket.send(bytes, from, port);
    });
  });
  return {
    transport: "udp",
    address: { ...at, port: socket.port },
    connections: 0,
    close: () => socket.close(),
  };
}
