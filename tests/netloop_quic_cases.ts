/**
 * QUIC cases, run by netloop_quic_test.ts under `deno test -A --unstable-net` (Deno's QUIC API is
 * unstable): echo on a stream, streams opened by the server, identity, congestion controllers,
 * 0-RTT.
 *
 * @module
 */
import assert from "node:assert/strict";
import {
  type Conn,
  denoQuicTransport,
  type QuicDialOptions,
  type QuicServer,
  type QuicSession,
  type QuicTransport,
} from "@triad/netloop";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const dir = Deno.env.get("NETLOOP_QUIC_CERTS")!;
const cert = Deno.readTextFileSync(`${dir}/server.pem`);
const key = Deno.readTextFileSync(`${dir}/server.key`);
const ca = Deno.readTextFileSync(`${dir}/ca.pem`);

const echo = {
  onTraffic(conn: Conn) {
    conn.write(conn.next());
  },
};

/** Connects to `server` as `localhost`, trusting the test CA. */
function connect(
  quic: QuicTransport,
  server: QuicServer,
  extra: Partial<QuicDialOptions> = {},
): Promise<QuicSession> {
  return quic.connect({
    hostname: "127.0.0.1",
    port: server.address.port,
    serverName: "localhost",
    ca,
    alpn: ["echo"],
    ...extra,
  });
}

/** Opens a stream, sends `text`, finishes, and resolves with everything the peer sent back. */
function roundTrip(open: (h: object) => Promise<Conn>, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let got = "";
    open({
      onTraffic(conn: Conn) {
        got += decoder.decode(conn.next());
      },
      onClose(_conn: Conn, error?: Error) {
        if (error) reject(error);
        else resolve(got);
      },
    }).then((conn) => {
      conn.write(encoder.encode(text));
      conn.close();
    }, reject);
  });
}

for (const congestionControl of ["default", "throughput", "low-latency"] as const) {
  Deno.test(`quic: echo on a stream, identity (${congestionControl})`, async () => {
    const quic = denoQuicTransport();
    const server: QuicServer = await quic.serve(echo, {
      cert,
      key,
      alpn: ["echo"],
      congestionControl,
    });
    try {
      const session = await connect(quic, server, { congestionControl });
      assert.equal(session.alpn, "echo");
      assert.match(session.id, /^quic-\d+$/);
      assert.equal(session.remoteAddress.port, server.address.port);
      assert.equal(await roundTrip((h) => session.openStream(h), "hello quic"), "hello quic");
      const big = "y".repeat(300_000);
      assert.equal((await roundTrip((h) => session.openStream(h), big)).length, big.length);
      assert.equal(server.sessions.size, 1);
      const [serverSide] = [...server.sessions];
      assert.equal(serverSide!.alpn, "echo");
      assert.notEqual(serverSide!.id, session.id);
      session.close();
    } finally {
      await server.stop();
      quic.close();
    }
  });
}

Deno.test("quic: a stream the server opens is accepted by the client", async () => {
  const quic = denoQuicTransport();
  const server = await quic.serve(echo, { cert, key, alpn: ["echo"] });
  try {
    const session = await connect(quic, server);
    const pushed = new Promise<string>((resolve) => {
      void session.acceptStreams({
        onTraffic(conn: Conn) {
          const text = decoder.decode(conn.next());
          resolve(text);
          conn.write(encoder.encode(`ack ${text}`));
          conn.close();
        },
      });
    });
    await roundTrip((h) => session.openStream(h), "first"); // the server knows the session now
    const [serverSide] = [...server.sessions];
    const ack = await roundTrip((h) => serverSide!.openStream(h), "push");
    assert.equal(await pushed, "push");
    assert.equal(ack, "ack push");
    session.close();
  } finally {
    await server.stop();
    quic.close();
  }
});

Deno.test("quic: a second connection resumes with 0-RTT", async () => {
  const quic = denoQuicTransport();
  const server = await quic.serve(echo, { cert, key, alpn: ["echo"], zeroRtt: true });
  try {
    const first = await connect(quic, server, { zeroRtt: true });
    assert.equal(first.zeroRtt, false);
    assert.equal(await roundTrip((h) => first.openStream(h), "one"), "one");
    first.close();
    await first.closed;
    const second = await connect(quic, server, { zeroRtt: true });
    assert.equal(second.zeroRtt, true);
    assert.equal(await roundTrip((h) => second.openStream(h), "two"), "two");
    second.close();
  } finally {
    await server.stop();
    quic.close();
  }
});

Deno.test("quic: deno task echo --quic serves the echo on QUIC streams", async () => {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--unstable-net",
      new URL("../netloop/examples/echo.ts", import.meta.url).pathname,
      ...["--port", "0", "--backend", "epoll", "--loops", "1", "--quic"],
      ...["--tls-cert", `${dir}/server.pem`, "--tls-key", `${dir}/server.key`],
    ],
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const quic = denoQuicTransport();
  try {
    const reader = child.stdout.getReader();
    let banner = "";
    while (!banner.includes("echo (quic)")) {
      const next = await reader.read();
      if (next.done) throw new Error(`echo ended: ${banner}`);
      banner += decoder.decode(next.value);
    }
    reader.releaseLock();
    const port = Number(/echo \(quic\) on [^ ]+:(\d+)/.exec(banner)![1]);
    const session = await quic.connect({
      hostname: "127.0.0.1",
      port,
      serverName: "localhost",
      ca,
      alpn: ["echo"],
    });
    assert.equal(await roundTrip((h) => session.openStream(h), "over quic"), "over quic");
    session.close();
  } finally {
    quic.close();
    child.kill("SIGTERM");
    await child.status;
    await child.stdout.cancel().catch(() => {});
  }
});
