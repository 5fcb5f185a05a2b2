import assert from "node:assert/strict";
import { buildQuery, DnsProxy, parseMessage, Rcode, RrType, serveDns } from "@triad/dnsproxy";
import { command, testWith } from "./requirements.ts";
import { startUnbound } from "./servers/unbound.ts";
import { frame, openFds, queryUdp, readFrames } from "./dnsproxy_client.ts";
import { forward, startFakeUpstream } from "./dnsproxy_fake_upstream.ts";
import { malformedCases } from "./fixtures/malformed_dns.ts";

const needs = [command("unbound")];

function firstA(bytes: Uint8Array): string {
  const info = parseMessage(bytes);
  const at = info.ttlOffsets[0]! + 6;
  return Array.from(bytes.subarray(at, at + 4)).join(".");
}

/** A copy of `answer` with the A records' addresses set to 6.6.6.6. */
function poisoned(answer: Uint8Array): Uint8Array {
  const copy = answer.slice();
  for (const at of parseMessage(copy).ttlOffsets.slice(0, 2)) copy.set([6, 6, 6, 6], at + 6);
  return copy;
}

testWith("a hostile upstream cannot poison the cache", needs, async (t) => {
  await using unbound = await startUnbound();
  // Relays to unbound, but first sends three forgeries carrying 6.6.6.6: a wrong ID, the right ID
  // for another question, and the right answer from another port.
  await using hostile = await startFakeUpstream(async (query, reply, otherPort) => {
    const real = await forward(unbound.port, query);
    if (real === null) return;
    const wrongId = poisoned(real);
    wrongId[0] = wrongId[0]! ^ 0xff;
    reply(wrongId);
    const victim = (await forward(
      unbound.port,
      buildQuery({ id: (query[0]! << 8) | query[1]!, name: "ns.test", type: RrType.A }),
    ))!;
    victim[2] = victim[2]! | 0x80;
    reply(poisoned(victim));
    reply(poisoned(real), otherPort);
    setTimeout(() => reply(real), 50);
  });
  using proxy = new DnsProxy({
    upstream: { upstreams: [hostile.address], healthCheck: 0, timeout: 1000 },
  });
  await using server = await serveDns(proxy, { listen: "127.0.0.1:0" });
  const port = server.address.port;
  await t.step("the genuine answer wins and every forgery is counted", async () => {
    const answer = await queryUdp(port, buildQuery({ id: 1, name: "a.test", type: RrType.A }));
    assert.equal(firstA(answer!), "10.0.0.1");
    const text = proxy.metrics.registry.expose();
    for (const reason of ["id", "question", "source"]) {
      assert.match(
        text,
        new RegExp(`dns_upstream_mismatches_total\\{[^}]*reason="${reason}"\\} 1`),
      );
    }
  });
  await t.step("nothing forged was cached", async () => {
    const again = await queryUdp(port, buildQuery({ id: 2, name: "a.test", type: RrType.A }));
    assert.equal(firstA(again!), "10.0.0.1");
    assert.equal(proxy.cache.size, 1);
  });
});

testWith(
  "malformed packets get FORMERR or nothing, and the proxy keeps answering",
  needs,
  async (t) => {
    const cases = malformedCases();
    assert.ok(cases.length >= 50, `${cases.length} cases`);
    const fdsBefore = openFds();
    {
      await using unbound = await startUnbound();
      using proxy = new DnsProxy({ upstream: { upstreams: [unbound.address], healthCheck: 0 } });
      await using server = await serveDns(proxy, { listen: "127.0.0.1:0" });
      const port = server.address.port;
      const good = buildQuery({ id: 999, name: "a.test", type: RrType.A });
      const check = (
        name: string,
        expect: string,
        packet: Uint8Array,
        reply: Uint8Array | undefined,
      ) => {
        if (expect === "drop") {
          assert.equal(reply, undefined, `${name}: dropped`);
          return;
        }
        assert.ok(reply !== undefined, `${name}: answered`);
        assert.deepEqual([reply[0], reply[1]], [packet[0], packet[1]], `${name}: same ID`);
        assert.equal(reply[3]! & 0xf, Rcode.FORMERR, `${name}: FORMERR`);
        assert.equal(reply[2]! & 0x80, 0x80, `${name}: QR set`);
      };
      await t.step(`${cases.length} packets over UDP`, async () => {
        for (const { name, packet, expect } of cases) {
          const reply = await queryUdp(port, packet, expect === "drop" ? 150 : 1000);
          check(name, expect, packet, reply ?? undefined);
        }
        assert.ok((await queryUdp(port, good)) !== null, "still answering over UDP");
      });
      await t.step(`${cases.length} packets over one TCP connection`, async () => {
        const conn = await Deno.connect({ hostname: "127.0.0.1", port });
        try {
          const answered = cases.filter((c) => c.expect === "formerr");
          for (const { packet } of cases) await conn.write(frame(packet));
          await conn.write(frame(good));
          const replies = await readFrames(conn, answered.length + 1, 3000);
          assert.equal(replies.length, answered.length + 1);
          const byId = new Map(replies.map((r) => [(r[0]! << 8) | r[1]!, r]));
          for (const { name, packet, expect } of cases) {
            if (packet.length < 2) continue;
            const reply = expect === "drop" ? undefined : byId.get((packet[0]! << 8) | packet[1]!);
            check(name, expect, packet, reply);
          }
          assert.equal(
            parseMessage(byId.get(999)!).rcode,
            Rcode.NOERROR,
            "still answering over TCP",
          );
        } finally {
          conn.close();
        }
      });
    }
    assert.equal(openFds(), fdsBefore, "no file descriptor left open");
  },
);

testWith("ACL refuses clients outside it; the rate limit drops over UDP", needs, async (t) => {
  await using unbound = await startUnbound();
  await t.step("a proxy allowing only 10.0.0.0/8 refuses loopback", async () => {
    using proxy = new DnsProxy({
      upstream: { upstreams: [unbound.address], healthCheck: 0 },
      acl: { allow: ["10.0.0.0/8"] },
    });
    await using server = await serveDns(proxy, { listen: "127.0.0.1:0" });
    const reply = await queryUdp(
      server.address.port,
      buildQuery({ id: 3, name: "a.test", type: 1 }),
    );
    assert.equal(parseMessage(reply!).rcode, Rcode.REFUSED);
    assert.match(proxy.metrics.registry.expose(), /^dns_acl_refused_total 1$/m);
  });
  await t.step("a token bucket of 5 lets about 5 of 20 quick queries through", async () => {
    using proxy = new DnsProxy({
      upstream: { upstreams: [unbound.address], healthCheck: 0 },
      rateLimit: { rate: 5, burst: 5 },
    });
    await using server = await serveDns(proxy, { listen: "127.0.0.1:0" });
    const replies = await Promise.all(
      Array.from(
        { length: 20 },
        (_, i) =>
          queryUdp(server.address.port, buildQuery({ id: i, name: "a.test", type: 1 }), 500),
      ),
    );
    const answered = replies.filter((r) => r !== null).length;
    assert.ok(answered >= 5 && answered <= 7, `${answered} answered`);
    assert.match(proxy.metrics.registry.expose(), /^dns_rate_limited_total 1[3-5]$/m);
  });
});
