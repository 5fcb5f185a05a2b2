/**
 * DNS over TLS, HTTPS and QUIC served by the proxy, against real clients (BIND's dig, Knot's kdig,
 * Deno's fetch and QUIC), with unbound as the upstream; malformed input on each transport gets the
 * RFC's error or a closed connection, and the proxy keeps answering.
 */
import assert from "node:assert/strict";
import {
  buildQuery,
  DnsProxy,
  parseMessage,
  serveDns,
  serveDnsOnNetloop,
  Upstream,
} from "@triad/dnsproxy";
import { createLogger } from "@triad/core";
import type { DnsServer } from "@triad/dnsproxy";
import { runDnsProxy } from "@triad/dnsproxy/main";
import { command, testWith } from "./requirements.ts";
import type { Requirement } from "./requirements.ts";
import { startUnbound, testCertificates } from "./servers/unbound.ts";
import { checkDohStatuses, frame, readFrames } from "./dnsproxy_client.ts";
import { pollUntil } from "./wait_for.ts";

const quic: Requirement = {
  name: "QUIC",
  check: () =>
    typeof (Deno as { QuicEndpoint?: unknown }).QuicEndpoint === "function"
      ? undefined
      : "needs Deno's QUIC: run deno test with --unstable-net",
};

async function run(cmd: string, args: string[]): Promise<string> {
  const { code, stdout, stderr } = await new Deno.Command(cmd, {
    args,
    stdout: "piped",
    stderr: "piped",
  })
    .output();
  const out = new TextDecoder().decode(stdout);
  assert.equal(code, 0, `${cmd} ${args.join(" ")}: ${new TextDecoder().decode(stderr)}${out}`);
  return out;
}

interface Setup extends AsyncDisposable {
  server: DnsServer;
  proxy: DnsProxy;
  ca: string;
  dir: string;
  port(transport: string): number;
}

