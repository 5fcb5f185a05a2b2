import assert from "node:assert/strict";
import { buildQuery, DnsProxy, parseMessage, Rcode, RrType, serveDns } from "@triad/dnsproxy";
import type { ProxySettings } from "@triad/dnsproxy";
import { command, testWith } from "./requirements.ts";
import { startUnbound } from "./servers/unbound.ts";
import { frame, openFds, queryTcp, queryUdp, readFrames } from "./dnsproxy_client.ts";
import { normalized } from "./dnsproxy_client.ts";
import { writeAndWaitUntilRead } from "./support.ts";

const needs = [command("unbound")];

function settings(upstream: string, extra: Partial<ProxySettings> = {}): ProxySettings {
  return { upstream: { upstreams: [upstream], healthCheck: 0, timeout: 1000 }, ...extra };
}

testWith("DnsProxy answers equal unbound's over UDP and TCP", needs, async (t) => {
  const fdsBefore = openFds();
  {
    await using unbound = await startUnbound();
    // The cache's clock: TTLs count down when the test moves it, not while the machine is slow.
    let clock = 0;
    using proxy = new DnsProxy(settings(unbound.address, { cache: { now: () => clock } }));
    await using server = await serveDns(proxy, { listen: "127.0.0.1:0" });
    const port = server.address.port;
    const questions: [string, number][] = [
      ["a.test", RrType.A],
      ["a.test", RrType.AAAA],
      ["www.test", RrType.A],
      ["mail.test", RrType.MX],
      ["txt.test", RrType.TXT],
      ["nx.test", RrType.A],
      ["a.test", RrType.MX],
      ["x1.bench", RrType.A],
    ];
    await t.step("first answer (miss) and second (hit) equal unbound's", async () => {
      for (const [name, type] of questions) {
        const query = buildQuery({ id: 4321, name, type });
        const direct = await queryUdp(unbound.port, query);
        assert.ok(direct !== null, `unbound answers ${name}`);
        for (const round of ["miss", "hit"]) {
          const viaProxy = await queryUdp(port, query);
          assert.ok(viaProxy !== null, `${round}: the proxy answers ${name}`);
          assert.equal(normalized(viaProxy), normalized(direct), `${round}: ${name} ${type}`);
        }
      }
      assert.equal(
        proxy.metrics.registry.expose().match(/^dns_cache_hits_total (\d+)$/m)?.[1],
        "8",
      );
    });
    await t.step("TTLs go down in cached answers", async () => {
      const query = buildQuery({ id: 1, name: "short.test", type: RrType.A });
      const first = await queryUdp(port, query);
      clock += 1100;
      const second = await queryUdp(port, query);
      const ttl = (bytes: Uint8Array) =>
        new DataView(bytes.buffer).getUint32(parseMessage(bytes).ttlOffsets[0]!);
      assert.ok(ttl(second!) < ttl(first!), `${ttl(second!)} < ${ttl(first!)}`);
    });
    await t.step("an answer too big for UDP is truncated, and whole over TCP", async () => {
      const query = buildQuery({ id: 77, name: "big.test", type: RrType.TXT });
      const overUdp = parseMessage((await queryUdp(port, query))!);
      assert.equal(overUdp.flags & 0x0200, 0x0200);
      assert.equal(overUdp.counts[1], 0);
      const overTcp = parseMessage((await queryTcp(port, query))!);
      assert.equal(overTcp.counts[1], 12);
      assert.equal(overTcp.flags & 0x0200, 0);
      // From the cache now: truncated again over UDP, with and without EDNS.
      for (const edns of [true, false]) {
        const hit = await queryUdp(
          port,
          buildQuery({ id: 81, name: "big.test", type: RrType.TXT, edns }),
        );
        const info = parseMessage(hit!);
        assert.equal(info.id, 81);
        assert.equal(info.flags & 0x0200, 0x0200);
        assert.equal(info.counts[1], 0);
        assert.equal(info.edns === undefined, !edns);
        assert.ok(hit!.length <= (edns ? 1232 : 512));
      }
    });
    await t.step("without EDNS: no OPT, 512-byte limit", async () => {
      const query = buildQuery({ id: 78, name: "a.test", type: RrType.A, edns: false });
      const answer = parseMessage((await queryUdp(port, query))!);
      assert.equal(answer.edns, undefined);
      assert.equal(answer.counts[1], 2);
    });
    await t.step("EDNS size is advertised as 1232", async () => {
      const query = buildQuery({ id: 79, name: "a.test", type: RrType.A, udpSize: 4096 });
      assert.equal(parseMessage((await queryUdp(port, query))!).edns?.udpSize, 1232);
    });
    await t.step("ANY is answered per RFC 8482", async () => {
      const query = buildQuery({ id: 80, name: "a.test", type: RrType.ANY });
      const answer = await queryUdp(port, query);
      const info = parseMessage(answer!);
      assert.deepEqual(info.counts.slice(0, 2), [1, 1]);
      assert.match(new TextDecoder().decode(answer!), /RFC8482/);
    });
    await t.step("the query's letter case is echoed", async () => {
      const query = buildQuery({ id: 81, name: "A.tEsT", type: RrType.A });
      const answer = await queryUdp(port, query);
      assert.deepEqual(answer!.subarray(12, 20), query.subarray(12, 20));
    });
    await t.step(
      "TCP: length prefix split across writes, pipelined, answered out of order",
      async () => {
        const conn = await Deno.connect({ hostname: "127.0.0.1", port });
        try {
          const miss = frame(buildQuery({ id: 1001, name: "split1.bench", type: RrType.A }));
          const hit = frame(buildQuery({ id: 1002, name: "a.test", type: RrType.A }));
          // One byte of the first prefix, then the rest, then both queries at once, each part
          // read by the server before the next is written.
          const bytes = new Uint8Array([...miss, ...hit]);
          await writeAndWaitUntilRead(conn, bytes.subarray(0, 1));
          await writeAndWaitUntilRead(conn, bytes.subarray(1, 5));
          await conn.write(bytes.subarray(5));
          const answers = await readFrames(conn, 2);
          assert.deepEqual(answers.map((a) => parseMessage(a).id), [1002, 1001]);
        } finally {
          conn.close();
        }
      },
    );
    await t.step("an idle TCP connection is closed", async () => {
      await using idleServer = await serveDns(proxy, { listen: "127.0.0.1:0", idleTimeout: 100 });
      const conn = await Deno.connect({ hostname: "127.0.0.1", port: idleServer.address.port });
      const started = performance.now();
      const read = await conn.read(new Uint8Array(10)).catch(() => null);
      assert.equal(read, null);
      assert.ok(performance.now() - started < 1500);
      conn.close();
    });
  }
  assert.equal(openFds(), fdsBefore, "no file descriptor left open");
});

