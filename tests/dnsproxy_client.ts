/**
 * A minimal DNS client for the dnsproxy tests: one query over UDP or TCP, with a timeout.
 *
 * @module
 */
import dgram from "node:dgram";
import { parseMessage } from "@triad/dnsproxy";

/** Sends a datagram and returns the first reply, or `null` after `timeoutMs`. */
export function queryUdp(
  port: number,
  packet: Uint8Array,
  timeoutMs = 2000,
  hostname = "127.0.0.1",
): Promise<Uint8Array | null> {
  return new Promise((resolve) => {
    const socket = dgram.createSocket("udp4");
    const timer = setTimeout(() => {
      socket.close();
      resolve(null);
    }, timeoutMs);
    socket.on("message", (message: Uint8Array) => {
      clearTimeout(timer);
      socket.close();
      resolve(new Uint8Array(message));
    });
    socket.on("error", () => {});
    socket.send(packet, port, hostname);
  });
}

/** Frames a message with its two-byte length. */
export function frame(message: Uint8Array): Uint8Array {
  const out = new Uint8Array(message.length + 2);
  out[0] = message.length >> 8;
  out[1] = message.length & 0xff;
  out.set(message, 2);
  return out;
}

/** Reads length-framed messages from a connection until `count` arrived or `timeoutMs` passed. */
export async function readFrames(
  conn: Deno.Conn,
  count: number,
  timeoutMs = 2000,
): Promise<Uint8Array[]> {
  const out: Uint8Array[] = [];
  let buffer = new Uint8Array(0);
  const chunk = new Uint8Array(65_536);
  const deadline = performance.now() + timeoutMs;
  while (out.length < count && performance.now() < deadline) {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const n = await Promise.race([
      conn.read(chunk).catch(() => null),
      new Promise<"timeout">((resolve) => {
        timer = setTimeout(() => resolve("timeout"), Math.max(1, deadline - performance.now()));
      }),
    ]);
    clearTimeout(timer);
    if (n === null || n === "timeout") break;
    const joined = new Uint8Array(buffer.length + n);
    joined.set(buffer);
    joined.set(chunk.subarray(0, n), buffer.length);
    buffer = joined;
    while (buffer.length >= 2) {
      const length = (buffer[0]! << 8) | buffer[1]!;
      if (buffer.length < length + 2) break;
      out.push(buffer.slice(2, length + 2));
      buffer = buffer.slice(length + 2);
    }
  }
  return out;
}

/** Sends one query over a new TCP connection and returns the reply, or `null`. */
export async function queryTcp(
  port: number,
  packet: Uint8Array,
  timeoutMs = 2000,
): Promise<Uint8Array | null> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await conn.write(frame(packet));
    const [reply] = await readFrames(conn, 1, timeoutMs);
    return reply ?? null;
  } finally {
    conn.close();
  }
}

/** Counts this process's open file descriptors. */
export function openFds(): number {
  return [...Deno.readDirSync("/proc/self/fd")].length;
}

/** Counts this process's open sockets and pipes. */
export function openSockets(): number {
  let count = 0;
  for (const entry of Deno.readDirSync("/proc/self/fd")) {
    try {
      if (/^(socket|pipe):/.test(Deno.readLinkSync(`/proc/self/fd/${entry.name}`))) count++;
    } catch {
      // Closed while listing (the directory's own descriptor).
    }
  }
  return count;
}

/**
 * Waits up to `timeoutMs` for the count of open sockets and pipes to come back to `expected`
 * (node:dgram closes its sockets a little after `close()` returns), and returns the last count.
 */
export async function settledSockets(expected: number, timeoutMs = 1000): Promise<number> {
  const deadline = performance.now() + timeoutMs;
  let count = openSockets();
  while (count !== expected && performance.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 20));
    count = openSockets();
  }
  return count;
}

/** The message without ID and with TTLs zeroed, as hex, to compare answers. */
export function normalized(bytes: Uint8Array): string {
  const info = parseMessage(bytes);
  const copy = bytes.slice();
  copy[0] = 0;
  copy[1] = 0;
  for (const at of info.ttlOffsets) copy.fill(0, at, at + 4);
  return Array.from(copy, (b) => b.toString(16).padStart(2, "0")).join("");
}
