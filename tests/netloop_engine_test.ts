/**
 * The same handler tests on every netloop backend: echo over TCP and UDP, frames split one byte at
 * a time, half-close, peer resets, idle timeout, backpressure against a slow reader, dialing
 * upstreams from a loop, ticks and actions, shutdown with connections open, and no fd left behind.
 */
import assert from "node:assert/strict";
import dgram from "node:dgram";
import { LengthFieldCodec } from "@triad/netloop";
import {
  effectiveCapabilities,
  ffi,
  ioUring,
  linux,
  type Requirement,
  testWith,
} from "./requirements.ts";
import {
  BACKENDS,
  connectSendReset,
  eventually,
  openFds,
  readExactly,
  readToEnd,
  startFixture,
  total,
} from "./netloop_support.ts";
import { writeAndWaitUntilRead } from "./support.ts";
import { pollUntil, waitFor } from "./wait_for.ts";

const encoder = new TextEncoder();
const NEEDS: Record<(typeof BACKENDS)[number], Requirement[]> = {
  portable: [],
  epoll: [linux, ffi],
  uring: [linux, ffi, ioUring],
};

/** Connected UDP sockets (any process, fd or not) whose peer is 127.0.0.1:port. */
function udpSocketsTo(port: number): number {
  const peer = `0100007F:${port.toString(16).toUpperCase().padStart(4, "0")}`;
  return Deno.readTextFileSync("/proc/net/udp").split("\n").filter((line) =>
    line.trim().split(/\s+/)[2] === peer
  ).length;
}

async function connect(port: number): Promise<Deno.TcpConn> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  conn.setNoDelay(true);
  return conn;
}

function pattern(n: number, seed = 0): Uint8Array {
  const bytes = new Uint8Array(n);
  for (let i = 0; i < n; i++) bytes[i] = (i * 31 + seed) & 0xff;
  return bytes;
}

/** The next datagram `socket` receives, as text; rejects after 3 s naming `what`. */
function nextDatagram(socket: dgram.Socket, what: string): Promise<string> {
  return waitFor<string>(
    (fn) => {
      const listener = (m: Uint8Array) => fn(new TextDecoder().decode(m));
      socket.on("message", listener);
      return () => socket.off("message", listener);
    },
    what,
    3000,
  );
}

async function udpExchange(port: number, count: number): Promise<string[]> {
  const socket = dgram.createSocket("udp4");
  const replies: string[] = [];
  const done = new Promise<void>((resolve) => {
    socket.on("message", (message: Uint8Array) => {
      replies.push(new TextDecoder().decode(message));
      if (replies.length === count) resolve();
    });
  });
  await new Promise<void>((resolve) => socket.bind(0, "127.0.0.1", () => resolve()));
  for (let i = 0; i < count; i++) socket.send(encoder.encode(`datagram ${i}`), port, "127.0.0.1");
  await Promise.race([done, new Promise((r) => setTimeout(r, 3000))]);
  await new Promise<void>((resolve) => socket.close(() => resolve()));
  return replies.sort();
}

/** The upstream's answer to the marker datagram: a number no dial sent. */
const MARKER = new Uint8Array([0xff, 0xff]);