testWith(
  "DnsProxy serves stale or SERVFAIL within the timeout when the upstream dies",
  needs,
  async () => {
    const unbound = await startUnbound();
    try {
      let clock = 0;
      using proxy = new DnsProxy({
        upstream: { upstreams: [unbound.address], healthCheck: 0, timeout: 300, attempts: 1 },
        staleAnswerTimeout: 200,
        cache: { now: () => clock },
      });
      await using server = await serveDns(proxy, { listen: "127.0.0.1:0" });
      const port = server.address.port;
      const query = buildQuery({ id: 5, name: "short.test", type: RrType.A });
      assert.equal(parseMessage((await queryUdp(port, query))!).rcode, Rcode.NOERROR);
      await unbound.stop();
      clock += 2100; // short.test has TTL 2: expired on the cache's clock
      let started = performance.now();
      const stale = (await queryUdp(port, query))!;
      assert.ok(performance.now() - started < 600, "stale answer within the timeout");
      const info = parseMessage(stale);
      assert.equal(info.rcode, Rcode.NOERROR);
      assert.equal(new DataView(stale.buffer).getUint32(info.ttlOffsets[0]!), 30);
      started = performance.now();
      const failed = parseMessage(
        (await queryUdp(port, buildQuery({ id: 6, name: "new.test", type: 1 })))!,
      );
      assert.equal(failed.rcode, Rcode.SERVFAIL);
      assert.ok(performance.now() - started < 800, "SERVFAIL within the timeout");
      assert.match(proxy.metrics.registry.expose(), /^dns_cache_stale_total 1$/m);
    } finally {
      await unbound.stop();
    }
  },
);
