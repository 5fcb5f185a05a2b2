/**
 * The runtime's floor of a cache miss, for dnsproxy/bench: a UDP forwarder on netloop (one loop,
 * epoll: the backend the proxy's `auto` carries UDP on) doing what `udp_forwarder.c
 * port-per-query` does and no DNS work beyond it: each query goes upstream from its own dialed
 * socket (a new random port) with a random ID; a reply is accepted if its ID and question match,
 * and goes back to the client with the client's ID. No parsing, no cache, no policy: what the
 * proxy costs above this is its own work.
 *
 * ```sh
 * deno run -A dnsproxy/bench/netloop_forwarder.ts PORT UPSTREAM_PORT
 * ```
 *
 * Loaded by netloop in its loop as the handler too (then `import.meta.main` is false).
 *
 * @module
 */
import { Action, serve } from "@triad/netloop";
import type { Conn, ConnHandler, Loop } from "@triad/netloop";

/** One query waiting for its reply: the dialed socket's context. */
class Waiting {
  constructor(
    readonly client: Conn,
    readonly clientId: number,
    readonly id: number,
    readonly question: Uint8Array,
  ) {}
}

let loop: Loop;
let upstream: { family: 4; address: string; port: number };

function sameQuestion(question: Uint8Array, reply: Uint8Array): boolean {
  if (reply.length < 12 + question.length) return false;
  for (let i = 0; i < question.length; i++) {
    const a = question[i]!;
    const b = reply[12 + i]!;
    if (a !== b && ((a | 0x20) !== (b | 0x20) || (a | 0x20) < 0x61 || (a | 0x20) > 0x7a)) {
      return false;
    }
  }
  return true;
}

const UPSTREAM: ConnHandler = {
  onOpen: () => Action.None,
  onTraffic(conn) {
    const waiting = conn.context as Waiting;
    const reply = conn.next();
    if (
      reply.length < 12 || ((reply[0]! << 8) | reply[1]!) !== waiting.id ||
      !sameQuestion(waiting.question, reply)
    ) {
      return Action.None;
    }
    reply[0] = waiting.clientId >> 8;
    reply[1] = waiting.clientId & 0xff;
    if (!waiting.client.closed) waiting.client.write(reply);
    conn.close();
    return Action.None;
  },
  onClose: () => Action.None,
};

/** Keeps the loop and the upstream address. */
export function onBoot(bootLoop: Loop): Action {
  loop = bootLoop;
  upstream = Object.freeze({ family: 4, address: "127.0.0.1", port: bootLoop.data as number });
  return Action.None;
}

/** Forwards one query. */
export function onTraffic(conn: Conn): Action {
  const query = conn.next();
  if (query.length < 12 || (query[2]! & 0x80) !== 0) return Action.None;
  let end = 12;
  while (end < query.length && query[end] !== 0) end += query[end]! + 1;
  end += 5;
  if (end > query.length) return Action.None;
  const id = (Math.random() * 0x10000) | 0;
  const copy = query.slice();
  const waiting = new Waiting(conn, (query[0]! << 8) | query[1]!, id, copy.subarray(12, end));
  copy[0] = id >> 8;
  copy[1] = id & 0xff;
  loop.dial({ network: "udp", address: upstream, handler: UPSTREAM, context: waiting })
    .write(copy);
  return Action.None;
}

if (import.meta.main) {
  const [port, upstreamPort] = Deno.args.map(Number);
  const engine = await serve(new URL(import.meta.url), {
    network: "udp",
    hostname: "127.0.0.1",
    port: port!,
    loops: 1,
    backend: "epoll",
    data: upstreamPort,
  });
  const stop = () => void engine.stop();
  Deno.addSignalListener("SIGTERM", stop);
  await engine.done;
  Deno.removeSignalListener("SIGTERM", stop);
}
