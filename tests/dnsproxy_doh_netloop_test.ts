/**
 * DNS over HTTPS on netloop (HTTP/2 and HTTP/1.1 over netloop's TLS, framing in TypeScript) against
 * real clients: BIND's dig, Knot's kdig, curl, nghttp2's h2load, Deno's fetch; and raw connections
 * sending what no client would (garbage frames, a bad HPACK block, an oversized frame, a frame cut
 * off, a bad HTTP/1.1 request line), which get a GOAWAY, a 400 or a close, while the proxy keeps
 * answering.
 */
import assert from "node:assert/strict";
import { buildQuery, serveDnsOnNetloop } from "@triad/dnsproxy";
import { encodeBase64Url } from "../dnsproxy/frontend/https.ts";
import type { NetloopDnsServer } from "@triad/dnsproxy";
import { command, testWith } from "./requirements.ts";
import { startUnbound, testCertificates } from "./servers/unbound.ts";
import type { UnboundServer } from "./servers/unbound.ts";
import { checkDohStatuses, readBefore } from "./dnsproxy_client.ts";

const ANSWER = /^a\.test\.\s+\d+\s+IN\s+A\s+10\.0\.0\.1$/m;
const needs = [command("unbound"), command("openssl")];

interface Setup extends AsyncDisposable {
  server: NetloopDnsServer;
  port: number;
  ca: string;
  caFile: string;
}

async function setup(): Promise<Setup> {
  const dir = await Deno.makeTempDir({ prefix: "triad-doh-netloop-" });
  let unbound: UnboundServer | undefined;
  try {
    const certs = await testCertificates(dir);
    unbound = await startUnbound();
    const server = await serveDnsOnNetloop(
      { upstream: { upstreams: [unbound.address] } },
      {
        listen: "127.0.0.1:0",
        backend: "epoll",
        idleTimeout: 2000,
        https: { listen: "127.0.0.1:0", path: "/dns-query", cert: certs.cert, key: certs.key },
      },
    );
    const stopUnbound = unbound;
    return {
      server,
      port: server.httpsAddress!.port,
      ca: await Deno.readTextFile(certs.ca),
      caFile: certs.ca,
      async [Symbol.asyncDispose]() {
        await server.close();
        await stopUnbound.stop();
        await Deno.remove(dir, { recursive: true });
      },
    };
  } catch (error) {
    await unbound?.stop();
    await Deno.remove(dir, { recursive: true });
    throw error;
  }
}

