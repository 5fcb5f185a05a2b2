/**
 * A minimal DNS client for the dnsproxy tests: one query over UDP or TCP, with a timeout.
 *
 * @module
 */
import dgram from "node:dgram";
import assert from "node:assert/strict";
import { buildQuery, parseMessage } from "@triad/dnsproxy";
import { encodeBase64Url } from "../dnsproxy/frontend/https.ts";

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

/**
 * One read that gives up at `deadline` (a `performance.now()` time).
 *
 * @returns The bytes read, `null` at the end (or an error), `"timeout"` past the deadline.
 */
export async function readBefore(
  conn: Deno.Conn,
  buffer: Uint8Array,
  deadline: number,
): Promise<number | null | "timeout"> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const n = await Promise.race([
    conn.read(buffer).catch(() => null),
    new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), Math.max(1, deadline - performance.now()));
    }),
  ]);
  clearTimeout(timer);
  return n;
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
    const n = await readBefore(conn, chunk, deadline);
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

/**
 * Checks a DoH server (RFC 8484) with Deno's fetch, over HTTP/2 and HTTP/1.1: GET and POST answer
 * `a.test` (two A records behind the tests' unbound) with Cache-Control from the lowest TTL; a
 * padded or non-base64url `dns`, a message shorter than a header, no parameter (400), another
 * content type (415), a body over 64 KiB (413), another path (404) and another method (405) get
 * their status; and the server still answers after all that.
 */
export async function checkDohStatuses(base: string, ca: string): Promise<void> {
  using client = Deno.createHttpClient({ caCerts: [ca] });
  const query = buildQuery({ id: 0, name: "a.test.", type: 1 }) as Uint8Array<ArrayBuffer>;
  const get = await fetch(`${base}?dns=${encodeBase64Url(query)}`, { client });
  assert.equal(get.status, 200);
  assert.equal(get.headers.get("content-type"), "application/dns-message");
  const answer = new Uint8Array(await get.arrayBuffer());
  assert.equal(parseMessage(answer).counts[1], 2);
  assert.match(get.headers.get("cache-control")!, /^max-age=(300|29\d)$/);
  const post = await fetch(base, {
    client,
    method: "POST",
    headers: { "content-type": "application/dns-message" },
    body: query,
  });
  assert.equal(post.status, 200);
  assert.equal(parseMessage(new Uint8Array(await post.arrayBuffer())).counts[1], 2);
  const statuses: [string, RequestInit, number][] = [
    [`${base}?dns=${encodeBase64Url(query)}==`, {}, 400], // padding
    [`${base}?dns=AA*A`, {}, 400], // not base64url
    [`${base}?dns=AAAA`, {}, 400], // shorter than a header
    [base, {}, 400], // no parameter
    [base, { method: "POST", headers: { "content-type": "text/plain" }, body: query }, 415],
    [base, {
      method: "POST",
      headers: { "content-type": "application/dns-message" },
      body: new Uint8Array(70_000),
    }, 413],
    [`${base.replace("/dns-query", "/other")}?dns=${encodeBase64Url(query)}`, {}, 404],
    [base, { method: "PUT", body: query }, 405],
  ];
  for (const [url, init, status] of statuses) {
    const response = await fetch(url, { ...init, client });
    await response.body?.cancel();
    assert.equal(response.status, status, `${init.method ?? "GET"} ${url}`);
  }
  // HTTP/1.1 as well as HTTP/2.
  using http1 = Deno.createHttpClient({ caCerts: [ca], http2: false, http1: true });
  const old = await fetch(`${base}?dns=${encodeBase64Url(query)}`, { client: http1 });
  assert.equal(old.status, 200);
  assert.equal(parseMessage(new Uint8Array(await old.arrayBuffer())).counts[1], 2);
  // Still answering after all that.
  const again = await fetch(`${base}?dns=${encodeBase64Url(query)}`, { client });
  assert.equal(again.status, 200);
  await again.body?.cancel();
}
