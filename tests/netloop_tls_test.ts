/**
 * TLS on the loop against real peers: `Deno.connectTls` and `openssl s_client` as clients,
 * `openssl s_server` as the server a loop dials; ALPN agreed and refused, resumption, 0-RTT
 * accepted and refused, certificate reload, bad input (garbage, stalls, resets, oversized
 * records), 1,000 concurrent connections per backend, nothing left after stop.
 */
import assert from "node:assert/strict";
import { createLogger } from "@triad/core";
import { type Engine, type NetloopError, serve, type ServeOptions } from "@triad/netloop";
import {
  command,
  ffi,
  fullSpeed,
  ioUring,
  linux,
  type Requirement,
  testWith,
} from "./requirements.ts";
import { eventually, openFds } from "./netloop_support.ts";
import { makeTestCerts } from "./tls_certs.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const HANDLER = new URL("./netloop_tls_handler.ts", import.meta.url);
const libssl: Requirement = {
  name: "libssl3",
  check: () => {
    try {
      Deno.statSync("/usr/lib/x86_64-linux-gnu/libssl.so.3");
      return undefined;
    } catch {
      try {
        Deno.dlopen("libssl.so.3", {}).close();
        return undefined;
      } catch {
        return "libssl.so.3 is missing (apt-get install libssl3)";
      }
    }
  },
};
const openssl = command("openssl", "openssl");
const BACKENDS = ["epoll", "uring", "portable"] as const;
type Backend = (typeof BACKENDS)[number];
const NEEDS: Record<Backend, Requirement[]> = {
  // Deno.listenTls/Deno.startTls: no FFI, no OpenSSL.
  portable: [],
  epoll: [linux, ffi, libssl],
  uring: [linux, ffi, libssl, ioUring],
};

const makeCerts = makeTestCerts;

async function start(
  backend: Backend,
  tls: Partial<NonNullable<ServeOptions["tls"]>> = {},
  options: ServeOptions = {},
): Promise<Engine> {
  const c = await makeCerts();
  return await serve(HANDLER, {
    backend,
    loops: 1,
    logger: createLogger({ level: "error" }),
    logLevel: "error",
    tls: { cert: c.cert, key: c.key, ...tls },
    ...options,
  });
}

async function connectTls(port: number, alpn?: string[]): Promise<Deno.TlsConn> {
  const c = await makeCerts();
  const conn = await Deno.connectTls({
    hostname: "localhost",
    port,
    caCerts: [await Deno.readTextFile(c.ca)],
    ...(alpn === undefined ? {} : { alpnProtocols: alpn }),
  });
  await conn.handshake();
  return conn;
}

/** Writes all of `bytes` (a `Deno.Conn` write may take part of them). */
async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  for (let at = 0; at < bytes.length;) at += await conn.write(bytes.subarray(at));
}

async function readUntil(conn: Deno.Conn, end: string, limit = 1 << 20): Promise<string> {
  let text = "";
  const buf = new Uint8Array(65536);
  while (!text.includes(end) && text.length < limit) {
    const n = await conn.read(buf);
    if (n === null) break;
    text += decoder.decode(buf.subarray(0, n));
  }
  return text;
}

async function info(port: number, alpn?: string[]): Promise<Record<string, unknown>> {
  const conn = await connectTls(port, alpn);
  try {
    await conn.write(encoder.encode("?info\n"));
    return JSON.parse(await readUntil(conn, "\n"));
  } finally {
    conn.close();
  }
}