async function run(cmd: string, args: string[]): Promise<string> {
  const { code, stdout, stderr } = await new Deno.Command(cmd, {
    args,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const out = new TextDecoder().decode(stdout);
  assert.equal(code, 0, `${cmd} ${args.join(" ")}: ${new TextDecoder().decode(stderr)}${out}`);
  return out;
}

/** Everything the server sends on a raw TLS connection until it closes it (bounded: 5 s). */
async function exchange(
  port: number,
  ca: string,
  alpn: string,
  bytes: Uint8Array,
  closeWrite = false,
): Promise<{ received: Uint8Array; closed: boolean }> {
  const conn = await Deno.connectTls({
    hostname: "127.0.0.1",
    port,
    caCerts: [ca],
    alpnProtocols: [alpn],
  });
  try {
    assert.equal((await conn.handshake()).alpnProtocol, alpn);
    for (let at = 0; at < bytes.length;) at += await conn.write(bytes.subarray(at));
    if (closeWrite) await conn.closeWrite();
    const chunks: number[] = [];
    const buffer = new Uint8Array(65_536);
    const deadline = performance.now() + 5000;
    let closed = false;
    while (!closed && performance.now() < deadline) {
      const n = await readBefore(conn, buffer, deadline);
      if (n === "timeout") break;
      if (n === null) closed = true;
      else chunks.push(...buffer.subarray(0, n));
    }
    return { received: new Uint8Array(chunks), closed };
  } finally {
    conn.close();
  }
}

interface Frame {
  type: number;
  flags: number;
  stream: number;
  payload: Uint8Array;
}

function frames(bytes: Uint8Array): Frame[] {
  const out: Frame[] = [];
  let at = 0;
  while (bytes.length - at >= 9) {
    const length = (bytes[at]! << 16) | (bytes[at + 1]! << 8) | bytes[at + 2]!;
    const view = new DataView(bytes.buffer, bytes.byteOffset + at);
    out.push({
      type: bytes[at + 3]!,
      flags: bytes[at + 4]!,
      stream: view.getUint32(5) & 0x7fffffff,
      payload: bytes.slice(at + 9, at + 9 + length),
    });
    at += 9 + length;
  }
  return out;
}

function frame(type: number, flags: number, stream: number, payload: number[]): number[] {
  const n = payload.length;
  return [
    n >> 16,
    (n >> 8) & 255,
    n & 255,
    type,
    flags,
    0,
    0,
    stream >> 8,
    stream & 255,
    ...payload,
  ];
}

const PREFACE = [...new TextEncoder().encode("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")];
const SETTINGS_EMPTY = frame(4, 0, 0, []);

/** The GOAWAY error code the server sent, or undefined. */
function goaway(received: Uint8Array): number | undefined {
  const away = frames(received).find((f) => f.type === 7);
  return away === undefined ? undefined : new DataView(away.payload.buffer).getUint32(4);
}

testWith("DoH on netloop answers dig, kdig, curl and h2load (HTTP/2 and HTTP/1.1)", [
  command("dig", "bind9-dnsutils"),
  command("kdig", "knot-dnsutils"),
  command("curl"),
  command("h2load", "nghttp2-client"),
  ...needs,
], async () => {
  await using s = await setup();
  const port = String(s.port);
  const clients: [string, string[]][] = [
    ["dig", ["+https", "@127.0.0.1", "-p", port, "a.test", "A"]],
    ["dig", ["+https-get", "@127.0.0.1", "-p", port, "a.test", "A"]],
    ["dig", ["+https=/dns-query", "@127.0.0.1", "-p", port, "a.test", "A"]],
    ["kdig", ["+https", `+tls-ca=${s.caFile}`, "@127.0.0.1", "-p", port, "a.test", "A"]],
    ["kdig", ["+https-get", `+tls-ca=${s.caFile}`, "@127.0.0.1", "-p", port, "a.test", "A"]],
  ];
  for (const [cmd, args] of clients) {
    const out = await run(cmd, args);
    assert.match(out, ANSWER, `${cmd} ${args.join(" ")}:\n${out}`);
  }
  const query = buildQuery({ id: 0, name: "a.test.", type: 1 });
  const url = `https://127.0.0.1:${port}/dns-query?dns=${encodeBase64Url(query)}`;
  for (const [flag, version] of [["--http2", "2"], ["--http1.1", "1.1"]]) {
    const out = await run("curl", [
      "-sS",
      flag!,
      "--cacert",
      s.caFile,
      "-o",
      "/dev/null",
      "-w",
      "%{http_code} %{http_version} %{content_type} %{size_download}",
      url,
    ]);
    // Two A records: a 12-byte header, the question and two 16-byte records (EDNS OPT too).
    assert.match(out, new RegExp(`^200 ${version} application/dns-message \\d+$`), out);
  }
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeFile(`${dir}/query`, query);
    // HTTP/2, then HTTP/1.1 with 10 requests pipelined per connection; GET and POST each.
    for (const h1 of [false, true]) {
      for (const post of [false, true]) {
        const out = await run("h2load", [
          ...(h1 ? ["--h1"] : []),
          "-n",
          "300",
          "-c",
          "3",
          "-m",
          "10",
          ...(post ? ["-d", `${dir}/query`, "-H", "content-type: application/dns-message"] : []),
          post ? `https://127.0.0.1:${port}/dns-query` : url,
        ]);
        assert.match(out, /status codes: 300 2xx, 0 3xx, 0 4xx, 0 5xx/, out);
        assert.match(out, /requests: 300 total, 300 started, 300 done, 300 succeeded/, out);
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  const metrics = await s.server.metrics();
  assert.match(metrics, /^dns_queries_total\{type="A",transport="https"\} 1207$/m);
  assert.match(metrics, /^dns_tls_handshakes_total\{transport="https",result="ok"\} 19$/m);
});

testWith(
  "DoH on netloop: RFC 8484 statuses and Cache-Control, HTTP/2 and HTTP/1.1",
  needs,
  async () => {
    await using s = await setup();
    await checkDohStatuses(`https://127.0.0.1:${s.port}/dns-query`, s.ca);
  },
);

testWith(
  "DoH on netloop: bad frames get GOAWAY or a close; it keeps answering",
  needs,
  async () => {
    await using s = await setup();
    const headersOf = (
      block: number[],
    ) => [...PREFACE, ...SETTINGS_EMPTY, ...frame(1, 5, 1, block)];
    const cases: [string, number[], number | undefined][] = [
      // HTTP/1.1 bytes on an h2 connection: not the preface.
      ["no preface", [...new TextEncoder().encode("GET / HTTP/1.1\r\nhost: x\r\n\r\n")], 1],
      // A frame longer than SETTINGS_MAX_FRAME_SIZE (16384).
      ["an oversized frame", [...PREFACE, 0, 0x50, 0, 0, 0, 0, 0, 0, 0], 6],
      // HPACK index 0 (RFC 7541 §6.1): COMPRESSION_ERROR.
      ["a bad HPACK block", headersOf([0x80]), 9],
      // CONTINUATION with no HEADERS before it.
      ["a stray CONTINUATION", [...PREFACE, ...SETTINGS_EMPTY, ...frame(9, 4, 1, [0x82])], 1],
      // A DATA frame on stream 0.
      ["DATA on stream 0", [...PREFACE, ...SETTINGS_EMPTY, ...frame(0, 1, 0, [1, 2, 3])], 1],
      // A PING of 7 bytes.
      [
        "a short PING",
        [...PREFACE, ...SETTINGS_EMPTY, ...frame(6, 0, 0, [1, 2, 3, 4, 5, 6, 7])],
        6,
      ],
    ];
    for (const [what, bytes, code] of cases) {
      const { received, closed } = await exchange(s.port, s.ca, "h2", new Uint8Array(bytes));
      assert.equal(goaway(received), code, what);
      assert.ok(closed, `${what}: closed`);
    }
    // A HEADERS frame announcing 40 bytes and sending 10, then the end of the stream: closed, and
    // nothing answered (the frames before it were: SETTINGS, its ACK).
    const cut = [
      ...PREFACE,
      ...SETTINGS_EMPTY,
      0,
      0,
      40,
      1,
      5,
      0,
      0,
      0,
      1,
      ...new Array(10).fill(0x82),
    ];
    const stopped = await exchange(s.port, s.ca, "h2", new Uint8Array(cut), true);
    assert.ok(stopped.closed, "a frame cut off: closed");
    assert.deepEqual(frames(stopped.received).map((f) => f.type), [4, 4]);
    // A POST whose body passes 64 KiB gets 413 and RST_STREAM(NO_ERROR) as it does; a GET on the
    // same connection after it is answered.
    const literal = (index: number, value: string) => [
      index,
      value.length,
      ...new TextEncoder().encode(value),
    ];
    const post = [0x83, 0x87, ...literal(4, "/dns-query"), 0x0f, 0x10];
    post.push(...literal(0, "application/dns-message").slice(1));
    const getA = [
      0x82,
      0x87,
      ...literal(
        4,
        `/dns-query?dns=${encodeBase64Url(buildQuery({ id: 0, name: "a.test.", type: 1 }))}`,
      ),
    ];
    const chunk = new Array(16_384).fill(0);
    const big = await exchange(
      s.port,
      s.ca,
      "h2",
      new Uint8Array([
        ...PREFACE,
        ...SETTINGS_EMPTY,
        ...frame(1, 4, 1, post),
        ...[0, 1, 2, 3].flatMap(() => frame(0, 0, 1, chunk)),
        ...frame(1, 5, 3, getA),
      ]),
    );
    const onStreams = frames(big.received).filter((f) => f.stream !== 0 && f.type !== 8);
    assert.deepEqual(onStreams.map((f) => [f.type, f.stream]), [
      [1, 1], // HEADERS
      [0, 1], // the 413's text
      [3, 1], // RST_STREAM
      [1, 3], // HEADERS
      [0, 3], // the answer
    ]);
    assert.deepEqual([...onStreams[0]!.payload.subarray(0, 5)], [0x08, 3, 0x34, 0x31, 0x33]); // 413
    assert.equal(onStreams[3]!.payload[0], 0x88); // :status 200
    assert.deepEqual([...onStreams[2]!.payload], [0, 0, 0, 0]); // NO_ERROR
    // A PING is answered, and a GET with Huffman-coded :path after it.
    const ping = await exchange(
      s.port,
      s.ca,
      "h2",
      new Uint8Array([...PREFACE, ...SETTINGS_EMPTY, ...frame(6, 0, 0, [1, 2, 3, 4, 5, 6, 7, 8])]),
      true,
    );
    const pong = frames(ping.received).find((f) => f.type === 6);
    assert.deepEqual([pong?.flags, [...pong?.payload ?? []]], [1, [1, 2, 3, 4, 5, 6, 7, 8]]);
    // HTTP/1.1: a bad request line gets 400 and a close; three pipelined GETs get three answers,
    // in order.
    const bad = await exchange(
      s.port,
      s.ca,
      "http/1.1",
      new TextEncoder().encode("garbage\r\n\r\n"),
    );
    assert.match(new TextDecoder().decode(bad.received), /^HTTP\/1\.1 400 Bad Request\r\n/);
    assert.ok(bad.closed);
    const get = (name: string) =>
      `GET /dns-query?dns=${encodeBase64Url(buildQuery({ id: 0, name, type: 1 }))} HTTP/1.1\r\n` +
      `host: x\r\naccept: application/dns-message\r\n\r\n`;
    const pipelined = await exchange(
      s.port,
      s.ca,
      "http/1.1",
      new TextEncoder().encode(
        get("a.test.") + get("nx.test.") + get("a.test.") + "GET / HTTP/1.0\r\n\r\n",
      ),
    );
    const text = new TextDecoder("latin1").decode(pipelined.received);
    assert.deepEqual(
      [...text.matchAll(/HTTP\/1\.1 (\d+) /g)].map((m) => m[1]),
      ["200", "200", "200", "404"],
    );
    assert.ok(pipelined.closed, "HTTP/1.0 closes after its response");
    // Still answering.
    assert.match(
      await run("kdig", [
        "+https",
        `+tls-ca=${s.caFile}`,
        "@127.0.0.1",
        "-p",
        String(s.port),
        "a.test",
      ]),
      ANSWER,
    );
  },
);

testWith("DoH on netloop without a certificate: cleartext HTTP/2 and HTTP/1.1", [
  command("curl"),
  command("unbound"),
], async () => {
  await using unbound = await startUnbound();
  await using server = await serveDnsOnNetloop(
    { upstream: { upstreams: [unbound.address] } },
    { listen: "127.0.0.1:0", backend: "epoll", https: { listen: "127.0.0.1:0", path: "/q" } },
  );
  const query = encodeBase64Url(buildQuery({ id: 0, name: "a.test.", type: 1 }));
  const url = `http://127.0.0.1:${server.httpsAddress!.port}/q?dns=${query}`;
  for (const [flag, version] of [["--http2-prior-knowledge", "2"], ["--http1.1", "1.1"]]) {
    const out = await run("curl", [
      "-sS",
      flag!,
      "-o",
      "/dev/null",
      "-w",
      "%{http_code} %{http_version}",
      url,
    ]);
    assert.equal(out, `200 ${version}`);
  }
  // The configured path only.
  const other = await run("curl", [
    "-sS",
    "-o",
    "/dev/null",
    "-w",
    "%{http_code}",
    url.replace("/q?", "/dns-query?"),
  ]);
  assert.equal(other, "404");
});
