/**
 * One query over UDP from a fresh socket on a kernel-chosen random port.
 *
 * @module
 */
import dgram from "node:dgram";
import type { SocketAddress } from "@triad/core";
import type { MessageInfo } from "../wire/message.ts";
import { checkReply } from "./reply_check.ts";
import type { AcceptedReply, MismatchReason } from "./reply_check.ts";
import { UpstreamError } from "./upstream_error.ts";
import { UdpPool } from "./udp_pool.ts";
import type { PoolSocketOpener } from "./udp_pool.ts";
import type { UdpSocketOptions, UdpSocketPool } from "./upstream.ts";

/** The signature of {@linkcode udpExchange}, so a server can supply its own UDP transport. */
export type UdpExchange = (
  server: SocketAddress,
  query: Uint8Array,
  id: number,
  info: MessageInfo,
  timeoutMs: number,
  onMismatch: (reason: MismatchReason) => void,
) => Promise<AcceptedReply>;

/**
 * Receives the outcome of a {@linkcode UdpQuery}: an error, or the accepted reply, and the
 * context the query was given. The reply's bytes may be the transport's receive buffer, valid
 * during the call only: copy what is kept.
 */
export type UdpQueryDone = (
  error: UpstreamError | undefined,
  reply: AcceptedReply | undefined,
  context: unknown,
) => void;

/**
 * One UDP query and its reply, callback style: `done` is called exactly once, with `context`
 * passed on as its third argument (it saves the caller a closure per query), possibly from inside
 * the transport's receive path (an event loop answers the client in the same turn).
 */
export type UdpQuery = (
  ...args: [...Parameters<UdpExchange>, done: UdpQueryDone, context: unknown]
) => void;

/**
 * Sends `query` (already carrying `id`) to `server` from a new socket bound to a random port and
 * waits for a reply from exactly that address and port that passes {@linkcode checkReply}. Other
 * datagrams are reported to `onMismatch` and ignored, so a spoofed reply cannot end the wait.
 *
 * @param server The upstream.
 * @param query The query bytes.
 * @param id The ID in `query`.
 * @param info The parsed query.
 * @param timeoutMs How long to wait.
 * @param onMismatch Called for every refused datagram.
 * @returns The accepted reply.
 * @throws {UpstreamError} With code `timeout` or `network`.
 */
export function udpExchange(
  server: SocketAddress,
  query: Uint8Array,
  id: number,
  info: MessageInfo,
  timeoutMs: number,
  onMismatch: (reason: MismatchReason) => void,
): Promise<AcceptedReply> {
  const listenDatagram = (Deno as unknown as { listenDatagram?: ListenDatagram }).listenDatagram;
  if (typeof listenDatagram === "function") {
    return denoExchange(listenDatagram)(server, query, id, info, timeoutMs, onMismatch);
  }
  return new Promise((resolve, reject) => {
    const socket = dgram.createSocket(server.family === 6 ? "udp6" : "udp4");
    let done = false;
    const finish = (error: UpstreamError | undefined, reply?: AcceptedReply) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      try {
        socket.close();
      } catch { /* already closed */ }
      if (error !== undefined) reject(error);
      else resolve(reply!);
    };
    const timer = setTimeout(
      () =>
        finish(
          new UpstreamError(`Upstream ${server.address}:${server.port} over UDP timed out`, {
            code: "timeout",
          }),
        ),
      timeoutMs,
    );
    socket.on("error", (cause: Error) =>
      finish(
        new UpstreamError(`Upstream ${server.address}:${server.port} over UDP failed`, {
          code: "network",
          cause,
        }),
      ));
    socket.on("message", (message: Uint8Array, from: { address: string; port: number }) => {
      if (from.port !== server.port || from.address !== server.address) {
        onMismatch("source");
        return;
      }
      const result = checkReply(new Uint8Array(message), id, info);
      if (typeof result === "string") {
        onMismatch(result);
        return;
      }
      finish(undefined, result);
    });
    socket.send(query, server.port, server.address, (error: Error | null) => {
      if (error) {
        finish(
          new UpstreamError(`Cannot send to upstream ${server.address}:${server.port}`, {
            code: "network",
            cause: error,
          }),
        );
      }
    });
  });
}

