import assert from "node:assert/strict";
import {
  buildQuery,
  DnsProxy,
  nameToText,
  parseMessage,
  Rcode,
  RrType,
  serveDns,
  UpstreamGroup,
} from "@triad/dnsproxy";
import { cacheKey } from "../dnsproxy/cache.ts";
import { keyHash } from "../dnsproxy/_key_hash.ts";
import { pollUntil } from "./wait_for.ts";
import { command, testWith } from "./requirements.ts";
import { startUnbound } from "./servers/unbound.ts";
import { queryUdp } from "./dnsproxy_client.ts";
import { forward, startFakeUpstream } from "./dnsproxy_fake_upstream.ts";

const needs = [command("unbound"), command("openssl")];

testWith("upstreams: retry, health, limits, deduplication, TCP and TLS", needs, async (t) => {
  await using unbound = await startUnbound({ tls: true });
  await using blackHole = await startFakeUpstream(() => {});
  /** Relays each query to unbound 100 ms late, so that queries sent together are in flight. */
  const slowRelay = () =>
    startFakeUpstream(async (query, reply) => {
      await new Promise((resolve) => setTimeout(resolve, 100));
      const real = await forward(unbound.port, query);
      if (real !== null) reply(real);
    });

  await t.step("a silent upstream is retried on another, then marked down", async () => {
    using group = new UpstreamGroup({
      upstreams: [blackHole.address, unbound.address],
      policy: "sequential",
      timeout: 150,
      maxFails: 2,
      healthCheck: 0,
    });
    const query = buildQuery({ id: 1, name: "a.test", type: RrType.A });
    for (let i = 0; i < 2; i++) {
      const started = performance.now();
      const result = await group.resolve(query, parseMessage(query));
      assert.ok(result.ok && result.upstream === unbound.address);
      assert.ok(performance.now() - started < 400);
    }
    assert.equal(group.upstreams[0]!.healthy, false);
    // Down upstreams go last: the next query goes straight to unbound.
    const started = performance.now();
    assert.ok((await group.resolve(query, parseMessage(query))).ok);
    assert.ok(performance.now() - started < 100);
  });

  await t.step("active probes bring a recovered upstream back", async () => {
    let answering = false;
    await using flaky = await startFakeUpstream(async (query, reply) => {
      if (!answering) return;
      const real = await forward(unbound.port, query);
      if (real !== null) reply(real);
    });
    using group = new UpstreamGroup({
      upstreams: [flaky.address],
      timeout: 100,
      maxFails: 1,
      healthCheck: 50,
      attempts: 1,
    });
    const query = buildQuery({ id: 1, name: "a.test", type: RrType.A });
    assert.deepEqual(await group.resolve(query, parseMessage(query)), {
      ok: false,
      reason: "failed",
    });
    assert.equal(group.upstreams[0]!.healthy, false);
    answering = true;
    await pollUntil(() => group.upstreams[0]!.healthy, "the upstream up again", 2000);
  });

  await t.step("all upstreams failing gives SERVFAIL; max_concurrent gives REFUSED", async () => {
    using proxy = new DnsProxy({
      upstream: {
        upstreams: [blackHole.address],
        timeout: 200,
        attempts: 1,
        maxConcurrent: 1,
        healthCheck: 0,
      },
    });
    await using server = await serveDns(proxy, { listen: "127.0.0.1:0" });
    const port = server.address.port;
    const before = blackHole.queries;
    const [first, second] = await Promise.all([
      queryUdp(port, buildQuery({ id: 1, name: "one.test", type: 1 })),
      // The second comes once the first is at the upstream: the one query allowed in flight.
      pollUntil(() => blackHole.queries > before, "the first query upstream").then(() =>
        queryUdp(port, buildQuery({ id: 2, name: "two.test", type: 1 }))
      ),
    ]);
    assert.equal(parseMessage(first!).rcode, Rcode.SERVFAIL);
    assert.equal(parseMessage(second!).rcode, Rcode.REFUSED);
  });

  await t.step("identical questions in flight share one upstream query", async () => {
    await using slow = await slowRelay();
    using proxy = new DnsProxy({ upstream: { upstreams: [slow.address], healthCheck: 0 } });
    await using server = await serveDns(proxy, { listen: "127.0.0.1:0" });
    const replies = await Promise.all(
      Array.from(
        { length: 20 },
        (_, i) => queryUdp(server.address.port, buildQuery({ id: i, name: "a.test", type: 1 })),
      ),
    );
    assert.ok(replies.every((r, i) => r !== null && parseMessage(r).id === i));
    assert.equal(slow.queries, 1);
    assert.match(proxy.metrics.registry.expose(), /^dns_inflight_deduplicated_total 19$/m);
  });

  await t.step(
    "questions whose keys share a hash in flight together each get their own",
    async () => {
      const seen = new Map<number, string>();
      let names: [string, string] | undefined;
      for (let i = 0; names === undefined; i++) {
        const name = `c${i}.test`;
        const hash = keyHash(cacheKey(parseMessage(buildQuery({ id: 0, name, type: 1 }))));
        const other = seen.get(hash);
        if (other !== undefined) names = [other, name];
        seen.set(hash, name);
      }
      await using slow = await slowRelay();
      using proxy = new DnsProxy({ upstream: { upstreams: [slow.address], healthCheck: 0 } });
      await using server = await serveDns(proxy, { listen: "127.0.0.1:0" });
      const replies = await Promise.all(
        names.map((name, i) => queryUdp(server.address.port, buildQuery({ id: i, name, type: 1 }))),
      );
      for (const [i, reply] of replies.entries()) {
        assert.ok(reply !== null);
        assert.equal(parseMessage(reply).rcode, Rcode.NXDOMAIN);
        assert.equal(nameToText(reply, 12), `${names[i]}.`, "the answer to its own question");
      }
      assert.equal(slow.queries, 2);
    },
  );

  await t.step("popular entries are prefetched before they expire", async () => {
    let clock = 0; // the cache's clock, moved by the test
    using proxy = new DnsProxy({
      upstream: { upstreams: [unbound.address], healthCheck: 0 },
      cache: { prefetchHits: 1, prefetchFraction: 0.6, now: () => clock },
    });
    await using server = await serveDns(proxy, { listen: "127.0.0.1:0" });
    const query = buildQuery({ id: 1, name: "short.test", type: 1 }); // TTL 2
    const key = cacheKey(parseMessage(query));
    await queryUdp(server.address.port, query);
    await queryUdp(server.address.port, query);
    clock = 1100; // under 60 % of 2 s left
    await queryUdp(server.address.port, query);
    assert.match(proxy.metrics.registry.expose(), /^dns_cache_prefetches_total 1$/m);
    await pollUntil(
      () => proxy.cache.lookup(key)?.entry.storedAt === 1100,
      "the prefetched answer in the cache",
    );
    clock = 2100; // past the first answer's expiry, within the prefetched one's
    await queryUdp(server.address.port, query);
    assert.match(proxy.metrics.registry.expose(), /^dns_cache_misses_total 1$/m);
  });

  await t.step("tcp:// upstreams pipeline over one reused connection", async () => {
    using group = new UpstreamGroup({ upstreams: [`tcp://${unbound.address}`], healthCheck: 0 });
    const results = await Promise.all(Array.from({ length: 30 }, (_, i) => {
      const query = buildQuery({ id: i, name: `p${i}.bench`, type: 1 });
      return group.resolve(query, parseMessage(query));
    }));
    assert.ok(results.every((r) => r.ok && r.reply.transport === "tcp"));
    assert.equal(group.upstreams[0]!.connections, 1);
  });

  await t.step("tls:// upstreams verify the certificate and answer", async () => {
    using group = new UpstreamGroup({
      upstreams: [{ address: `tls://${unbound.tlsAddress}`, caCerts: [unbound.tlsCert!] }],
      healthCheck: 0,
    });
    const query = buildQuery({ id: 7, name: "a.test", type: RrType.AAAA });
    const result = await group.resolve(query, parseMessage(query));
    assert.ok(result.ok && result.reply.transport === "tls");
    assert.equal(result.reply.info.counts[1], 1);
    using untrusted = new UpstreamGroup({
      upstreams: [`tls://${unbound.tlsAddress}`],
      healthCheck: 0,
      attempts: 1,
    });
    assert.equal((await untrusted.resolve(query, parseMessage(query))).ok, false);
  });

  await t.step("a truncated UDP answer is retried over TCP", async () => {
    using group = new UpstreamGroup({ upstreams: [unbound.address], healthCheck: 0 });
    const query = buildQuery({ id: 8, name: "big.test", type: RrType.TXT, udpSize: 512 });
    const result = await group.resolve(query, parseMessage(query));
    assert.ok(result.ok && result.reply.transport === "tcp");
    assert.equal(result.reply.info.counts[1], 12);
  });
});
