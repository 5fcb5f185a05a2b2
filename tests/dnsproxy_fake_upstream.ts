/**
 * Scriptable UDP "upstreams" for the dnsproxy tests: a relay to a real server that can delay and
 * count queries, a black hole, and a hostile server that answers with wrong IDs, wrong questions and
 * from the wrong port before (or instead of) the right answer.
 *
 * @module
 */
import dgram from "node:dgram";

/** A running fake upstream. */
export interface FakeUpstream extends AsyncDisposable {
  /** `127.0.0.1:<port>`. */
  readonly address: string;
  /** The port. */
  readonly port: number;
  /** Queries received. */
  readonly queries: number;
  /** Stops it. */
  close(): Promise<void>;
}

type Reply = (bytes: Uint8Array, from?: dgram.Socket) => void;

function bind(): Promise<dgram.Socket> {
  return new Promise((resolve, reject) => {
    const socket = dgram.createSocket("udp4");
    socket.once("error", reject);
    socket.bind(0, "127.0.0.1", () => resolve(socket));
  });
}

/**
 * Starts a fake upstream whose `onQuery` decides what to send back.
 *
 * @param onQuery Called per query with the bytes and a `reply(bytes, fromSocket?)` function.
 */
export async function startFakeUpstream(
  onQuery: (query: Uint8Array, reply: Reply, extraSocket: dgram.Socket) => void,
): Promise<FakeUpstream> {
  const socket = await bind();
  const extra = await bind(); // a second socket: replies "from the wrong port"
  let queries = 0;
  socket.on("message", (message: Uint8Array, from: { address: string; port: number }) => {
    queries++;
    const reply: Reply = (bytes, via = socket) => {
      try {
        via.send(bytes, from.port, from.address);
      } catch { /* closed */ }
    };
    onQuery(new Uint8Array(message), reply, extra);
  });
  const port = socket.address().port;
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    await new Promise<void>((resolve) => socket.close(() => resolve()));
    await new Promise<void>((resolve) => extra.close(() => resolve()));
  };
  return {
    address: `127.0.0.1:${port}`,
    port,
    get queries() {
      return queries;
    },
    close,
    [Symbol.asyncDispose]: close,
  };
}

/** Asks a real server over UDP (for relays). */
export function forward(port: number, query: Uint8Array): Promise<Uint8Array | null> {
  return new Promise((resolve) => {
    const socket = dgram.createSocket("udp4");
    const timer = setTimeout(() => {
      socket.close();
      resolve(null);
    }, 2000);
    socket.on("message", (message: Uint8Array) => {
      clearTimeout(timer);
      socket.close();
      resolve(new Uint8Array(message));
    });
    socket.send(query, port, "127.0.0.1");
  });
}
