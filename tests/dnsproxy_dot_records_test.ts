/**
 * The DNS proxy on netloop writes each DoT answer, length prefix included, as one TLS record: the
 * prefix written apart was a record of its own (22 more bytes on the wire and one more seal and
 * open per answer). A relay between a TLS client and the proxy counts the bytes of one answer.
 */
import assert from "node:assert/strict";
import { buildQuery, parseMessage, serveDnsOnNetloop } from "@triad/dnsproxy";
import { command, ffi, linux, testWith } from "./requirements.ts";
import { startUnbound, testCertificates } from "./servers/unbound.ts";
import { frame, readFrames } from "./dnsproxy_client.ts";

/** TLS 1.3 with AES-GCM or ChaCha20: a 5-byte header, the inner content type, a 16-byte tag. */
const RECORD_OVERHEAD = 22;

testWith("DoT on netloop: an answer and its length prefix are one TLS record", [
  linux,
  ffi,
  command("unbound"),
  command("openssl"),
], async () => {
  const dir = await Deno.makeTempDir({ prefix: "triad-dot-records-" });
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
    // The relay: every byte from the proxy to the client is counted on its way.
    const relay = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    let toClient = 0;
    const relayed = (async () => {
      const client = await relay.accept();
      const upstream = await Deno.connect({ hostname: "127.0.0.1", port: server.tlsAddress!.port });
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
      caCerts: [await Deno.readTextFile(certs.ca)],
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
      `bytes on the wire for a ${answer!.length}-byte answer (two records: ${
        2 + answer!.length + 2 * RECORD_OVERHEAD
      })`,
    );
    conn.close();
    relay.close();
    await relayed;
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