/** Runs `openssl s_client`, sends `input`, waits for `expect` on its output, then ends it. */
async function sClient(args: string[], input: string, expect: string): Promise<string> {
  const c = await makeCerts();
  const child = new Deno.Command("openssl", {
    args: ["s_client", "-CAfile", c.ca, "-servername", "localhost", ...args],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(encoder.encode(input));
  let out = "";
  const reader = child.stdout.getReader();
  const until = Date.now() + 10_000;
  while (!out.includes(expect) && Date.now() < until) {
    let id: ReturnType<typeof setTimeout> | undefined;
    const timer = new Promise<"timeout">((r) => {
      id = setTimeout(() => r("timeout"), Math.max(0, until - Date.now()));
    });
    const next = await Promise.race([reader.read(), timer]);
    clearTimeout(id);
    if (next === "timeout" || next.done) break;
    out += decoder.decode(next.value);
  }
  await writer.close().catch(() => {});
  for (;;) {
    const next = await reader.read();
    if (next.done) break;
    out += decoder.decode(next.value);
  }
  const err = decoder.decode(await new Response(child.stderr).arrayBuffer());
  await child.status;
  return out + err;
}

async function rawConnect(port: number, bytes: Uint8Array): Promise<Deno.Conn> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  if (bytes.length > 0) await conn.write(bytes);
  return conn;
}

/** Resolves when the server has closed `conn` (EOF or reset). */
async function closedByServer(conn: Deno.Conn): Promise<void> {
  const buf = new Uint8Array(4096);
  try {
    while ((await conn.read(buf)) !== null) { /* an alert, maybe */ }
  } catch { /* reset */ }
  conn.close();
}

for (const backend of BACKENDS) {
  testWith(
    `tls ${backend}: Deno.connectTls echoes, sees TLS 1.3 and the agreed ALPN`,
    NEEDS[backend],
    async () => {
      await using engine = await start(backend, { alpn: ["h2", "echo"] });
      const got = await info(engine.address.port, ["echo"]);
      assert.equal(got.alpn, "echo");
      if (backend === "portable") {
        // Deno tells the ALPN protocol only (JSON leaves the undefined ones out).
        assert.deepEqual(got, { alpn: "echo", earlyDataAccepted: false, earlyBytes: 0 });
      } else {
        assert.equal(got.protocol, "TLSv1.3");
        assert.equal(got.resumed, false);
        assert.match(String(got.cipher), /^TLS_/);
      }
      const conn = await connectTls(engine.address.port);
      const big = "x".repeat(200_000) + "\n";
      const [echoed] = await Promise.all([
        readUntil(conn, "\n"),
        writeAll(conn, encoder.encode(big)),
      ]);
      assert.equal(echoed.length, big.length);
      conn.close();
      assert.equal((await info(engine.address.port)).alpn, undefined);
      // Plaintext the handler leaves unconsumed comes first next time.
      const lines = await connectTls(engine.address.port);
      await writeAll(lines, encoder.encode("?line:ab\ncd"));
      assert.equal(await readUntil(lines, "\n"), "?line:ab\n");
      await writeAll(lines, encoder.encode("ef\n"));
      assert.equal(await readUntil(lines, "\n"), "cdef\n");
      lines.close();
    },
  );

  testWith(
    `tls ${backend}: a refused ALPN fails that handshake alone, counted`,
    NEEDS[backend],
    async () => {
      await using engine = await start(backend, { alpn: ["echo"] });
      await assert.rejects(connectTls(engine.address.port, ["nope"]));
      assert.equal((await engine.tlsStats()).handshakeErrors, 1);
      assert.equal((await info(engine.address.port, ["echo"])).alpn, "echo");
    },
  );
}

testWith(
  "tls: openssl s_client resumes with a ticket from any loop",
  [linux, ffi, libssl, openssl],
  async () => {
    await using engine = await start("epoll", { alpn: ["echo"] }, { loops: 2 });
    const c = await makeCerts();
    const sess = `${c.dir}/resume.sess`;
    const port = engine.address.port;
    const first = await sClient(
      ["-connect", `127.0.0.1:${port}`, "-alpn", "echo", "-sess_out", sess],
      "hello-1\n",
      "hello-1",
    );
    assert.match(first, /New, TLSv1\.3/);
    assert.match(first, /ALPN protocol: echo/);
    for (let i = 0; i < 4; i++) {
      const again = await sClient(
        ["-connect", `127.0.0.1:${port}`, "-alpn", "echo", "-sess_in", sess],
        "hello-2\n",
        "hello-2",
      );
      assert.match(again, /Reused, TLSv1\.3/);
      assert.match(again, /hello-2/);
    }
    const stats = await engine.tlsStats();
    assert.equal(stats.handshakes, 5);
    assert.equal(stats.resumed, 4);
  },
);

testWith("tls: TLS 1.2 only when asked", [linux, ffi, libssl, openssl], async () => {
  {
    await using engine = await start("epoll");
    const out = await sClient(
      ["-connect", `127.0.0.1:${engine.address.port}`, "-tls1_2"],
      "x\n",
      "alert",
    );
    assert.doesNotMatch(out, /Protocol *: TLSv1\.2\n[\s\S]*Cipher *: [A-Z]/);
    assert.equal((await engine.tlsStats()).handshakes, 0);
  }
  await using engine = await start("epoll", { minVersion: "1.2" });
  const out = await sClient(
    ["-connect", `127.0.0.1:${engine.address.port}`, "-tls1_2"],
    "v12\n",
    "v12",
  );
  assert.match(out, /New, TLSv1\.2/);
});

/** Gets a ticket, then reconnects with it sending `early-hello\n` as 0-RTT data; returns the output. */
async function earlyDataRun(engine: Engine, name: string, expect: string): Promise<string> {
  const c = await makeCerts();
  const sess = `${c.dir}/${name}.sess`;
  const early = `${c.dir}/${name}.txt`;
  await Deno.writeTextFile(early, "early-hello\n");
  const connect = ["-connect", `127.0.0.1:${engine.address.port}`];
  await sClient([...connect, "-sess_out", sess], "first\n", "first");
  return await sClient([...connect, "-sess_in", sess, "-early_data", early], "", expect);
}

testWith("tls: 0-RTT early data accepted when asked, marked for the handler", [
  linux,
  ffi,
  libssl,
  openssl,
], async () => {
  await using engine = await start("epoll", { earlyData: true });
  const out = await earlyDataRun(engine, "early", "early-hello");
  assert.match(out, /Early data was accepted/);
  assert.match(out, /\[early 12\]early-hello/);
  assert.equal((await engine.tlsStats()).earlyData, 1);
  // The same ticket again: a replay, its early data refused (the handshake goes on).
  const c = await makeCerts();
  const replay = await sClient(
    [
      "-connect",
      `127.0.0.1:${engine.address.port}`,
      "-sess_in",
      `${c.dir}/early.sess`,
      "-early_data",
      `${c.dir}/early.txt`,
    ],
    "",
    "Early data was",
  );
  assert.match(replay, /Early data was rejected/);
  assert.equal((await engine.tlsStats()).earlyData, 1);
});

testWith("tls: 0-RTT refused by default: the ticket allows none", [
  linux,
  ffi,
  libssl,
  openssl,
], async () => {
  await using engine = await start("epoll");
  const out = await earlyDataRun(engine, "noearly", "Reused");
  assert.match(out, /Reused, TLSv1\.3/);
  assert.doesNotMatch(out, /Early data was accepted/);
  assert.doesNotMatch(out, /\[early/);
  assert.equal((await engine.tlsStats()).earlyData, 0);
});

for (const backend of ["epoll", "portable"] as const) {
  testWith(
    `tls ${backend}: a loop dials openssl s_server with TLS, verifying it`,
    [...NEEDS[backend], openssl],
    async () => {
      const c = await makeCerts();
      const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      const port = (probe.addr as Deno.NetAddr).port;
      probe.close();
      const server = new Deno.Command("openssl", {
        args: [
          "s_server",
          "-accept",
          `127.0.0.1:${port}`,
          "-cert",
          c.cert,
          "-key",
          c.key,
          "-rev",
          "-alpn",
          "echo",
        ],
        stdout: "piped",
        stderr: "null",
      }).spawn();
      try {
        const reader = server.stdout.getReader();
        let banner = "";
        while (!banner.includes("ACCEPT")) {
          const next = await reader.read();
          if (next.done) throw new Error("s_server ended");
          banner += decoder.decode(next.value);
        }
        const ca = await Deno.readTextFile(c.ca);
        const messages: Record<string, unknown>[] = [];
        const engine = await serve(HANDLER, {
          backend,
          loops: 1,
          logger: createLogger({ level: "error" }),
          data: { dial: { port, ca, alpn: ["echo"], serverName: "localhost", times: 2 } },
          onMessage: (m) => messages.push(m as Record<string, unknown>),
        });
        try {
          assert.ok(
            await eventually(() => messages.filter((m) => "closed" in m).length === 2, 10_000),
            JSON.stringify(messages),
          );
          const replies = messages.filter((m) => "reply" in m);
          assert.equal(replies.length, 2);
          if (backend !== "portable") {
            // (Deno's client does not tell whether it resumed.)
            assert.equal((replies[0]!.tls as Record<string, unknown>).resumed, false);
            assert.equal((replies[1]!.tls as Record<string, unknown>).resumed, true);
          }
          const reply = messages.find((m) => "reply" in m)!;
          assert.match(String(reply.reply), /nloop-gnip|teltenloop|pooltenlep|gnip/);
          const tls = reply.tls as Record<string, unknown>;
          assert.equal(tls.protocol, backend === "portable" ? undefined : "TLSv1.3");
          assert.equal(tls.alpn, "echo");
          // A name the certificate does not carry is refused.
          messages.length = 0;
        } finally {
          await engine.stop();
        }
        const wrong = await serve(HANDLER, {
          backend,
          loops: 1,
          logger: createLogger({ level: "error" }),
          data: { dial: { port, ca, serverName: "not-localhost" } },
          onMessage: (m) => messages.push(m as Record<string, unknown>),
        });
        try {
          assert.ok(await eventually(() => messages.some((m) => "closed" in m), 10_000));
          const closed = messages.find((m) => "closed" in m)!;
          assert.match(String(closed.closed), /certificate/);
          assert.ok(!messages.some((m) => "reply" in m));
        } finally {
          await wrong.stop();
        }
      } finally {
        server.kill();
        await server.status;
      }
    },
  );
}

testWith("tls portable: openssl s_client, ALPN agreed and refused; what Deno cannot do", [
  openssl,
], async () => {
  await using engine = await start("portable", { alpn: ["h2", "echo"], minVersion: "1.2" });
  const port = engine.address.port;
  const agreed = await sClient(
    ["-connect", `127.0.0.1:${port}`, "-alpn", "echo"],
    "hello-portable\n",
    "hello-portable",
  );
  assert.match(agreed, /ALPN protocol: echo/);
  assert.match(agreed, /hello-portable/); // echoed (s_client does not print its input)
  const refused = await sClient(
    ["-connect", `127.0.0.1:${port}`, "-alpn", "nope"],
    "never\n",
    "alert",
  );
  assert.match(refused, /no application protocol/);
  assert.doesNotMatch(refused, /never/);
  const stats = await engine.tlsStats();
  assert.equal(stats.handshakes, 1, JSON.stringify(stats));
  assert.equal(stats.handshakeErrors, 1, JSON.stringify(stats));
  // Deno's TLS has no 0-RTT and always resumes: asking otherwise is refused, saying why.
  for (
    const [tls, what] of [[{ earlyData: true }, /0-RTT/], [{ sessionTickets: false }, /resume/]]
  ) {
    await assert.rejects(start("portable", tls as ServeOptions["tls"]), (e: NetloopError) => {
      assert.equal(e.code, "bad_option");
      assert.match(e.message, what as RegExp);
      return true;
    });
  }
});

testWith("tls portable: certificate reload; a bad pair is refused and the old kept", [
  openssl,
], async () => {
  await using engine = await start("portable", { minVersion: "1.2" });
  const c = await makeCerts();
  const port = engine.address.port;
  const before = await sClient(["-connect", `127.0.0.1:${port}`], "a\n", "a\n");
  assert.match(before, /subject=CN ?= ?server\n/);
  await assert.rejects(engine.reloadTls({ cert: c.cert2, key: c.key }), (e: NetloopError) => {
    assert.equal(e.code, "bad_tls");
    assert.match(e.message, /server2\.pem and key .*server\.key refused/);
    return true;
  });
  const kept = await sClient(["-connect", `127.0.0.1:${port}`], "b\n", "b\n");
  assert.match(kept, /subject=CN ?= ?server\n/);
  await engine.reloadTls({ cert: c.cert2, key: c.key2 });
  const after = await sClient(["-connect", `127.0.0.1:${port}`], "c\n", "c\n");
  assert.match(after, /subject=CN ?= ?server2\n/);
});

testWith(
  "tls portable: two loops share the port (reusePort) and both reload",
  [],
  async () => {
    // loops > 1 on portable needs --unstable-net: run it in a child that has it.
    const c = await makeCerts();
    const code = `import { serve } from "@triad/netloop";
      import { createLogger } from "@triad/core";
      const ca = await Deno.readTextFile(${JSON.stringify(c.ca)});
      const engine = await serve(${JSON.stringify(HANDLER.href)}, { backend: "portable", loops: 2,
        logger: createLogger({ level: "error" }),
        tls: { cert: ${JSON.stringify(c.cert)}, key: ${
      JSON.stringify(c.key)
    }, minVersion: "1.2" } });
      const echo = async () => {
        const conn = await Deno.connectTls({ hostname: "localhost", port: engine.address.port,
          caCerts: [ca] });
        await conn.write(new TextEncoder().encode("hi\\n"));
        const buf = new Uint8Array(16);
        const n = await conn.read(buf);
        conn.close();
        return new TextDecoder().decode(buf.subarray(0, n ?? 0));
      };
      const before = await Promise.all(Array.from({ length: 8 }, echo));
      await engine.reloadTls({ cert: ${JSON.stringify(c.cert2)}, key: ${JSON.stringify(c.key2)} });
      const after = await Promise.all(Array.from({ length: 8 }, echo));
      console.log(JSON.stringify({ loops: engine.loops, before, after,
        stats: await engine.tlsStats() }));
      await engine.stop();`;
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["eval", "--unstable-net", "--ext=ts", code],
      cwd: new URL("..", import.meta.url).pathname,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = decoder.decode(out.stdout);
    assert.ok(out.success, text + decoder.decode(out.stderr));
    const got = JSON.parse(text);
    assert.equal(got.loops, 2);
    assert.deepEqual(got.before, Array(8).fill("hi\n"));
    assert.deepEqual(got.after, Array(8).fill("hi\n"));
    assert.equal(got.stats.handshakes, 16);
  },
);

testWith("tls: certificate reload; a bad pair is refused and the old kept", [
  linux,
  ffi,
  libssl,
  openssl,
], async () => {
  await using engine = await start("epoll", {}, { loops: 2 });
  const c = await makeCerts();
  const port = engine.address.port;
  const before = await sClient(["-connect", `127.0.0.1:${port}`], "a\n", "a\n");
  assert.match(before, /subject=CN ?= ?server\n/);
  const bad = engine.reloadTls({ cert: c.cert2, key: c.key });
  await assert.rejects(bad, (e: NetloopError) => {
    assert.equal(e.code, "bad_tls");
    assert.match(e.message, /server\.key does not match certificate .*server2\.pem/);
    return true;
  });
  await assert.rejects(
    engine.reloadTls({ cert: `${c.dir}/absent.pem`, key: c.key }),
    /Cannot read tls\.cert file .*absent\.pem/,
  );
  const kept = await sClient(["-connect", `127.0.0.1:${port}`], "b\n", "b\n");
  assert.match(kept, /subject=CN ?= ?server\n/);
  await engine.reloadTls({ cert: c.cert2, key: c.key2 });
  for (let i = 0; i < 3; i++) {
    const after = await sClient(["-connect", `127.0.0.1:${port}`], "c\n", "c\n");
    assert.match(after, /subject=CN ?= ?server2\n/);
  }
});

for (const backend of BACKENDS) {
  testWith(
    `tls ${backend}: bad input closes that connection alone, counted`,
    NEEDS[backend],
    async () => {
      await using engine = await start(backend, { handshakeTimeout: 300 });
      const port = engine.address.port;
      // Garbage instead of a ClientHello.
      await closedByServer(
        await rawConnect(port, encoder.encode("GET / HTTP/1.1\r\nHost: x\r\n\r\n")),
      );
      // A record header announcing more than TLS allows: refused on the header.
      await closedByServer(
        await rawConnect(port, new Uint8Array([0x16, 0x03, 0x01, 0xff, 0xff, 1, 2, 3])),
      );
      // A stalled handshake: half a record, then nothing. On portable (Deno's rustls) a
      // handshake the loop gives up on stays open until the peer sends or leaves (Deno's
      // handshake task holds the socket), so there the peer leaves once it is counted.
      const stalled = await rawConnect(port, new Uint8Array([0x16, 0x03, 0x01, 0x00, 0x80, 1]));
      if (backend !== "portable") await closedByServer(stalled);
      else {
        assert.ok(
          await eventually(async () => (await engine.tlsStats()).handshakeTimeouts === 1),
          JSON.stringify(await engine.tlsStats()),
        );
        stalled.close();
      }
      // A peer that leaves in the middle of a record.
      const cut = await rawConnect(port, new Uint8Array([0x16, 0x03, 0x01, 0x00, 0x80, 1, 2]));
      cut.close();
      const alive = await connectTls(port);
      await alive.write(encoder.encode("still here\n"));
      assert.equal(await readUntil(alive, "\n"), "still here\n");
      assert.ok(await eventually(async () => (await engine.tlsStats()).truncated >= 1));
      const stats = await engine.tlsStats();
      assert.equal(stats.handshakeErrors, 2, JSON.stringify(stats));
      assert.equal(stats.handshakeTimeouts, 1, JSON.stringify(stats));
      assert.equal(stats.truncated, 1, JSON.stringify(stats));
      alive.close();
      assert.ok(await eventually(async () => (await engine.tlsStats()).live === 0));
    },
  );
}

for (const backend of BACKENDS) {
  testWith(`tls ${backend}: a dialed handshake that stalls times out`, NEEDS[backend], async () => {
    const silent = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const held: Deno.Conn[] = [];
    const accepting = (async () => {
      for await (const conn of silent) held.push(conn);
    })();
    const messages: Record<string, unknown>[] = [];
    try {
      const ca = await Deno.readTextFile((await makeCerts()).ca);
      const port = (silent.addr as Deno.NetAddr).port;
      await using engine = await serve(HANDLER, {
        backend,
        loops: 1,
        logger: createLogger({ level: "error" }),
        data: { dial: { port, ca, serverName: "localhost", handshakeTimeout: 300 } },
        onMessage: (m) => messages.push(m as Record<string, unknown>),
      });
      assert.ok(await eventually(() => messages.some((m) => "closed" in m), 5000));
      const closed = messages.find((m) => "closed" in m)!;
      assert.match(String(closed.closed), /did not finish in time/);
      assert.equal((await engine.tlsStats()).handshakeTimeouts, 1);
    } finally {
      silent.close();
      await accepting;
      for (const conn of held) conn.close();
    }
  });
}

/** Dials `engine` from another engine, and after the handshake sends `raw` (hex) and closes. */
async function sendRaw(engine: Engine, raw: string): Promise<void> {
  const ca = await Deno.readTextFile((await makeCerts()).ca);
  const messages: Record<string, unknown>[] = [];
  await using _client = await serve(HANDLER, {
    backend: "epoll",
    loops: 1,
    logger: createLogger({ level: "error" }),
    data: { dial: { port: engine.address.port, ca, serverName: "localhost", raw } },
    onMessage: (m) => messages.push(m as Record<string, unknown>),
  });
  assert.ok(await eventually(() => messages.some((m) => "closed" in m), 10_000));
  assert.ok(messages.some((m) => "rawSent" in m));
}

testWith("tls: an oversized or cut record after the handshake closes that connection, counted", [
  linux,
  ffi,
  libssl,
], async () => {
  await using engine = await start("epoll");
  // Application data announcing 0xffff bytes: more than a TLS 1.3 record may carry.
  await sendRaw(engine, "170303ffff" + "00".repeat(64));
  assert.ok(await eventually(async () => (await engine.tlsStats()).recordErrors === 1));
  // A record announcing 256 bytes, 8 of them sent, then the connection ends.
  await sendRaw(engine, "1703030100" + "00".repeat(8));
  assert.ok(await eventually(async () => (await engine.tlsStats()).truncated === 1));
  const stats = await engine.tlsStats();
  assert.equal(stats.handshakes, 2, JSON.stringify(stats));
  assert.equal(stats.recordErrors, 1, JSON.stringify(stats));
  assert.equal((await info(engine.address.port)).protocol, "TLSv1.3");
  assert.ok(await eventually(async () => (await engine.tlsStats()).live === 0));
});

for (const backend of BACKENDS) {
  testWith(
    `tls ${backend}: 1,000 concurrent connections, nothing left after stop`,
    [...NEEDS[backend], fullSpeed],
    async () => {
      const fdsBefore = openFds();
      const engine = await start(backend);
      const port = engine.address.port;
      const ca = await Deno.readTextFile((await makeCerts()).ca);
      const conns: Deno.TlsConn[] = [];
      const N = 1000;
      const BATCH = 100;
      for (let at = 0; at < N; at += BATCH) {
        const batch = await Promise.all(
          Array.from({ length: BATCH }, async (_, i) => {
            const conn = await Deno.connectTls({ hostname: "localhost", port, caCerts: [ca] });
            await conn.write(encoder.encode(`c${at + i}\n`));
            assert.equal(await readUntil(conn, "\n"), `c${at + i}\n`);
            return conn;
          }),
        );
        conns.push(...batch);
      }
      let stats = await engine.tlsStats();
      assert.equal(stats.handshakes, N);
      assert.equal(stats.live, N);
      for (const conn of conns) conn.close();
      assert.ok(await eventually(async () => (stats = await engine.tlsStats()).live === 0, 10_000));
      await engine.stop();
      assert.ok(
        await eventually(() => {
          const now = openFds();
          return [...now].filter((fd) => !fdsBefore.has(fd) && !fd.includes("anon_inode"))
            .length === 0;
        }),
        `fds left: ${[...openFds()].filter((fd) => !fdsBefore.has(fd))}`,
      );
    },
  );
}

for (const backend of ["epoll", "uring"] as const) {
  testWith(
    `tls ${backend}: kernel TLS is probed and a log line says it is not used, and why`,
    NEEDS[backend],
    async () => {
      const lines: string[] = [];
      const c = await makeCerts();
      await using _engine = await serve(HANDLER, {
        backend,
        loops: 1,
        logger: createLogger({ level: "info", format: "json", write: (l) => lines.push(l) }),
        logLevel: "error",
        tls: { cert: c.cert, key: c.key },
      });
      const line = lines.map((l) => JSON.parse(l)).find((l) => /kernel TLS/.test(l.msg));
      assert.ok(line, lines.join("\n"));
      // The probe asks for the ULP, which loads the module where there is one.
      const ulps = await Deno.readTextFile("/proc/sys/net/ipv4/tcp_available_ulp");
      assert.equal(line.ktls, /\btls\b/.test(ulps), line.msg);
      assert.match(
        line.msg,
        line.ktls
          ? /^netloop: kernel TLS not used \(the kernel offers the tls ULP, but .*memory BIOs/
          : /^netloop: kernel TLS not used \(this kernel has no tls module|failed: E/,
      );
    },
  );
}

testWith("tls: a missing libssl names the Debian package", [linux, ffi], async () => {
  const code = `import { serve } from "@triad/netloop";
    try { await serve("data:text/javascript,", { backend: "epoll", loops: 1,
      tls: { cert: "-----BEGIN x", key: "-----BEGIN y" } }); } catch (e) { console.log(e.message); }`;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--ext=ts", code],
    env: { TRIAD_NETLOOP_LIBSSL: "libssl-absent.so.3" },
    cwd: new URL("..", import.meta.url).pathname,
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.match(decoder.decode(out.stdout), /Debian package libssl3/);
});

testWith("tls: deno task echo --tls-cert --tls-key --alpn serves TLS", [
  linux,
  ffi,
  libssl,
  openssl,
], async () => {
  const c = await makeCerts();
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      new URL("../netloop/examples/echo.ts", import.meta.url).pathname,
      "--port",
      "0",
      "--backend",
      "epoll",
      "--loops",
      "1",
      "--tls-cert",
      c.cert,
      "--tls-key",
      c.key,
      "--alpn",
      "echo,h2",
    ],
    stdout: "piped",
    stderr: "null",
  }).spawn();
  try {
    const reader = child.stdout.getReader();
    let banner = "";
    while (!banner.includes("\n")) {
      const next = await reader.read();
      if (next.done) throw new Error(`echo ended: ${banner}`);
      banner += decoder.decode(next.value);
    }
    reader.releaseLock();
    assert.match(banner, /^echo \(tls\) on 127\.0\.0\.1:\d+/);
    const port = Number(/:(\d+),/.exec(banner)![1]);
    const out = await sClient(
      ["-connect", `127.0.0.1:${port}`, "-alpn", "echo"],
      "over tls\n",
      "over tls",
    );
    assert.match(out, /ALPN protocol: echo/);
    assert.match(out, /over tls/);
  } finally {
    child.kill("SIGTERM");
    await child.status;
    await child.stdout.cancel().catch(() => {});
  }
});
