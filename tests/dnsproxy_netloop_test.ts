import assert from "node:assert/strict";
import { buildQuery, parseMessage, Rcode, RrType, serveDnsOnNetloop } from "@triad/dnsproxy";
import { createLogger } from "@triad/core";
import { command, ioUring, testWith } from "./requirements.ts";
import { startUnbound } from "./servers/unbound.ts";
import { pollUntil } from "./wait_for.ts";
import { writeAndWaitUntilRead } from "./support.ts";
import {
  frame,
  openSockets,
  queryTcp,
  queryUdp,
  readFrames,
  settledSockets,
} from "./dnsproxy_client.ts";
import { normalized } from "./dnsproxy_client.ts";
import { malformedCases } from "./fixtures/malformed_dns.ts";

for (const backend of ["uring", "epoll", "portable"] as const) {
  const needs = backend === "uring" ? [command("unbound"), ioUring] : [command("unbound")];
  testWith(`serveDnsOnNetloop() on ${backend} answers like unbound`, needs, async (t) => {
    const socketsBefore = openSockets();
    {
      await using unbound = await startUnbound();
      await using server = await serveDnsOnNetloop(
        { upstream: { upstreams: [unbound.address], healthCheck: 0, timeout: 1000 } },
        { listen: "127.0.0.1:0", backend, loops: 2, logger: createLogger({ level: "warn" }) },
      );
      assert.match(server.backend, new RegExp(`^${backend}`));
      const port = server.address.port;
      await t.step("UDP: misses then hits equal unbound's answers", async () => {
        for (
          const [name, type] of [["a.test", 1], ["www.test", 1], ["nx.test", 1], [
            "q.bench",
            28,
          ]] as const
        ) {
          const query = buildQuery({ id: 99, name, type });
          const direct = await queryUdp(unbound.port, query);
          for (let round = 0; round < 3; round++) {
            const reply = await queryUdp(port, query);
            assert.ok(reply !== null, `${name}: answered`);
            assert.equal(normalized(reply), normalized(direct!), `${name} round ${round}`);
          }
        }
      });
      await t.step("TCP: pipelined queries, a split prefix, a big answer", async () => {
        const conn = await Deno.connect({ hostname: "127.0.0.1", port });
        try {
          const bytes = new Uint8Array([
            ...frame(buildQuery({ id: 1, name: "big.test", type: RrType.TXT })),
            ...frame(buildQuery({ id: 2, name: "a.test", type: RrType.A })),
          ]);
          await writeAndWaitUntilRead(conn, bytes.subarray(0, 1)); // read apart from the rest
          await conn.write(bytes.subarray(1));
          const replies = await readFrames(conn, 2);
          const byId = new Map(replies.map((r) => [parseMessage(r).id, parseMessage(r)]));
          assert.equal(byId.get(1)?.counts[1], 12);
          assert.equal(byId.get(2)?.counts[1], 2);
        } finally {
          conn.close();
        }
      });
      await t.step("a truncated UDP answer, then TCP from the loop's own pool", async () => {
        const query = buildQuery({ id: 5, name: "big.test", type: RrType.TXT, udpSize: 512 });
        const udp = parseMessage((await queryUdp(port, query))!);
        assert.equal(udp.flags & 0x0200, 0x0200);
        assert.equal(parseMessage((await queryTcp(port, query))!).counts[1], 12);
      });
      await t.step("malformed datagrams get FORMERR or nothing", async () => {
        for (const { name, packet, expect } of malformedCases()) {
          const reply = await queryUdp(port, packet, expect === "drop" ? 100 : 1000);
          if (expect === "drop") assert.equal(reply, null, name);
          else assert.equal(reply![3]! & 0xf, Rcode.FORMERR, name);
        }
        const reply = await queryUdp(port, buildQuery({ id: 7, name: "a.test", type: 1 }));
        assert.equal(parseMessage(reply!).rcode, Rcode.NOERROR);
      });
      await t.step("metrics merge every loop; reconfigure reaches every loop", async () => {
        const text = await server.metrics();
        assert.match(text, /^dns_malformed_formerr_total \d+$/m);
        server.reconfigure({
          upstream: { upstreams: [unbound.address], healthCheck: 0 },
          acl: { allow: ["10.0.0.0/8"] },
        });
        // Every loop refuses once the settings reach it; queries from new ports spread over the
        // loops, so eight refused in a row is the barrier.
        await pollUntil(async () => {
          for (let i = 0; i < 8; i++) {
            const reply = await queryUdp(port, buildQuery({ id: 8, name: "a.test", type: 1 }));
            if (parseMessage(reply!).rcode !== Rcode.REFUSED) return false;
          }
          return true;
        }, "the new ACL in every loop");
      });
    }
    assert.equal(await settledSockets(socketsBefore), socketsBefore, "no socket or pipe left open");
  });
}

testWith(
  "serveDnsOnNetloop() on auto carries UDP on epoll and TCP on the best backend",
  [command("unbound"), ioUring],
  async () => {
    await using unbound = await startUnbound();
    await using server = await serveDnsOnNetloop(
      { upstream: { upstreams: [unbound.address], healthCheck: 0, timeout: 1000 } },
      { listen: "127.0.0.1:0", backend: "auto", logger: createLogger({ level: "warn" }) },
    );
    assert.match(server.backend, /^epoll for UDP .*, uring for TCP/);
    const query = buildQuery({ id: 7, name: "a.test", type: 1 });
    const udp = await queryUdp(server.address.port, query);
    const tcp = await queryTcp(server.address.port, query);
    assert.ok(udp !== null && tcp !== null);
    assert.equal(parseMessage(udp).rcode, Rcode.NOERROR);
    assert.equal(parseMessage(tcp).rcode, Rcode.NOERROR);
  },
);
