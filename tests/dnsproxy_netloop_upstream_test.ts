/**
 * The upstream side of the proxy on netloop: every UDP upstream query leaves from its own socket
 * (a fresh random source port, closed after the reply, never reused) with a random ID, replies
 * with a wrong ID are refused, and a silent upstream fails within the timeout (the loop's sweep).
 *
 * @module
 */
import assert from "node:assert/strict";
import dgram from "node:dgram";
import { buildQuery, parseMessage, Rcode, serveDnsOnNetloop } from "@triad/dnsproxy";
import { createLogger } from "@triad/core";
import { ioUring, testWith } from "./requirements.ts";
import { openSockets, queryUdp, settledSockets } from "./dnsproxy_client.ts";

/** What the recording upstream saw of one query. */
interface Seen {
  port: number;
  id: number;
  name: string;
}

/**
 * A UDP upstream on loopback that records the source port and ID of every query and answers
 * `A 10.0.0.1`; names starting with `silent` get nothing, names starting with `spoof` first get a
 * reply with a wrong ID, and while `hold` is set replies wait until it is cleared.
 */
async function recordingUpstream() {
  const socket = dgram.createSocket("udp4");
  await new Promise<void>((resolve) => socket.bind(0, "127.0.0.1", resolve));
  const seen: Seen[] = [];
  let held: (() => void)[] = [];
  const state = { hold: false };
  socket.on("message", (message: Uint8Array, from: { address: string; port: number }) => {
    const query = new Uint8Array(message);
    const info = parseMessage(query);
    const name = info.question!.key;
    seen.push({ port: from.port, id: info.id, name });
    if (name.includes("silent")) return;
    const end = info.question!.end;
    const reply = new Uint8Array(end + 16);
    reply.set(query.subarray(0, end));
    reply[2] = 0x81;
    reply[3] = 0x80;
    reply[7] = 1; // ANCOUNT 1
    reply[10] = 0; // no OPT back
    reply[11] = 0;
    reply.set([0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 0, 0, 1], end);
    const send = () => {
      if (name.includes("spoof")) {
        const wrong = reply.slice();
        wrong[1] = wrong[1]! ^ 0xff;
        socket.send(wrong, from.port, from.address);
      }
      socket.send(reply, from.port, from.address);
    };
    if (state.hold) held.push(send);
    else send();
  });
  return {
    address: `127.0.0.1:${socket.address().port}`,
    seen,
    state,
    release() {
      state.hold = false;
      const waiting = held;
      held = [];
      for (const send of waiting) send();
    },
    close: () => new Promise<void>((resolve) => socket.close(() => resolve())),
  };
}

for (const backend of ["uring", "epoll"] as const) {
  const needs = backend === "uring" ? [ioUring] : [];
  testWith(`serveDnsOnNetloop() on ${backend} asks upstreams safely`, needs, async (t) => {
    const socketsBefore = openSockets();
    const upstream = await recordingUpstream();
    try {
      await using server = await serveDnsOnNetloop(
        { upstream: { upstreams: [upstream.address], healthCheck: 0, timeout: 300, attempts: 1 } },
        { listen: "127.0.0.1:0", backend, loops: 1, logger: createLogger({ level: "error" }) },
      );
      const port = server.address.port;

      await t.step("each query has its own source port, never reused", async () => {
        const before = upstream.seen.length;
        for (let i = 0; i < 20; i++) {
          const reply = await queryUdp(
            port,
            buildQuery({ id: 100 + i, name: `seq${i}.x`, type: 1 }),
          );
          assert.equal(parseMessage(reply!).rcode, Rcode.NOERROR);
          assert.equal(parseMessage(reply!).id, 100 + i);
        }
        const seen = upstream.seen.slice(before);
        assert.equal(seen.length, 20);
        // Sockets are closed after their reply; the kernel picks a fresh random port each time (a
        // repeat of a freed port is possible, rarely: allow one).
        assert.ok(new Set(seen.map((s) => s.port)).size >= 19, `ports ${seen.map((s) => s.port)}`);
        assert.ok(new Set(seen.map((s) => s.id)).size >= 19, "random IDs");
      });

      await t.step("queries in flight together use distinct ports", async () => {
        const before = upstream.seen.length;
        upstream.state.hold = true;
        const answers = Array.from(
          { length: 30 },
          (_, i) => queryUdp(port, buildQuery({ id: i, name: `par${i}.x`, type: 1 }), 2000),
        );
        for (let i = 0; i < 100 && upstream.seen.length - before < 30; i++) {
          await new Promise((resolve) => setTimeout(resolve, 10));
        }
        upstream.release();
        const replies = await Promise.all(answers);
        for (const reply of replies) assert.equal(parseMessage(reply!).rcode, Rcode.NOERROR);
        const ports = upstream.seen.slice(before).map((s) => s.port);
        assert.equal(new Set(ports).size, 30, `ports ${ports}`);
      });

      await t.step("a reply with a wrong ID is refused and counted", async () => {
        const reply = await queryUdp(port, buildQuery({ id: 7, name: "spoof.x", type: 1 }));
        assert.equal(parseMessage(reply!).rcode, Rcode.NOERROR);
        assert.match(
          await server.metrics(),
          /dns_upstream_mismatches_total\{[^}]*reason="id"[^}]*\} [1-9]/,
        );
      });

      await t.step("a silent upstream gives SERVFAIL within the timeout", async () => {
        // The loop's own tick is 1 s; the transport asks for one every 10 ms while a query is in
        // flight. Without that, the second and third queries (each sent just after a sweep)
        // would wait for the next 1 s tick.
        for (let i = 0; i < 3; i++) {
          const started = performance.now();
          const query = buildQuery({ id: 9 + i, name: `silent${i}.x`, type: 1 });
          const reply = await queryUdp(port, query, 3000);
          const elapsed = performance.now() - started;
          assert.equal(parseMessage(reply!).rcode, Rcode.SERVFAIL);
          assert.ok(elapsed >= 250 && elapsed < 700, `answered after ${elapsed.toFixed(0)} ms`);
        }
      });
    } finally {
      await upstream.close();
    }
    assert.equal(await settledSockets(socketsBefore), socketsBefore, "no socket left open");
  });
}