async function setup(withQuic: boolean): Promise<Setup> {
  const dir = await Deno.makeTempDir({ prefix: "triad-edns-" });
  const certs = await testCertificates(dir);
  const unbound = await startUnbound();
  const proxy = new DnsProxy({ upstream: { upstreams: [unbound.address] } });
  const server = await serveDns(proxy, {
    listen: "127.0.0.1:0",
    idleTimeout: 2000,
    encrypted: {
      tls: "127.0.0.1:0",
      https: "127.0.0.1:0",
      ...(withQuic ? { quic: "127.0.0.1:0" } : {}),
      certificate: {
        cert: await Deno.readTextFile(certs.cert),
        key: await Deno.readTextFile(certs.key),
      },
    },
  });
  return {
    server,
    proxy,
    ca: await Deno.readTextFile(certs.ca),
    dir,
    port: (transport) => server.listeners.find((l) => l.transport === transport)!.address.port,
    async [Symbol.asyncDispose]() {
      await server.close();
      proxy.close();
      await unbound.stop();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

const ANSWER = /^a\.test\.\s+\d+\s+IN\s+A\s+10\.0\.0\.1$/m;

/** A ClientHello of garbage gets a TLS alert or nothing, then the end: never a DNS answer. */
async function garbageClientHelloCloses(port: number): Promise<void> {
  const bad = await Deno.connect({ hostname: "127.0.0.1", port });
  await bad.write(new TextEncoder().encode("GET / HTTP/1.1\r\nhost: x\r\n\r\n".repeat(4)));
  const buffer = new Uint8Array(1024);
  let ended = false;
  for (let i = 0; i < 10 && !ended; i++) {
    const n = await bad.read(buffer).catch(() => null);
    if (n === null) ended = true;
    else assert.ok(buffer[0] === 21, `not a TLS alert: ${buffer[0]}`);
  }
  assert.ok(ended);
  bad.close();
}

/** Three queries written at once on one DoT connection (ALPN `dot`) are all answered. */
async function pipelinedDot(port: number, ca: string): Promise<void> {
  const conn = await Deno.connectTls({
    hostname: "127.0.0.1",
    port,
    caCerts: [ca],
    alpnProtocols: ["dot"],
  });
  assert.equal((await conn.handshake()).alpnProtocol, "dot");
  const queries = [1, 2, 3].map((id) => buildQuery({ id, name: "a.test.", type: 1 }));
  await conn.write(new Uint8Array(queries.flatMap((q) => [...frame(q)])));
  const answers = await readFrames(conn, 3);
  assert.deepEqual(answers.map((a) => parseMessage(a).id).sort(), [1, 2, 3]);
  conn.close();
}

/** TLS 1.3 with AES-GCM or ChaCha20: a 5-byte header, the inner content type, a 16-byte tag. */
const RECORD_OVERHEAD = 22;

/**
 * An answer and its length prefix come as one TLS record (written apart, the prefix was a record of
 * its own: 22 more bytes on the wire and one more seal and open per answer). A relay between the
 * client and the proxy counts the bytes of one answer.
 */
async function oneRecordPerAnswer(port: number, ca: string): Promise<void> {
  const relay = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  let toClient = 0;
  const relayed = (async () => {
    const client = await relay.accept();
    const upstream = await Deno.connect({ hostname: "127.0.0.1", port });
    const counted = new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, out) {
        toClient += chunk.length;
        out.enqueue(chunk);
      },
    });
    await Promise.allSettled([
      client.readable.pipeTo(upstream.writable),
      upstream.readable.pipeThrough(counted).pipeTo(client.writable),
    ]);
  })();
  const conn = await Deno.connectTls({
    hostname: "127.0.0.1",
    port: (relay.addr as Deno.NetAddr).port,
    caCerts: [ca],
    alpnProtocols: ["dot"],
  });
  await conn.handshake();
  // The first answer comes after the handshake's records and the session tickets.
  await conn.write(frame(buildQuery({ id: 1, name: "a.test.", type: 1 })));
  await readFrames(conn, 1);
  const before = toClient;
  await conn.write(frame(buildQuery({ id: 2, name: "a.test.", type: 1 })));
  const [answer] = await readFrames(conn, 1);
  assert.equal(parseMessage(answer!).id, 2);
  assert.equal(
    toClient - before,
    2 + answer!.length + RECORD_OVERHEAD,
    `bytes on the wire for a ${answer!.length}-byte answer (as two records: ${
      2 + answer!.length + 2 * RECORD_OVERHEAD
    })`,
  );
  conn.close();
  relay.close();
  await relayed;
}

testWith("DoT and DoH answer dig (BIND 9.18) and kdig", [
  command("dig", "bind9-dnsutils"),
  command("kdig", "knot-dnsutils"),
  command("unbound"),
  command("openssl"),
], async () => {
  await using s = await setup(false);
  const tls = String(s.port("tls"));
  const https = String(s.port("https"));
  const caFile = `${s.dir}/ca.pem`;
  const digs: [string, string[]][] = [
    ["dig", ["+tls", `+tls-ca=${caFile}`, "@127.0.0.1", "-p", tls, "a.test", "A"]],
    ["dig", ["+https", "@127.0.0.1", "-p", https, "a.test", "A"]],
    ["dig", ["+https-get", "@127.0.0.1", "-p", https, "a.test", "A"]],
    ["kdig", ["+tls-ca=" + caFile, "@127.0.0.1", "-p", tls, "a.test", "A"]],
    ["kdig", ["+https", "+tls-ca=" + caFile, "@127.0.0.1", "-p", https, "a.test", "A"]],
    ["kdig", ["+https-get", "+tls-ca=" + caFile, "@127.0.0.1", "-p", https, "a.test", "A"]],
  ];
  for (const [cmd, args] of digs) {
    const out = await run(cmd, args);
    assert.match(out, ANSWER, `${cmd} ${args.join(" ")}:\n${out}`);
  }
  const metrics = s.proxy.metrics.registry.expose();
  assert.match(metrics, /^dns_queries_total\{type="A",transport="tls"\} 2$/m);
  assert.match(metrics, /^dns_queries_total\{type="A",transport="https"\} 4$/m);
  assert.match(metrics, /^dns_tls_handshakes_total\{transport="tls",result="ok"\} 2$/m);
});

