/**
 * Upstream sockets carried by a netloop loop (`loop.dial`): a connected UDP socket on a random
 * local port per query, and TCP connections for the pool, both driven by the loop that serves the
 * clients, so replies are handled in the same turn machinery as queries.
 *
 * @module
 */
import { formatSocketAddress, ipFamily } from "@triad/core";
import type { SocketAddress } from "@triad/core";
import { Action } from "@triad/netloop";
import type { Conn, Loop } from "@triad/netloop";
import { checkReply } from "./upstream/reply_check.ts";
import type { UpstreamTransport } from "./upstream/upstream.ts";
import { UpstreamError } from "./upstream/upstream_error.ts";

/**
 * Builds the transport for upstreams living on `loop`. The UDP socket is connected, so the
 * kernel itself drops datagrams from any other address or port (they cannot be counted here);
 * ID and question are checked as everywhere.
 *
 * @param loop The loop.
 * @returns The transport.
 */
export function loopTransport(loop: Loop): UpstreamTransport {
  return {
    udpExchange(server, query, id, info, timeoutMs, onMismatch) {
      const label = formatSocketAddress(server);
      return new Promise((resolve, reject) => {
        let done = false;
        // Assigned once the query is written; a holder so the callbacks above can clear it.
        const state: { timer?: ReturnType<typeof setTimeout> } = {};
        const finish = () => {
          done = true;
          clearTimeout(state.timer);
          if (!conn.closed) conn.close();
        };
        const conn = loop.dial({
          network: "udp",
          address: server,
          handler: {
            onOpen: () => Action.None,
            onTraffic: (c) => {
              const reply = c.next().slice();
              if (done) return Action.None;
              const result = checkReply(reply, id, info);
              if (typeof result === "string") {
                onMismatch(result);
                return Action.None;
              }
              finish();
              resolve(result);
              return Action.None;
            },
            onClose: (_c, error) => {
              if (!done) {
                done = true;
                clearTimeout(state.timer);
                reject(
                  new UpstreamError(`Upstream ${label} over UDP failed`, {
                    code: "network",
                    cause: error,
                  }),
                );
              }
              return Action.None;
            },
          },
        });
        conn.write(query);
        state.timer = setTimeout(() => {
          if (done) return;
          finish();
          reject(new UpstreamError(`Upstream ${label} over UDP timed out`, { code: "timeout" }));
        }, timeoutMs);
      });
    },
    tcpConnect(hostname, port) {
      const address: SocketAddress = { family: ipFamily(hostname) ?? 4, address: hostname, port };
      return Promise.resolve(new LoopTcpConn(loop, address) as unknown as Deno.Conn);
    },
  };
}

/** The part of `Deno.Conn` the TCP pool uses, over a dialed netloop connection. */
class LoopTcpConn {
  #conn: Conn;
  #chunks: Uint8Array[] = [];
  #waiter:
    | { buffer: Uint8Array; resolve: (n: number | null) => void; reject: (e: Error) => void }
    | undefined;
  #ended = false;
  #error: Error | undefined;

  constructor(loop: Loop, address: SocketAddress) {
    this.#conn = loop.dial({
      network: "tcp",
      address,
      handler: {
        onOpen: () => Action.None,
        onTraffic: (c) => {
          this.#chunks.push(c.next().slice());
          this.#pump();
          return Action.None;
        },
        onClose: (_c, error) => {
          this.#ended = true;
          this.#error = error;
          this.#pump();
          return Action.None;
        },
      },
    });
  }

  #pump(): void {
    const waiter = this.#waiter;
    if (waiter === undefined) return;
    const chunk = this.#chunks[0];
    if (chunk !== undefined) {
      const n = Math.min(chunk.length, waiter.buffer.length);
      waiter.buffer.set(chunk.subarray(0, n));
      if (n === chunk.length) this.#chunks.shift();
      else this.#chunks[0] = chunk.subarray(n);
      this.#waiter = undefined;
      waiter.resolve(n);
    } else if (this.#ended) {
      this.#waiter = undefined;
      if (this.#error !== undefined) waiter.reject(this.#error);
      else waiter.resolve(null);
    }
  }

  read(buffer: Uint8Array): Promise<number | null> {
    return new Promise((resolve, reject) => {
      this.#waiter = { buffer, resolve, reject };
      this.#pump();
    });
  }

  write(bytes: Uint8Array): Promise<number> {
    if (this.#ended) return Promise.reject(this.#error ?? new Error("Connection closed"));
    this.#conn.write(bytes);
    return Promise.resolve(bytes.length);
  }

  close(): void {
    if (!this.#conn.closed) this.#conn.close();
  }
}