type ListenDatagram = (options: {
  hostname: string;
  port: number;
  transport: "udp";
}) => Deno.DatagramConn;

/** The same exchange over `Deno.listenDatagram` (synchronous bind: much cheaper per query). */
const denoExchange =
  (listenDatagram: ListenDatagram): UdpExchange =>
  async (server, query, id, info, timeoutMs, onMismatch) => {
    const label = `${server.address}:${server.port}`;
    let conn: Deno.DatagramConn;
    try {
      conn = listenDatagram({
        hostname: server.family === 6 ? "::" : "0.0.0.0",
        port: 0,
        transport: "udp",
      });
    } catch (cause) {
      throw new UpstreamError(`Cannot open a UDP socket for upstream ${label}`, {
        code: "network",
        cause,
      });
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    let buffer: Uint8Array | undefined;
    try {
      await conn.send(query, { transport: "udp", hostname: server.address, port: server.port });
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () =>
            reject(new UpstreamError(`Upstream ${label} over UDP timed out`, { code: "timeout" })),
          timeoutMs,
        );
      });
      buffer = freeBuffers.pop() ?? new Uint8Array(RECEIVE_BUFFER);
      for (;;) {
        const [data, from] = await Promise.race([conn.receive(buffer), timeout]);
        const remote = from as Deno.NetAddr;
        if (remote.port !== server.port || remote.hostname !== server.address) {
          onMismatch("source");
          continue;
        }
        const result = checkReply(data.slice(), id, info);
        if (typeof result === "string") {
          onMismatch(result);
          continue;
        }
        return result;
      }
    } catch (cause) {
      if (cause instanceof UpstreamError) throw cause;
      throw new UpstreamError(`Upstream ${label} over UDP failed`, { code: "network", cause });
    } finally {
      clearTimeout(timer);
      conn.close();
      if (buffer !== undefined && freeBuffers.length < 256) freeBuffers.push(buffer);
    }
  };

/**
 * Replies are asked for at most 1232 bytes (our OPT); 4 KiB leaves room for upstreams that send
 * more, whose replies then fail the checks and are counted as malformed. Buffers are reused:
 * a fresh 64 KiB buffer per query was a fifth of the CPU in garbage collection.
 */
const RECEIVE_BUFFER = 4096;
const freeBuffers: Uint8Array[] = [];

/**
 * A pool of UDP sockets to one upstream on Deno's sockets (`Deno.listenDatagram` where the
 * runtime has it, `node:dgram` otherwise): each socket is bound to a kernel-chosen random port
 * and not connected, so datagrams from any other address or port are refused here (`source`).
 *
 * @param server The upstream.
 * @param options Size and rotation.
 * @param onMismatch Called for every refused datagram.
 * @returns The pool.
 */
export function denoUdpPool(
  server: SocketAddress,
  options: Required<Omit<UdpSocketOptions, "mode">>,
  onMismatch: (reason: MismatchReason) => void,
): UdpSocketPool {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const opener: PoolSocketOpener = {
    open(to, events) {
      const socket = dgram.createSocket(to.family === 6 ? "udp6" : "udp4");
      socket.on("error", (error: Error) => {
        try {
          socket.close();
        } catch { /* already closed */ }
        events.closed(error);
      });
      socket.on("message", (message: Uint8Array, from: { address: string; port: number }) => {
        if (from.port !== to.port || from.address !== to.address) {
          onMismatch("source");
          return;
        }
        events.datagram(new Uint8Array(message.buffer, message.byteOffset, message.byteLength));
      });
      // An unbound socket's first send binds it to a random port (the kernel's choice).
      return {
        send(bytes) {
          socket.send(bytes, to.port, to.address);
        },
        close() {
          try {
            socket.close();
          } catch { /* already closed */ }
        },
      };
    },
    now: () => performance.now(),
    sweepWithin(ms) {
      if (timer !== undefined) return;
      timer = setTimeout(() => {
        timer = undefined;
        pool.sweep(performance.now());
      }, ms);
    },
  };
  const pool = new UdpPool(server, options, onMismatch, opener);
  const close = pool.close.bind(pool);
  return {
    query: pool.query,
    close() {
      clearTimeout(timer);
      timer = undefined;
      close();
    },
  };
}