testWith("DoH: status codes of RFC 8484, Cache-Control from the lowest TTL", [
  command("unbound"),
  command("openssl"),
], async () => {
  await using s = await setup(false);
  await checkDohStatuses(`https://127.0.0.1:${s.port("https")}/dns-query`, s.ca);
});

testWith("DoT: a garbage ClientHello closes the connection; pipelined queries on a good one", [
  command("unbound"),
  command("openssl"),
], async () => {
  await using s = await setup(false);
  await garbageClientHelloCloses(s.port("tls"));
  await pipelinedDot(s.port("tls"), s.ca);
  const metrics = s.proxy.metrics.registry.expose();
  assert.match(metrics, /^dns_tls_handshakes_total\{transport="tls",result="failed"\} 1$/m);
});

async function doqQuery(
  conn: Deno.QuicConn,
  bytes: Uint8Array,
  finish = true,
): Promise<Uint8Array | null> {
  const stream = await conn.createBidirectionalStream();
  const writer = stream.writable.getWriter();
  await writer.write(bytes);
  if (finish) await writer.close();
  const chunks: number[] = [];
  try {
    for await (const chunk of stream.readable) chunks.push(...chunk);
  } catch {
    return null;
  }
  return new Uint8Array(chunks);
}

testWith("DoQ: one query per stream, ID 0, RFC 9250 errors close the connection", [
  quic,
  command("unbound"),
  command("openssl"),
], async () => {
  await using s = await setup(true);
  const connect = () =>
    Deno.connectQuic({
      hostname: "127.0.0.1",
      port: s.port("quic"),
      caCerts: [s.ca],
      alpnProtocols: ["doq"],
    });
  const conn = await connect();
  const query = buildQuery({ id: 0, name: "a.test.", type: 1 });
  const replies = await Promise.all([1, 2, 3].map(() => doqQuery(conn, frame(query))));
  for (const reply of replies) {
    assert.equal((reply![0]! << 8) | reply![1]!, reply!.length - 2);
    const info = parseMessage(reply!.subarray(2));
    assert.equal(info.id, 0);
    assert.equal(info.counts[1], 2);
  }
  // A stream that stops mid-message: DOQ_PROTOCOL_ERROR on the connection.
  await doqQuery(conn, frame(query).subarray(0, 10));
  const info = await conn.closed;
  assert.equal(info.closeCode, 2);
  // A non-zero ID: DOQ_PROTOCOL_ERROR too.
  const second = await connect();
  await doqQuery(second, frame(buildQuery({ id: 7, name: "a.test.", type: 1 })));
  assert.equal((await second.closed).closeCode, 2);
  // Still answering.
  const third = await connect();
  const reply = await doqQuery(third, frame(query));
  assert.equal(parseMessage(reply!.subarray(2)).counts[1], 2);
  third.close({ closeCode: 0, reason: "" });
  const metrics = s.proxy.metrics.registry.expose();
  assert.match(metrics, /^dns_queries_total\{type="A",transport="quic"\} 4$/m);
  assert.match(metrics, /^dns_tls_handshakes_total\{transport="quic",result="ok"\} 3$/m);
});

