/**
 * netloop's pool of dialed UDP sockets (both FFI backends keep closed upstream sockets for the next
 * dial): a kept socket loses its port and whatever it had queued, and the next connect gives it a
 * new port, as a new socket would get.
 */
import assert from "node:assert/strict";
import dgram from "node:dgram";
import { E, errno, libc } from "../netloop/_ffi.ts";
import {
  connectDialSocket,
  DialSocketPool,
  openDialSocket,
  socketAddress,
} from "../netloop/_socket.ts";
import { linux, testWith } from "./requirements.ts";
import { pollUntil } from "./wait_for.ts";

const MSG_DONTWAIT = 0x40;

function peer(): Promise<{ socket: dgram.Socket; port: number; received: string[] }> {
  const socket = dgram.createSocket("udp4");
  const received: string[] = [];
  socket.on("message", (m: Uint8Array) => received.push(new TextDecoder().decode(m)));
  return new Promise((resolve) =>
    socket.bind(0, "127.0.0.1", () => resolve({ socket, port: socket.address().port, received }))
  );
}

function send(socket: dgram.Socket, text: string, port: number): Promise<void> {
  return new Promise((resolve, reject) =>
    socket.send(new TextEncoder().encode(text), port, "127.0.0.1", (e) => e ? reject(e) : resolve())
  );
}

/** One datagram read without blocking, or `undefined` when nothing is queued. */
function readNow(fd: number): string | undefined {
  const buffer = new Uint8Array(64);
  const n = libc().recvfrom(fd, buffer, buffer.length, MSG_DONTWAIT, null, null);
  if (n < 0) {
    assert.equal(errno(), E.EAGAIN);
    return undefined;
  }
  return new TextDecoder().decode(buffer.subarray(0, n));
}

/** Bytes (kernel accounting, per datagram the same for these small ones) queued on a port. */
function queued(port: number): number {
  const hex = port.toString(16).toUpperCase().padStart(4, "0");
  for (const line of Deno.readTextFileSync("/proc/net/udp").split("\n").slice(1)) {
    const fields = line.trim().split(/\s+/);
    if (fields[1]?.endsWith(`:${hex}`)) return parseInt(fields[4]!.split(":")[1]!, 16);
  }
  return 0;
}

testWith("a kept dial socket loses its port and what it had queued", [linux], async () => {
  const a = await peer();
  const b = await peer();
  const pool = new DialSocketPool();
  try {
    // A blocking socket, as the uring backend opens them: the drain must not wait.
    const { fd, error } = openDialSocket(
      "udp",
      { family: 4, address: "127.0.0.1", port: a.port },
      false,
      true,
    );
    assert.equal(error, 0);
    const first = socketAddress(fd, "local").port;
    for (const text of ["late 1", "late 2", "late 3"]) await send(a.socket, text, first);
    await pollUntil(() => queued(first) > 0, "a late datagram queued on the dial socket");
    assert.ok(pool.disconnect(fd) && pool.park(fd, 4));
    await send(a.socket, "after", first); // to a port nobody holds now: dropped by the kernel

    assert.equal(pool.take(4), fd);
    assert.equal(pool.take(4), -1);
    assert.equal(connectDialSocket(fd, { family: 4, address: "127.0.0.1", port: b.port }), 0);
    const second = socketAddress(fd, "local").port;
    await send(b.socket, "fresh", second);
    await pollUntil(() => queued(second) > 0, "the fresh datagram on the reconnected socket");
    assert.equal(readNow(fd), "fresh", "nothing from before the disconnect is left");
    assert.equal(readNow(fd), undefined);
    assert.equal(libc().sendto(fd, new Uint8Array([0x68, 0x69]), 2, 0, null, 0), 2);
    await pollUntil(() => b.received.length > 0, "the peer to receive hi");
    assert.deepEqual(b.received, ["hi"]);
    assert.deepEqual(a.received, []);

    assert.ok(pool.disconnect(fd) && pool.park(fd, 4));
    pool.close();
    assert.throws(() => Deno.statSync(`/proc/self/fd/${fd}`), "closed by close()");
  } finally {
    pool.close();
    a.socket.close();
    b.socket.close();
  }
});

testWith(
  "a socket kept unread waits for settle, and drainKept empties or closes it",
  [linux],
  async () => {
    const a = await peer();
    const pool = new DialSocketPool();
    try {
      const open = () => {
        const socket = openDialSocket(
          "udp",
          { family: 4, address: "127.0.0.1", port: a.port },
          true,
          true,
        );
        assert.equal(socket.error, 0);
        return { fd: socket.fd, port: socketAddress(socket.fd, "local").port };
      };
      const one = open();
      await send(a.socket, "late", one.port);
      await pollUntil(() => queued(one.port) > 0, "the late datagram queued");
      const perDatagram = queued(one.port);
      assert.ok(pool.keepUnread(one.fd, 4));
      assert.equal(pool.unsettled, 1);
      assert.equal(pool.take(4), -1, "no dial takes it before a wait has seen it");
      assert.ok(pool.has(one.fd));
      assert.ok(pool.drainKept(one.fd), "one datagram drains");
      assert.equal(readNow(one.fd), undefined);

      // Kept after the wait began: settle() with the count read before it leaves it unsettled.
      const before = pool.unsettled;
      const two = open();
      assert.ok(pool.keepUnread(two.fd, 4));
      pool.settle(before);
      assert.equal(pool.unsettled, 1);
      assert.equal(pool.take(4), one.fd);
      assert.equal(pool.take(4), -1);
      pool.settle(pool.unsettled);
      assert.equal(pool.take(4), two.fd);

      // More than drain() reads at once (64) queued before the disconnect: drainKept closes it.
      assert.equal(connectDialSocket(two.fd, { family: 4, address: "127.0.0.1", port: a.port }), 0);
      const flooded = socketAddress(two.fd, "local").port;
      for (let i = 0; i < 80; i++) await send(a.socket, `flood ${i}`, flooded);
      await pollUntil(
        () => queued(flooded) >= 80 * perDatagram,
        "80 datagrams queued on the flooded socket",
      );
      assert.ok(pool.keepUnread(two.fd, 4));
      const beforeWait = pool.unsettled;
      assert.ok(pool.keepUnread(one.fd, 4)); // kept after the wait began
      assert.equal(pool.drainKept(two.fd), false);
      assert.equal(pool.has(two.fd), false);
      assert.throws(() => Deno.statSync(`/proc/self/fd/${two.fd}`), "closed by drainKept()");
      pool.settle(beforeWait);
      assert.equal(pool.take(4), -1, "the closed one is not given out, nor the one kept later");
      assert.equal(pool.unsettled, 1);

      pool.close();
      assert.throws(() => Deno.statSync(`/proc/self/fd/${one.fd}`), "closed by close()");
    } finally {
      pool.close();
      a.socket.close();
    }
  },
);