for (const backend of BACKENDS) {
  testWith(`serve() on ${backend} passes the handler tests`, NEEDS[backend], async (t) => {
    // Deno keeps one Worker runtime's eventfd/epoll pair around after a Worker ends; a first
    // engine makes that steady state before the snapshot.
    await (await startFixture("portable", { mode: "echo" })).engine.stop();
    const before = openFds();

    await t.step("serve() echoes TCP bytes in order", async () => {
      await using fixture = await startFixture(backend, { mode: "echo" });
      const conn = await connect(fixture.port);
      const sent = pattern(100_000);
      const [, echoed] = await Promise.all([conn.write(sent), readExactly(conn, sent.length)]);
      assert.deepEqual(echoed, sent);
      conn.close();
      assert.equal(fixture.engine.backend, backend);
    });

    await t.step("what promise callbacks write leaves before the loop waits", async () => {
      // The loop would otherwise block in the kernel with the write queued behind it, until the
      // next event or its longest block (50 ms): every exchange would take about 50 ms.
      await using fixture = await startFixture(backend, { mode: "later" });
      const conn = await connect(fixture.port);
      const took: number[] = [];
      for (let i = 0; i < 21; i++) {
        const started = performance.now();
        await conn.write(new Uint8Array([i]));
        assert.deepEqual([...await readExactly(conn, 1)], [i]);
        took.push(performance.now() - started);
      }
      conn.close();
      const median = took.toSorted((a, b) => a - b)[10]!;
      assert.ok(median < 25, `the median exchange took ${median.toFixed(1)} ms`);
    });

    await t.step("serve() listens on IPv6", async () => {
      await using fixture = await startFixture(backend, { mode: "echo" }, { hostname: "::1" });
      assert.deepEqual(
        { family: fixture.engine.address.family, address: fixture.engine.address.address },
        { family: 6, address: "::1" },
      );
      const conn = await Deno.connect({ hostname: "::1", port: fixture.port });
      await conn.write(encoder.encode("v6"));
      assert.equal(new TextDecoder().decode(await readExactly(conn, 2)), "v6");
      conn.close();
    });

    await t.step("Conn knows both ends, over TCP and UDP", async () => {
      await using tcp = await startFixture(backend, { mode: "whoami" });
      const conn = await connect(tcp.port);
      await conn.write(encoder.encode("?"));
      const buffer = new Uint8Array(128);
      const n = await conn.read(buffer);
      const reply = new TextDecoder().decode(buffer.subarray(0, n ?? 0)).split(" ");
      const local = conn.localAddr as Deno.NetAddr;
      assert.deepEqual(reply, ["127.0.0.1", String(local.port), "127.0.0.1", String(tcp.port)]);
      conn.close();
      await using udp = await startFixture(backend, { mode: "whoami" }, { network: "udp" });
      const socket = dgram.createSocket("udp4");
      await new Promise<void>((resolve) => socket.bind(0, "127.0.0.1", () => resolve()));
      const answer = nextDatagram(socket, "the UDP whoami reply");
      socket.send(encoder.encode("?"), udp.port, "127.0.0.1");
      assert.deepEqual(
        (await answer).split(" "),
        ["127.0.0.1", String(socket.address().port), "127.0.0.1", String(udp.port)],
      );
      await new Promise<void>((resolve) => socket.close(() => resolve()));
    });

    await t.step("UDP over IPv4 and IPv6: each sender is told apart", async () => {
      for (const [hostname, type] of [["127.0.0.1", "udp4"], ["::1", "udp6"]] as const) {
        await using udp = await startFixture(backend, { mode: "whoami" }, {
          network: "udp",
          hostname,
        });
        // Senders alternate so that a reply to the wrong one (a stale remembered peer) shows.
        const sockets = [0, 1, 2].map(() => dgram.createSocket(type));
        for (const socket of sockets) {
          await new Promise<void>((resolve) => socket.bind(0, hostname, () => resolve()));
        }
        for (let round = 0; round < 3; round++) {
          for (const socket of sockets) {
            const answer = nextDatagram(socket, `the reply to ${hostname} sender ${round}`);
            socket.send(encoder.encode("?"), udp.port, hostname);
            assert.deepEqual((await answer).split(" "), [
              hostname,
              String(socket.address().port),
              hostname,
              String(udp.port),
            ]);
          }
        }
        for (const socket of sockets) {
          await new Promise<void>((resolve) => socket.close(() => resolve()));
        }
      }
    });

    await t.step("serve() answers each UDP datagram to its sender", async () => {
      await using fixture = await startFixture(backend, { mode: "echo" }, { network: "udp" });
      const replies = await udpExchange(fixture.port, 50);
      assert.equal(replies.length, 50);
      assert.ok(replies.includes("datagram 0") && replies.includes("datagram 49"));
    });

    await t.step(
      "UDP replies come from the listener's address, to many senders, one loop or two",
      async () => {
        for (
          const [loops, hostname, type] of [[1, "127.0.0.1", "udp4"], [2, "127.0.0.1", "udp4"], [
            1,
            "::1",
            "udp6",
          ]] as const
        ) {
          await using fixture = await startFixture(backend, { mode: "echo" }, {
            network: "udp",
            hostname,
            loops,
          });
          // The epoll and uring loops send from a second socket connected to the listener's address:
          // none of these senders' datagrams may end up there, whichever loop they are spread to.
          if (hostname === "127.0.0.1") {
            assert.equal(udpSocketsTo(fixture.port), backend === "portable" ? 0 : loops);
          }
          const sockets = Array.from({ length: 40 }, () => dgram.createSocket(type));
          const replies: string[] = [];
          const wrongSource: string[] = [];
          const done = Promise.withResolvers<void>();
          for (const socket of sockets) {
            socket.on("message", (message: Uint8Array, from: dgram.RemoteInfo) => {
              if (from.port !== fixture.port || from.address !== hostname) {
                wrongSource.push(`${from.address}:${from.port}`);
              }
              replies.push(new TextDecoder().decode(message));
              if (replies.length === 120) done.resolve();
            });
            await new Promise<void>((resolve) => socket.bind(0, hostname, () => resolve()));
          }
          for (let i = 0; i < 120; i++) {
            sockets[i % 40]!.send(encoder.encode(`d${i}`), fixture.port, hostname);
          }
          const timer = setTimeout(() => done.resolve(), 3000);
          await done.promise;
          clearTimeout(timer);
          for (const socket of sockets) await new Promise<void>((r) => socket.close(() => r()));
          assert.equal(replies.length, 120, `${loops} loop(s) on ${hostname}: replies`);
          assert.deepEqual(wrongSource, []);
        }
      },
    );

    if (backend !== "portable") {
      await t.step("a UDP listener gets the socket buffers asked for", async () => {
        const asked = 3 << 20;
        await using fixture = await startFixture(backend, { mode: "echo" }, {
          network: "udp",
          socketBuffer: asked,
        });
        const { stdout } = await new Deno.Command("ss", {
          args: ["-u", "-l", "-n", "-m", `sport = :${fixture.port}`],
        }).output();
        const text = new TextDecoder().decode(stdout);
        const rb = Number(/rb(\d+)/.exec(text)?.[1]);
        const tb = Number(/tb(\d+)/.exec(text)?.[1]);
        // The kernel doubles what is set (bookkeeping overhead); without CAP_NET_ADMIN it caps
        // the size at net.core.rmem_max / wmem_max.
        const cap = (name: string) =>
          Number(Deno.readTextFileSync(`/proc/sys/net/core/${name}`).trim()) * 2;
        const privileged = effectiveCapabilities().has("CAP_NET_ADMIN");
        assert.equal(rb, privileged ? asked * 2 : Math.min(asked * 2, cap("rmem_max")), text);
        assert.equal(tb, privileged ? asked * 2 : Math.min(asked * 2, cap("wmem_max")), text);
      });
    }

    await t.step("loop.now is the clock of the turn that runs the handler", async () => {
      await using fixture = await startFixture(backend, { mode: "clock" });
      const conn = await connect(fixture.port);
      const ask = async () => {
        await conn.write(encoder.encode("?"));
        const buffer = new Uint8Array(100);
        const n = (await conn.read(buffer))!;
        const [now, real] = new TextDecoder().decode(buffer.subarray(0, n)).split(" ").map(Number);
        return { now: now!, real: real! };
      };
      const first = await ask();
      await new Promise((resolve) => setTimeout(resolve, 120));
      const second = await ask();
      conn.close();
      for (const { now, real } of [first, second]) {
        assert.ok(now <= real && real - now < 50, `loop.now ${now}, performance.now() ${real}`);
      }
      assert.ok(
        second.now - first.now >= 100,
        `${second.now - first.now} ms between turns 120 ms apart`,
      );
    });

    await t.step("LengthFieldCodec decodes frames sent one byte at a time", async () => {
      await using fixture = await startFixture(backend, { mode: "frames" });
      const codec = new LengthFieldCodec();
      const frames = Array.from({ length: 12 }, (_, i) => pattern(i * 37 + 1, i));
      const wire = new Uint8Array(frames.reduce((n, f) => n + f.length + 2, 0));
      let at = 0;
      for (const frame of frames) {
        wire.set(codec.encode(frame), at);
        at += frame.length + 2;
      }
      // One byte per write; the server reads each frame in parts it is sure to read apart:
      // inside the length prefix, inside the body, the rest.
      const splits = new Set<number>();
      for (let i = 0, start = 0; i < frames.length; start += frames[i]!.length + 2, i++) {
        splits.add(start).add(start + 2 + (frames[i]!.length >> 1));
      }
      const conn = await connect(fixture.port);
      const reading = readExactly(conn, wire.length);
      for (let i = 0; i < wire.length; i++) {
        if (splits.has(i)) await writeAndWaitUntilRead(conn, wire.subarray(i, i + 1));
        else await conn.write(wire.subarray(i, i + 1));
      }
      assert.deepEqual(await reading, wire);
      conn.close();
    });

    await t.step("a half-closed peer still gets its reply, then EOF", async () => {
      await using fixture = await startFixture(backend, { mode: "echo" });
      const conn = await connect(fixture.port);
      await conn.write(encoder.encode("last words"));
      await conn.closeWrite();
      const reply = await readExactly(conn, 10);
      assert.equal(new TextDecoder().decode(reply), "last words");
      assert.deepEqual(await readToEnd(conn), { bytes: 0, eof: true });
      conn.close();
      const stats = await fixture.stats();
      assert.ok(await eventually(async () => total(await fixture.stats(), "open") === 0));
      assert.equal(stats.length, 1);
    });

    await t.step("a peer reset closes that connection and no other", async () => {
      await using fixture = await startFixture(backend, { mode: "echo" });
      const survivor = await connect(fixture.port);
      for (let i = 0; i < 20; i++) connectSendReset(fixture.port, encoder.encode("boom"));
      // A reset that lands before accept completes never reaches onOpen; every one that did
      // must reach onClose.
      assert.ok(
        await eventually(async () => {
          const stats = await fixture.stats();
          return total(stats, "open") === 1 &&
            total(stats, "opens") === total(stats, "closes") + 1;
        }),
        JSON.stringify(await fixture.stats()),
      );
      const late = await connect(fixture.port);
      await late.write(encoder.encode("ping"));
      assert.equal(new TextDecoder().decode(await readExactly(late, 4)), "ping");
      late.close();
      await survivor.write(encoder.encode("still here"));
      assert.equal(new TextDecoder().decode(await readExactly(survivor, 10)), "still here");
      survivor.close();
    });

    await t.step("a reset after the handler closed ends it without an error", async () => {
      await using fixture = await startFixture(backend, { mode: "quit" });
      // The handler queues 4 MiB and closes; the client reads a little of it and resets, so the
      // loop is still sending when the reset arrives.
      connectSendReset(fixture.port, encoder.encode("flood"), 1024);
      assert.ok(
        await eventually(async () => total(await fixture.stats(), "closes") === 1),
        JSON.stringify(await fixture.stats()),
      );
      const errors = () =>
        fixture.stats().then((stats) => stats.flatMap((s) => Object.entries(s.closeErrors)));
      assert.deepEqual(await errors(), [["none", 1]]);
      // A reset of a connection the handler keeps open still reports the error.
      connectSendReset(fixture.port, encoder.encode("hello"), 5);
      assert.ok(
        await eventually(async () => total(await fixture.stats(), "closes") === 2),
        JSON.stringify(await fixture.stats()),
      );
      const after = await errors();
      assert.equal(after.length, 2, JSON.stringify(after));
      assert.ok(after.some(([code]) => code !== "none"), JSON.stringify(after));
    });

    await t.step("idleTimeout closes a silent connection", async () => {
      await using fixture = await startFixture(backend, { mode: "echo" }, { idleTimeout: "150ms" });
      const conn = await connect(fixture.port);
      const started = Date.now();
      const end = await readToEnd(conn, 3000);
      assert.equal(end.bytes, 0);
      assert.ok(Date.now() - started >= 100, "closed too early");
      conn.close();
      const stats = await fixture.stats();
      assert.equal(stats[0]!.closeErrors.idle_timeout, 1);
    });

    await t.step("maxWriteBuffer bounds memory against a slow reader", async () => {
      const maxWriteBuffer = 64 * 1024;
      const readBufferSize = 16 * 1024;
      await using fixture = await startFixture(backend, { mode: "echo" }, {
        maxWriteBuffer,
        readBufferSize,
      });
      const conn = await connect(fixture.port);
      const size = 16 * 1024 * 1024;
      const sent = pattern(size, 7);
      const writing = conn.write(sent).then(async function more(n): Promise<void> {
        if (n < size) return void (await more(n + await conn.write(sent.subarray(n))));
      });
      await new Promise((r) => setTimeout(r, 400)); // the reader is asleep
      const stalled = await fixture.stats();
      const reading = performance.now();
      const echoed = await readExactly(conn, size);
      await writing;
      assert.equal(echoed.length, size);
      // Once the reader reads, the rest flows: 0.7 s here, 94 s when the uring loop waited for
      // its block's timeout after each paused connection's send (up to 1 s once it thought
      // itself idle); 30 s leaves room for a guest that runs 12x slower.
      const drained = performance.now() - reading;
      assert.ok(drained < 30_000, `the reader waited ${Math.round(drained)} ms for 16 MiB`);
      assert.ok(echoed.every((b, i) => b === sent[i]), "echo corrupted");
      const peak = (await fixture.stats())[0]!.maxOutbound;
      assert.ok(
        peak <= maxWriteBuffer + 8 * readBufferSize,
        `outbound peaked at ${peak} bytes while the reader slept (limit ${maxWriteBuffer})`,
      );
      assert.ok(stalled[0]!.maxOutbound > 0);
      conn.close();
    });

    await t.step("a loop dials TCP and UDP upstreams", async () => {
      // Upstreams: a TCP echo (frames come back as they went) and a UDP echo.
      const tcpUpstream = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      const serving = (async () => {
        for await (const c of tcpUpstream) {
          (async () => {
            try {
              await c.readable.pipeTo(c.writable);
            } catch { /* closed */ }
          })();
        }
      })();
      const udpUpstream = dgram.createSocket("udp4");
      udpUpstream.on(
        "message",
        (m: Uint8Array, r: dgram.RemoteInfo) => udpUpstream.send(m, r.port, r.address),
      );
      await new Promise<void>((resolve) => udpUpstream.bind(0, "127.0.0.1", () => resolve()));
      const codec = new LengthFieldCodec();
      try {
        for (const network of ["tcp", "udp"] as const) {
          const port = network === "tcp"
            ? (tcpUpstream.addr as Deno.NetAddr).port
            : udpUpstream.address().port;
          await using fixture = await startFixture(backend, {
            mode: "proxy",
            upstream: { network, address: `127.0.0.1:${port}` },
          });
          const conn = await connect(fixture.port);
          const frames = [pattern(10, 1), pattern(300, 2), pattern(1, 3)];
          for (const frame of frames) await conn.write(codec.encode(frame));
          const expected = frames.reduce((n, f) => n + f.length + 2, 0);
          const got = await readExactly(conn, expected);
          assert.equal(got.length, expected, `${network}: short reply`);
          assert.deepEqual(got.subarray(2, 12), frames[0]);
          conn.close();
        }
      } finally {
        tcpUpstream.close();
        await serving.catch(() => {});
        await new Promise<void>((resolve) => udpUpstream.close(() => resolve()));
      }
    });

    await t.step("dialed UDP sockets are released when closed", async () => {
      const upstream = dgram.createSocket("udp4");
      upstream.on("message", (m: Uint8Array, r: dgram.RemoteInfo) => {
        upstream.send(m, r.port, r.address);
      });
      await new Promise<void>((resolve) => upstream.bind(0, "127.0.0.1", () => resolve()));
      const port = upstream.address().port;
      try {
        await using fixture = await startFixture(backend, {
          mode: "dial-per-byte",
          upstream: { network: "udp", address: `127.0.0.1:${port}` },
        });
        const conn = await connect(fixture.port);
        for (let round = 0; round < 5; round++) {
          await conn.write(new Uint8Array(100));
          assert.equal((await readExactly(conn, 100)).length, 100);
        }
        conn.close();
        assert.ok(
          await eventually(() => udpSocketsTo(port) === 0, 2000),
          `${udpSocketsTo(port)} connected UDP sockets to the upstream are still alive`,
        );
      } finally {
        await new Promise<void>((resolve) => upstream.close(() => resolve()));
      }
    });

    for (const host of ["127.0.0.1", "::1"]) {
      await t.step(
        `every UDP dial to ${host} gets a new random port; late replies reach nothing`,
        async () => {
          // The upstream answers each datagram three times, twice at once and again 20 ms later: a
          // dial reads one reply and closes, and neither the copy still queued on its socket nor
          // the late one may reach whichever dial holds that socket next (the loop may keep it).
          // The 251st datagram is a marker, answered once with a number no dial sent (the dial
          // answers 0): sent after every late copy, it is the barrier the check for extra replies
          // waits for.
          const ports: number[] = [];
          let lateSent = 0;
          const upstream = dgram.createSocket(host === "::1" ? "udp6" : "udp4");
          upstream.on("message", (m: Uint8Array, r: dgram.RemoteInfo) => {
            ports.push(r.port);
            if (ports.length > 250) return void upstream.send(MARKER, r.port, r.address);
            upstream.send(m, r.port, r.address);
            upstream.send(m, r.port, r.address);
            setTimeout(() => upstream.send(m, r.port, r.address, () => lateSent++), 20);
          });
          await new Promise<void>((resolve) => upstream.bind(0, host, () => resolve()));
          try {
            await using fixture = await startFixture(backend, {
              mode: "dial-per-byte",
              upstream: {
                network: "udp",
                address: host === "::1"
                  ? `[::1]:${upstream.address().port}`
                  : `127.0.0.1:${upstream.address().port}`,
              },
            });
            const conn = await connect(fixture.port);
            for (let round = 0; round < 5; round++) {
              await conn.write(new Uint8Array(50));
              const answers = await readExactly(conn, 50);
              assert.equal(
                answers.filter((a) => a === 1).length,
                50,
                "dials that read another's reply",
              );
              // The next round starts once this round's late copies are out.
              await pollUntil(() => lateSent === 50 * (round + 1), `round ${round}'s late copies`);
            }
            await conn.write(new Uint8Array(1));
            const marker = await readExactly(conn, 1);
            assert.deepEqual([...marker], [0], "a reply to a late datagram came before the marker");
            conn.close();
            assert.equal(ports.length, 251);
            ports.pop();
            // 250 draws from the ephemeral range (28,232 ports) repeat a few times at random.
            const distinct = new Set(ports).size;
            assert.ok(distinct >= 235, `only ${distinct} distinct source ports in 250 dials`);
          } finally {
            await new Promise<void>((resolve) => upstream.close(() => resolve()));
          }
        },
      );
    }

    await t.step("a loop that dials a closed port reports the error to onClose", async () => {
      const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      const closedPort = (probe.addr as Deno.NetAddr).port;
      probe.close();
      await using fixture = await startFixture(backend, {
        mode: "proxy",
        upstream: { network: "tcp", address: `127.0.0.1:${closedPort}` },
      });
      const conn = await connect(fixture.port);
      await conn.write(new LengthFieldCodec().encode(pattern(4)));
      assert.ok(
        await eventually(async () => {
          const errors = (await fixture.stats())[0]!.closeErrors;
          return Object.keys(errors).some((k) => k.startsWith("upstream:"));
        }),
      );
      conn.close();
    });

    // (portable: node:dgram reports no ICMP error on a connected socket)
    await t.step({
      name: "a dialed UDP socket whose peer is gone ends with the error",
      ignore: backend === "portable",
      fn: async () => {
        // Datagrams to a dialed socket go out in the handler's call (no copy kept for the flush);
        // the ICMP port unreachable the first one draws must still end the connection.
        const probe = dgram.createSocket("udp4");
        await new Promise<void>((resolve) => probe.bind(0, "127.0.0.1", resolve));
        const closedPort = probe.address().port;
        await new Promise<void>((resolve) => probe.close(() => resolve()));
        await using fixture = await startFixture(backend, {
          mode: "proxy",
          upstream: { network: "udp", address: `127.0.0.1:${closedPort}` },
        });
        const conn = await connect(fixture.port);
        const ended = async () => {
          const errors = (await fixture.stats())[0]!.closeErrors;
          return Object.keys(errors).some((k) =>
            k.startsWith("upstream:") && k !== "upstream:none"
          );
        };
        // (a few frames: the error may come back on the next send or on the socket's receive)
        for (let i = 0; i < 20 && !(await ended()); i++) {
          await conn.write(new LengthFieldCodec().encode(pattern(4)));
          await eventually(ended, 100);
        }
        assert.ok(await ended(), JSON.stringify((await fixture.stats())[0]!.closeErrors));
        conn.close();
      },
    });

    await t.step("onTick runs every tick and Action.Shutdown stops the engine", async () => {
      await using fixture = await startFixture(backend, { mode: "quit" }, { tick: 20 });
      await pollUntil(async () => (await fixture.stats())[0]!.ticks >= 4, "4 ticks of 20 ms");
      const conn = await connect(fixture.port);
      await conn.write(encoder.encode("close"));
      assert.deepEqual(await readToEnd(conn), { bytes: 0, eof: true });
      conn.close();
      const other = await connect(fixture.port);
      await other.write(encoder.encode("quit"));
      const done = await Promise.race([
        fixture.engine.done.then(() => "done"),
        new Promise((r) => setTimeout(() => r("timeout"), 5000)),
      ]);
      assert.equal(done, "done");
      other.close();
    });

    await t.step("loop.tickWithin() brings the next tick forward", async () => {
      await using fixture = await startFixture(backend, { mode: "quit" }, { tick: 60_000 });
      const conn = await connect(fixture.port);
      // Each tick asked for is the barrier: the count when it comes says no tick came before it.
      const soon = async (within: number) => {
        await conn.write(encoder.encode(`soon ${within}`));
        const buffer = new Uint8Array(64);
        const n = (await conn.read(buffer))!;
        const [ticks, now] = new TextDecoder().decode(buffer.subarray(0, n)).split(" ");
        return { ticks: Number(ticks), now: Number(now) };
      };
      const tick = async (count: number) => {
        await pollUntil(async () => (await fixture.stats())[0]!.ticks >= count, `tick ${count}`);
        const stats = (await fixture.stats())[0]!;
        assert.equal(stats.ticks, count, `tick ${count} is the one asked for, and no other came`);
        return stats.tickTimes[count - 1]!;
      };
      const first = await soon(300);
      assert.equal(first.ticks, 0, "no tick before the first request");
      assert.ok((await tick(1)) >= first.now + 300, "none of its own in the 300 ms before");
      const second = await soon(20);
      assert.equal(second.ticks, 1);
      assert.ok((await tick(2)) >= second.now + 20, "one tick, 20 ms after it was asked for");
      const third = await soon(300);
      assert.equal(third.ticks, 2);
      assert.ok(
        (await tick(3)) >= third.now + 300,
        "then none in the next 300 ms: the regular tick is a minute away",
      );
      conn.close();
    });

    await t.step("stop() closes open connections and returns", async () => {
      const fixture = await startFixture(backend, { mode: "echo" });
      const conns = await Promise.all(Array.from({ length: 20 }, () => connect(fixture.port)));
      for (const c of conns) await c.write(encoder.encode("x"));
      for (const c of conns) assert.equal((await readExactly(c, 1)).length, 1);
      const started = Date.now();
      await fixture.engine.stop();
      assert.ok(Date.now() - started < 3000, "stop() took too long");
      const ends = await Promise.all(conns.map((c) => readToEnd(c, 3000)));
      assert.ok(ends.every((e) => e.bytes === 0));
      for (const c of conns) c.close();
    });

    await t.step("nothing is left in /proc/self/fd after stop()", async () => {
      const settled = await eventually(() => {
        const after = openFds();
        const added = [...after].filter((fd) => !before.has(fd));
        return after.size <= before.size && !added.some((fd) => /socket|io_uring/.test(fd));
      }, 3000);
      const after = openFds();
      assert.ok(
        settled,
        `${before.size} fds before, ${after.size} after; new: ${
          [...after].filter((fd) => !before.has(fd)).join(", ")
        }`,
      );
    });
  });
}

for (const backend of ["epoll", "uring"] as const) {
  testWith(
    `serve() on ${backend} grows the descriptor table before the loop runs`,
    NEEDS[backend],
    async () => {
      // Each doubling of the table under load waits for an RCU grace period (several ms) inside
      // a socket() or accept4() of the loop: the table is made large at the start instead.
      const { stdout, success } = await new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "-A",
          new URL("./netloop_fd_table_child.ts", import.meta.url).pathname,
          backend,
        ],
        stdout: "piped",
        stderr: "inherit",
      }).output();
      assert.ok(success, "the child failed");
      const { before, after, limit } = JSON.parse(new TextDecoder().decode(stdout)) as {
        before: number;
        after: number;
        limit: number;
      };
      let expected = 8192;
      while (expected > limit) expected /= 2;
      assert.ok(before < expected, `the table already had ${before} slots: nothing to show`);
      assert.equal(after, expected, `FDSize ${after} after serve(), wanted ${expected}`);
    },
  );
}