for (const backend of ["builtin", "epoll"]) {
  testWith(`deno task dns --tls-listen/--https-listen (${backend}): certificates reload`, [
    command("dig", "bind9-dnsutils"),
    command("kdig", "knot-dnsutils"),
    command("unbound"),
    command("openssl"),
  ], async () => {
    const dir = await Deno.makeTempDir({ prefix: "triad-edns-cli-" });
    const logs: string[] = [];
    try {
      await using unbound = await startUnbound();
      const first = await testCertificates(await Deno.makeTempDir({ dir }));
      const cert = `${dir}/server.pem`;
      const key = `${dir}/server.key`;
      const install = async (from: { cert: string; key: string }) => {
        await Deno.copyFile(from.cert, `${cert}.tmp`);
        await Deno.copyFile(from.key, `${key}.tmp`);
        await Deno.rename(`${cert}.tmp`, cert);
        await Deno.rename(`${key}.tmp`, key);
      };
      await install(first);
      await using running = await runDnsProxy({
        argv: [
          "--listen=127.0.0.1:0",
          "--tls-listen=127.0.0.1:0",
          "--https-listen=127.0.0.1:0",
          `--tls-cert=${cert}`,
          `--tls-key=${key}`,
          `--upstream=${unbound.address}`,
          `--backend=${backend}`,
        ],
        env: {},
        resolvConf: "/dev/null",
        logger: createLogger({ write: (line) => logs.push(line), level: "info" }),
      });
      const listening = logs.map((l) => JSON.parse(l)).filter((l) => l.msg === "listening");
      const portOf = (transport: string) =>
        listening.find((l) => l.transport === transport)!.address.split(":")[1];
      const dot = (caFile: string) =>
        new Deno.Command("dig", {
          args: [
            "+tls",
            `+tls-ca=${caFile}`,
            "+tries=1",
            "@127.0.0.1",
            "-p",
            portOf("tls"),
            "a.test",
          ],
          stdout: "piped",
        }).output().then((o) => new TextDecoder().decode(o.stdout));
      assert.match(await dot(first.ca), ANSWER);
      assert.match(
        await run("dig", ["+https", "@127.0.0.1", "-p", portOf("https"), "a.test"]),
        ANSWER,
      );
      // A bad pair: the running one stays, with an error naming the file.
      await Deno.writeTextFile(cert, "not a certificate\n");
      await pollUntil(() => running.certificateReloads.failed > 0, "a refused certificate");
      assert.ok(logs.some((l) => l.includes("keeping the running one") && l.includes(cert)));
      assert.match(await dot(first.ca), ANSWER);
      // A good new pair from another CA: new connections get it.
      const second = await testCertificates(await Deno.makeTempDir({ dir }));
      await install(second);
      await pollUntil(() => running.certificateReloads.applied > 0, "a new certificate").catch(
        (e) => {
          console.log(logs.join("\n"));
          throw e;
        },
      );
      assert.match(await dot(second.ca), ANSWER);
      assert.doesNotMatch(await dot(first.ca), ANSWER);
      // DoH serves the new pair too (kdig checks the certificate against the CA it is given).
      const doh = (caFile: string) =>
        new Deno.Command("kdig", {
          args: ["+https", `+tls-ca=${caFile}`, "@127.0.0.1", "-p", portOf("https"), "a.test"],
          stdout: "piped",
          stderr: "null",
        }).output().then((o) => new TextDecoder().decode(o.stdout));
      assert.match(await doh(second.ca), ANSWER);
      assert.doesNotMatch(await doh(first.ca), ANSWER);
      const metrics = await running.metrics();
      assert.match(metrics, /^dns_queries_total\{type="A",transport="tls"\} [34]$/m);
      assert.match(metrics, /^dns_tls_handshakes_total\{transport="tls",result="ok"\} [3-9]$/m);
      // DoT and DoH run on netloop's own TLS with a netloop backend, on Deno's with the builtin one.
      for (const transport of ["tls", "https"]) {
        const line = listening.find((l) => l.transport === transport)!;
        assert.equal(line.backend, backend === "builtin" ? undefined : "netloop", transport);
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
}

testWith("upstreams over DoT and DoH (unbound), DoQ (the proxy's own server)", [
  quic,
  command("unbound"),
  command("openssl"),
], async () => {
  await using unbound = await startUnbound({ tls: true, https: true });
  await using s = await setup(true); // a DoQ server in front of another unbound
  const ca = [unbound.tlsCert!];
  const upstreams: [string, string[]][] = [
    [`tls://${unbound.tlsAddress}`, ca],
    [`https://${unbound.httpsAddress}/dns-query`, ca],
    [`quic://127.0.0.1:${s.port("quic")}`, [s.ca]],
  ];
  for (const [address, caCerts] of upstreams) {
    const upstream = new Upstream({ address, caCerts });
    try {
      // Twenty queries at once share one connection (HTTP/2 and QUIC streams, pipelined TLS).
      const names = Array.from({ length: 20 }, (_, i) => i % 2 === 0 ? "a.test." : "ns.test.");
      const queries = names.map((name, i) => buildQuery({ id: i + 1, name, type: 1 }));
      const replies = await Promise.all(
        queries.map((query) => upstream.exchange(query, parseMessage(query), 3000)),
      );
      for (const [i, reply] of replies.entries()) {
        assert.equal(reply.info.question!.key, parseMessage(queries[i]!).question!.key, address);
        assert.ok(reply.info.counts[1] >= 1, address);
      }
      assert.equal(upstream.connections, 1, `${address}: one connection`);
      assert.equal(upstream.healthy, true);
    } finally {
      upstream.close();
    }
    // And through a proxy, with its checks and cache.
    using proxy = new DnsProxy({ upstream: { upstreams: [{ address, caCerts }] } });
    const client = { address: "127.0.0.1", port: 1, transport: "udp" } as const;
    const answer = await proxy.handle(buildQuery({ id: 99, name: "a.test.", type: 1 }), client);
    const info = parseMessage(answer!);
    assert.equal(info.id, 99);
    assert.equal(info.counts[1], 2, address);
  }
  // A DoH upstream refusing the certificate (no CA given) fails and is marked down.
  const untrusted = new Upstream({ address: `https://${unbound.httpsAddress}`, maxFails: 1 });
  const query = buildQuery({ id: 1, name: "a.test.", type: 1 });
  await assert.rejects(untrusted.exchange(query, parseMessage(query), 2000));
  assert.equal(untrusted.healthy, false);
  untrusted.close();
});

testWith("DoT on netloop's TLS: kdig, pipelining, one record an answer, a garbage ClientHello", [
  command("kdig", "knot-dnsutils"),
  command("unbound"),
  command("openssl"),
], async () => {
  const dir = await Deno.makeTempDir({ prefix: "triad-edns-netloop-" });
  try {
    await using unbound = await startUnbound();
    const certs = await testCertificates(dir);
    await using server = await serveDnsOnNetloop(
      { upstream: { upstreams: [unbound.address] } },
      {
        listen: "127.0.0.1:0",
        backend: "epoll",
        tls: { listen: "127.0.0.1:0", cert: certs.cert, key: certs.key },
      },
    );
    const port = server.tlsAddress!.port;
    await garbageClientHelloCloses(port);
    const out = await run("kdig", [
      `+tls-ca=${certs.ca}`,
      "@127.0.0.1",
      "-p",
      String(port),
      "a.test",
    ]);
    assert.match(out, ANSWER);
    await pipelinedDot(port, await Deno.readTextFile(certs.ca));
    await oneRecordPerAnswer(port, await Deno.readTextFile(certs.ca));
    const metrics = await server.metrics();
    assert.match(metrics, /^dns_queries_total\{type="A",transport="tls"\} 6$/m);
    assert.match(metrics, /^dns_tls_handshakes_total\{transport="tls",result="ok"\} 3$/m);
    assert.match(metrics, /^dns_tls_handshakes_total\{transport="tls",result="failed"\} 1$/m);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

testWith("rate limit and query log cover DoT, DoH and DoQ; a DoT frame cut off", [
  quic,
  command("unbound"),
  command("openssl"),
], async () => {
  const dir = await Deno.makeTempDir({ prefix: "triad-edns-policy-" });
  const logs: string[] = [];
  try {
    await using unbound = await startUnbound();
    const certs = await testCertificates(dir);
    const ca = await Deno.readTextFile(certs.ca);
    using proxy = new DnsProxy({
      upstream: { upstreams: [unbound.address] },
      // 127.0.0.1 may ask 3 queries in a burst, then is refused (the ACL is the same check
      // before it, on the same client address).
      rateLimit: { rate: 0.001, burst: 3 },
      queryLog: true,
      logger: createLogger({ write: (line) => logs.push(line), level: "info" }),
    });
    await using server = await serveDns(proxy, {
      listen: "127.0.0.1:0",
      encrypted: {
        tls: "127.0.0.1:0",
        https: "127.0.0.1:0",
        quic: "127.0.0.1:0",
        certificate: {
          cert: await Deno.readTextFile(certs.cert),
          key: await Deno.readTextFile(certs.key),
        },
      },
    });
    const port = (t: string) => server.listeners.find((l) => l.transport === t)!.address.port;
    const query = buildQuery({ id: 0, name: "a.test.", type: 1 }) as Uint8Array<ArrayBuffer>;
    using client = Deno.createHttpClient({ caCerts: [ca] });
    const doh = async () => {
      const response = await fetch(`https://127.0.0.1:${port("https")}/dns-query`, {
        client,
        method: "POST",
        headers: { "content-type": "application/dns-message" },
        body: query,
      });
      return parseMessage(new Uint8Array(await response.arrayBuffer())).rcode;
    };
    const quicConn = await Deno.connectQuic({
      hostname: "127.0.0.1",
      port: port("quic"),
      caCerts: [ca],
      alpnProtocols: ["doq"],
    });
    const doq = async () =>
      parseMessage((await doqQuery(quicConn, frame(query)))!.subarray(2)).rcode;
    // The burst of 3 is spent over DoH, DoQ and DoT; then each transport is refused.
    const dot = await Deno.connectTls({ hostname: "127.0.0.1", port: port("tls"), caCerts: [ca] });
    const dotQuery = async () => {
      await dot.write(frame(buildQuery({ id: 5, name: "a.test.", type: 1 })));
      const [answer] = await readFrames(dot, 1);
      return parseMessage(answer!).rcode;
    };
    assert.equal(await doh(), 0);
    assert.equal(await doq(), 0);
    assert.equal(await dotQuery(), 0);
    assert.equal(await dotQuery(), 5);
    assert.equal(await doh(), 5);
    assert.equal(await doq(), 5);
    quicConn.close({ closeCode: 0, reason: "" });
    // A DoT frame announcing 100 bytes and sending 10, then the end: closed, nothing answered.
    const cut = new Uint8Array([0, 100, ...new Uint8Array(10)]);
    await dot.write(cut);
    await dot.closeWrite();
    assert.deepEqual(await readFrames(dot, 1), []);
    dot.close();
    const metrics = proxy.metrics.registry.expose();
    for (const transport of ["tls", "https", "quic"]) {
      assert.ok(
        logs.some((l) => l.includes('"msg":"query"') && l.includes(`"transport":"${transport}"`)),
        `query log of ${transport}`,
      );
    }
    assert.match(metrics, /^dns_rate_limited_total 3$/m);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("--tls-listen or --quic-listen without --tls-cert: an error saying so", async () => {
  for (const argv of [["--tls-listen=127.0.0.1:0"], ["--quic-listen=127.0.0.1:0"]]) {
    for (const backend of ["builtin", "epoll"]) {
      await assert.rejects(
        runDnsProxy({
          argv: ["--listen=127.0.0.1:0", `--backend=${backend}`, ...argv],
          env: {},
          resolvConf: "/dev/null",
          logger: createLogger({ write: () => {}, level: "error" }),
        }),
        /needs a certificate and key \(--tls-cert, --tls-key\)/,
        `${backend} ${argv}`,
      );
    }
  }
});
