import assert from "node:assert/strict";
import { cacheKey, DnsCache } from "./cache.ts";
import { buildQuery } from "./wire/builders.ts";
import { parseMessage } from "./wire/message.ts";
import { nameToText } from "./wire/name.ts";
import { keyHash } from "./_key_hash.ts";

/** An answer to `name` A: `rcode`, one A record with `ttl` unless negative, then an SOA. */
function answer(name: string, ttl: number, options: { rcode?: number; soa?: boolean } = {}) {
  const query = buildQuery({ id: 1, name, type: 1, edns: false });
  const rcode = options.rcode ?? 0;
  const records: number[] = [];
  let an = 0;
  let ns = 0;
  if (rcode === 0 && ttl >= 0) {
    an = 1;
    records.push(0xc0, 12, 0, 1, 0, 1, ttl >>> 24, (ttl >> 16) & 255, (ttl >> 8) & 255, ttl & 255);
    records.push(0, 4, 10, 0, 0, 1);
  }
  if (options.soa) {
    ns = 1;
    records.push(0xc0, 12, 0, 6, 0, 1, 0, 0, 1, 44, 0, 22, 0, 0, 0, 0, 0, 1);
    records.push(0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 30);
  }
  const out = new Uint8Array([...query, ...records]);
  out[2] = 0x81;
  out[3] = 0x80 | rcode;
  out[7] = an;
  out[9] = ns;
  return out;
}

function store(cache: DnsCache, bytes: Uint8Array): boolean {
  const info = parseMessage(bytes);
  return cache.store(cacheKey(info), bytes, info);
}

function cacheKeyOf(name: string): string {
  return cacheKey(parseMessage(buildQuery({ id: 9, name, type: 1, edns: false })));
}

const buffers = new WeakMap<ArrayBufferLike, number>();
let bufferCount = 0;
/** Which slab (of 256 KiB, in which buffer) a cached answer's bytes are in. */
function slabOf(bytes: Uint8Array): string {
  if (!buffers.has(bytes.buffer)) buffers.set(bytes.buffer, bufferCount++);
  return `${buffers.get(bytes.buffer)}:${Math.floor(bytes.byteOffset / (256 * 1024))}`;
}

/** Asserts the cache answers `name` with the bytes `answer(name, 60)` stored, under query ID `id`. */
function assertAnswers(cache: DnsCache, name: string, id: number): void {
  const expected = answer(name, 60);
  expected[1] = id;
  assert.deepEqual(
    cache.answer(lookup(cache, name)!, buildQuery({ id, name, type: 1, edns: false }), true),
    expected,
  );
}

/** (Asserted with `ok`: a failed `equal` on a lookup would print its entry's 256 KiB slab.) */
function lookup(cache: DnsCache, name: string) {
  return cache.lookup(cacheKey(parseMessage(buildQuery({ id: 9, name, type: 1, edns: false }))));
}

Deno.test("DnsCache stores what RFC 2308 allows", async (t) => {
  const cache = new DnsCache({ now: () => 0 });
  await t.step("positive answers", () => assert.equal(store(cache, answer("a.", 60)), true));
  await t.step("NXDOMAIN with SOA, for min(SOA TTL, MINIMUM)", () => {
    assert.equal(store(cache, answer("nx.", -1, { rcode: 3, soa: true })), true);
    assert.equal(lookup(cache, "nx.")?.entry.lifetime, 30);
    assert.equal(lookup(cache, "nx.")?.entry.negative, true);
  });
  await t.step("NODATA with SOA", () => {
    assert.equal(store(cache, answer("nodata.", -1, { soa: true })), true);
  });
  await t.step("not negative answers without SOA, SERVFAIL, TTL 0", () => {
    assert.equal(store(cache, answer("nosoa.", -1, { rcode: 3 })), false);
    assert.equal(store(cache, answer("fail.", -1, { rcode: 2, soa: true })), false);
    assert.equal(store(cache, answer("zero.", 0)), false);
  });
});

Deno.test("DnsCache decrements TTLs, clamps them, then serves stale", () => {
  let clock = 0;
  const cache = new DnsCache({ now: () => clock, minTtl: 10, maxTtl: 100, staleTtl: 60 });
  store(cache, answer("a.", 5));
  store(cache, answer("b.", 1000));
  assert.equal(lookup(cache, "a.")?.entry.lifetime, 10);
  assert.equal(lookup(cache, "b.")?.entry.lifetime, 100);
  assert.deepEqual(lookup(cache, "b.")?.entry.ttls, [100]);
  clock = 4_000;
  const query = buildQuery({ id: 0xbeef, name: "A.", type: 1, edns: false });
  const fresh = cache.answer(lookup(cache, "a.")!, query);
  assert.deepEqual([fresh[0], fresh[1]], [0xbe, 0xef]);
  assert.equal(fresh[13], 65); // the client's letter case
  assert.equal(new DataView(fresh.buffer).getUint32(25), 6); // 10 - 4
  clock = 11_000;
  const stale = lookup(cache, "a.")!;
  assert.equal(stale.stale, true);
  assert.equal(new DataView(cache.answer(stale, query).buffer).getUint32(25), 30);
  clock = 71_000;
  assert.ok(lookup(cache, "a.") === undefined, "a. is not cached");
});

Deno.test("DnsCache evicts least recently used entries by count and bytes", () => {
  const cache = new DnsCache({ maxEntries: 2, now: () => 0 });
  store(cache, answer("a.", 60));
  store(cache, answer("b.", 60));
  lookup(cache, "a."); // a is now more recent than b
  store(cache, answer("c.", 60));
  assert.notEqual(lookup(cache, "a."), undefined);
  assert.ok(lookup(cache, "b.") === undefined, "b. is not cached");
  assert.equal(cache.evictions, 1);
  // a was served after c was stored, c was not: c is the least recently used now.
  store(cache, answer("d.", 60));
  assert.ok(lookup(cache, "c.") === undefined, "c. is not cached");
  assert.notEqual(lookup(cache, "a."), undefined);
  assert.notEqual(lookup(cache, "d."), undefined);
  assert.equal(cache.evictions, 2);
  const small = new DnsCache({ maxBytes: 500, now: () => 0 });
  for (const name of ["a.", "b.", "c.", "d."]) store(small, answer(name, 60));
  assert.ok(small.bytes <= 500);
  assert.ok(small.size < 4);
  small.configure({ maxEntries: 1 });
  assert.equal(small.size, 1);
});

Deno.test("DnsCache keeps every entry when max_entries is raised in place", () => {
  const cache = new DnsCache({ maxEntries: 100, now: () => 0 });
  for (let i = 0; i < 100; i++) store(cache, answer(`first${i}.`, 60));
  // Raised: the arrays and the table are made for 300 here, with 100 entries in them.
  cache.configure({ maxEntries: 300 });
  for (let i = 0; i < 200; i++) store(cache, answer(`second${i}.`, 60));
  assert.equal(cache.size, 300);
  assert.equal(cache.evictions, 0);
  for (let i = 0; i < 100; i++) assert.ok(lookup(cache, `first${i}.`), `first${i}.`);
  for (let i = 0; i < 200; i++) assert.ok(lookup(cache, `second${i}.`), `second${i}.`);
  store(cache, answer("third.", 60));
  assert.equal(cache.size, 300);
  assert.equal(cache.evictions, 1);
});

Deno.test("DnsCache keeps entries in use through many evictions", () => {
  const cache = new DnsCache({ maxEntries: 100, now: () => 0 });
  const hot = Array.from({ length: 10 }, (_, i) => `hot${i}.`);
  for (const name of hot) store(cache, answer(name, 60));
  for (let i = 0; i < 2000; i++) {
    store(cache, answer(`cold${i}.`, 60));
    if (i % 20 === 0) {
      for (const name of hot) assert.notEqual(lookup(cache, name), undefined, name);
    }
  }
  assert.equal(cache.size, 100);
  assert.equal(cache.evictions, 1910);
  // The newest cold entries are kept, the older ones went first.
  assert.notEqual(lookup(cache, "cold1999."), undefined);
  assert.ok(lookup(cache, "cold1000.") === undefined, "cold1000. is not cached");
  cache.clear();
  for (let i = 0; i < 150; i++) store(cache, answer(`again${i}.`, 60));
  assert.equal(cache.size, 100);
  assert.notEqual(lookup(cache, "again149."), undefined);
  assert.ok(lookup(cache, "again0.") === undefined, "again0. is not cached");
});

Deno.test("DnsCache copies answers into slabs it compacts as answers go", () => {
  const cache = new DnsCache({ maxEntries: 2500, now: () => 0 });
  const stored = answer("copied.", 60);
  store(cache, stored);
  stored.fill(0); // the caller's buffer is reused: the cache kept a copy
  const query = buildQuery({ id: 7, name: "copied.", type: 1, edns: false });
  const served = cache.answer(lookup(cache, "copied.")!, query, true);
  assert.equal(parseMessage(served).question?.type, 1);
  assert.equal(served[served.length - 1], 1); // 10.0.0.1
  // Each round stores answers that are evicted and 25 that stay (served often, so eviction
  // spares them): the ones that stay are spread over every slab, and without compaction would
  // hold them all (the 91,000 answers stored take 17 slabs). Answers are at most 48 bytes
  // (8-byte aligned), at most 2500 cached: held at most twice their bytes plus the 1 MiB allowance
  // and the slab being filled, and while a compaction moves them, once more their bytes and a slab.
  const live = 2500 * 48;
  const slab = 256 * 1024;
  const kept: string[] = [];
  for (let round = 0; round < 40; round++) {
    for (let i = 0; i < 2275; i++) {
      const name = i % 91 === 0 ? `kept${round}-${i}.` : `gone${round}-${i}.`;
      if (i % 91 === 0) kept.push(name);
      store(cache, answer(name, 60));
      assert.ok(cache.slabBytes <= 3 * live + 6 * slab, `${cache.slabBytes} at ${name}`);
      if (i % 500 === 0) { for (const name of kept) lookup(cache, name); }
    }
  }
  assert.ok(cache.evictions > 85_000);
  // A compaction moves 16 answers per store: 200 more stores finish any under way.
  for (let i = 0; i < 200; i++) store(cache, answer("again.", 60));
  assert.ok(cache.slabBytes <= 2 * live + 5 * slab, `${cache.slabBytes}`);
  // Each kept answer is still its own after the copies: the stored bytes, with the query's ID.
  for (const name of kept) assertAnswers(cache, name, 3);
  cache.clear();
  assert.equal(cache.slabBytes, 0);
});

Deno.test("DnsCache reuses an emptied slab rather than leaving it to the collector", () => {
  // 100,000 answers of 48 bytes fill 18 slabs of 256 KiB one after another; with 2,500 cached
  // (120 KB) the slabs behind them empty as they go, and come back as the next ones. A lookup's
  // bytes are valid only until the next store, so each is checked right away.
  const cache = new DnsCache({ maxEntries: 2500, now: () => 0 });
  const slabs = new Set<string>();
  for (let i = 0; i < 100_000; i++) {
    const name = `reused${i}.`;
    store(cache, answer(name, 60));
    if (i % 1000 !== 0) continue;
    slabs.add(slabOf(lookup(cache, name)!.entry.bytes));
    assertAnswers(cache, name, 5);
  }
  assert.ok(slabs.size <= 6, `answers were carved from ${slabs.size} different slabs`);
});

Deno.test("DnsCache takes the memory of its slabs in one buffer as it grows", () => {
  // V8 counts each new buffer's bytes as external memory towards its next full collection: a
  // growing cache that made a buffer per slab started one every few seconds under a miss load.
  const cache = new DnsCache({ maxEntries: 200_000, now: () => 0 });
  store(cache, answer("first.", 60));
  const external = Deno.memoryUsage().external;
  const slabs = new Set<string>();
  for (let i = 0; i < 100_000; i++) {
    const name = `grown${i}.`;
    store(cache, answer(name, 60));
    if (i % 1000 === 0) slabs.add(slabOf(lookup(cache, name)!.entry.bytes));
  }
  assert.equal(cache.size, 100_001);
  assert.ok(slabs.size >= 20, `${slabs.size} slabs`);
  const grown = Deno.memoryUsage().external - external;
  assert.ok(grown < 1024 * 1024, `external memory grew by ${grown} bytes over ${slabs.size} slabs`);
  // Every answer is still its own.
  for (const i of [0, 4_999, 50_000, 99_999]) assertAnswers(cache, `grown${i}.`, 4);
});

Deno.test("DnsCache keeps its answers when max_bytes is raised in place", () => {
  // The slabs' buffer is made for the max_bytes of the first slab: raised, the next slabs come
  // from a larger one, and those of the first stay with their answers.
  const cache = new DnsCache({ maxEntries: 100_000, maxBytes: 2 * 1024 * 1024, now: () => 0 });
  for (let i = 0; i < 5000; i++) store(cache, answer(`small${i}.`, 60));
  assert.equal(cache.evictions, 0);
  cache.configure({ maxEntries: 100_000, maxBytes: 64 * 1024 * 1024 });
  for (let i = 0; i < 60_000; i++) store(cache, answer(`large${i}.`, 60));
  assert.equal(cache.size, 65_000);
  assert.equal(cache.evictions, 0);
  for (const name of ["small0.", "small4999.", "large0.", "large59999."]) {
    assertAnswers(cache, name, 6);
  }
});

Deno.test("DnsCache replaces a stored answer in place", () => {
  const cache = new DnsCache({ maxEntries: 3, now: () => 0 });
  store(cache, answer("a.", 60));
  const bytes = cache.bytes;
  for (let ttl = 100; ttl < 200; ttl++) store(cache, answer("a.", ttl));
  assert.equal(cache.size, 1);
  assert.equal(cache.bytes, bytes);
  // A refreshed answer counts as just asked for: the next eviction passes over it once.
  store(cache, answer("b.", 60));
  store(cache, answer("c.", 60));
  store(cache, answer("a.", 30));
  store(cache, answer("d.", 60));
  assert.ok(lookup(cache, "b.") === undefined, "b. is not cached");
  assert.equal(lookup(cache, "a.")?.entry.lifetime, 30);
});

Deno.test("DnsCache claims a prefetch once for popular entries near expiry", () => {
  let clock = 0;
  const cache = new DnsCache({ now: () => clock, prefetchHits: 2, prefetchFraction: 0.1 });
  store(cache, answer("a.", 100));
  const query = buildQuery({ id: 1, name: "a.", type: 1, edns: false });
  const hit = lookup(cache, "a.")!;
  cache.answer(hit, query);
  clock = 95_000;
  assert.equal(cache.claimPrefetch(hit.entry), false); // one hit only
  cache.answer(hit, query);
  assert.equal(cache.claimPrefetch(hit.entry), true);
  assert.equal(cache.claimPrefetch(hit.entry), false);
});

Deno.test("cacheKey() separates DO and CD", () => {
  const key = (dnssecOk: boolean, cd: boolean) => {
    const query = buildQuery({ id: 1, name: "a.", type: 1, dnssecOk });
    if (cd) query[3] = query[3]! | 0x10;
    return cacheKey(parseMessage(query));
  };
  assert.equal(new Set([key(false, false), key(true, false), key(false, true)]).size, 3);
});

/** Two names whose A queries' keys share a `keyHash` (its seed is per process: searched for). */
function collidingNames(): [string, string] {
  const seen = new Map<number, string>();
  for (let i = 0; i < 1_000_000; i++) {
    const name = `c${i}.`;
    const hash = keyHash(cacheKey(parseMessage(buildQuery({ id: 9, name, type: 1, edns: false }))));
    const other = seen.get(hash);
    if (other !== undefined) return [other, name];
    seen.set(hash, name);
  }
  throw new Error("no two keys share a hash in a million");
}

Deno.test("DnsCache keeps keys that share a hash apart", async (t) => {
  const [a, b] = collidingNames();
  const name = (hit: ReturnType<typeof lookup>) => hit && nameToText(hit.entry.bytes, 12);
  let clock = 0;
  const cache = new DnsCache({ now: () => clock, staleTtl: 0 });
  await t.step("one is not answered with the other's entry", () => {
    assert.equal(store(cache, answer(a, 600)), true);
    assert.ok(lookup(cache, b) === undefined, `${b} is not answered with ${a}'s entry`);
  });
  await t.step("both are kept, each found as itself", () => {
    assert.equal(store(cache, answer(b, 60)), true);
    assert.equal(cache.size, 2);
    assert.equal(name(lookup(cache, a)), a);
    assert.equal(name(lookup(cache, b)), b);
  });
  await t.step("each is replaced in place", () => {
    store(cache, answer(b, 30));
    store(cache, answer(a, 300));
    assert.equal(cache.size, 2);
    assert.equal(lookup(cache, a)?.entry.lifetime, 300);
    assert.equal(lookup(cache, b)?.entry.lifetime, 30);
    const size = (n: string, ttl: number) =>
      answer(n, ttl).length + cacheKeyOf(n).length * 2 + 8 + 160;
    assert.equal(cache.bytes, size(a, 300) + size(b, 30));
  });
  await t.step("the second goes when it expires, the first stays", () => {
    clock = 31_000;
    assert.ok(lookup(cache, b) === undefined);
    assert.equal(cache.size, 1);
    assert.equal(name(lookup(cache, a)), a);
    assert.equal(store(cache, answer(b, 60)), true);
    assert.equal(name(lookup(cache, b)), b);
  });
  await t.step("the first goes when it expires, the second takes its place", () => {
    clock = 400_000;
    store(cache, answer(b, 60));
    assert.ok(lookup(cache, a) === undefined);
    assert.equal(cache.size, 1);
    assert.equal(name(lookup(cache, b)), b);
    store(cache, answer(a, 60));
    assert.equal(cache.size, 2);
  });
  await t.step("both survive evictions and compactions around them", () => {
    const busy = new DnsCache({ maxEntries: 500, now: () => 0 });
    store(busy, answer(a, 60));
    store(busy, answer(b, 60));
    for (let i = 0; i < 20_000; i++) {
      store(busy, answer(`churn${i}.`, 60));
      if (i % 100 === 0) {
        lookup(busy, a);
        lookup(busy, b);
      }
    }
    assert.ok(busy.evictions > 19_000);
    assert.ok(busy.size <= 500);
    for (const n of [a, b]) {
      const expected = answer(n, 60);
      expected[1] = 3;
      const query = buildQuery({ id: 3, name: n, type: 1, edns: false });
      assert.deepEqual(busy.answer(lookup(busy, n)!, query, true), expected);
    }
  });
});

Deno.test("DnsCache keeps at most 8 keys under one hash", () => {
  let clock = 0;
  const cache = new DnsCache({ now: () => clock, staleTtl: 0, hash: () => 1 });
  const names = Array.from({ length: 9 }, (_, i) => `same${i}.`);
  for (const n of names.slice(0, 8)) {
    assert.equal(store(cache, answer(n, 60 + names.indexOf(n))), true);
  }
  assert.equal(store(cache, answer(names[8]!, 60)), false, "a ninth key is not cached");
  assert.equal(cache.size, 8);
  for (const [i, n] of names.slice(0, 8).entries()) {
    assert.equal(lookup(cache, n)?.entry.lifetime, 60 + i, `${n} found as itself`);
  }
  assert.ok(lookup(cache, names[8]!) === undefined);
  assert.equal(store(cache, answer(names[3]!, 100)), true, "one of the eight is replaced in place");
  assert.equal(cache.size, 8);
  clock = 61_000; // same0. (60 s) expires: room for the ninth
  assert.ok(lookup(cache, names[0]!) === undefined);
  assert.equal(store(cache, answer(names[8]!, 60)), true);
  assert.equal(cache.size, 8);

  const small = new DnsCache({ maxEntries: 4, now: () => 0, hash: () => 1 });
  for (const n of names.slice(0, 6)) store(small, answer(n, 60));
  assert.equal(small.size, 4);
  assert.equal(names.filter((n) => lookup(small, n) !== undefined).length, 4);
});

/**
 * `answer` with an OPT record in the additional section, before an A record (`glue.`), whose
 * RDATA holds the given EDNS options (code, data); DO set in it as given.
 */
function answerWithOpt(name: string, options: [number, number[]][], dnssecOk: boolean) {
  const base = answer(name, 60);
  const rdata: number[] = [];
  for (const [code, data] of options) rdata.push(0, code, 0, data.length, ...data);
  const opt = [0, 0, 41, 0x10, 0, 0, 0, dnssecOk ? 0x80 : 0, 0, 0, rdata.length, ...rdata];
  const glue = [4, 103, 108, 117, 101, 0, 0, 1, 0, 1, 0, 0, 0, 50, 0, 4, 10, 0, 0, 9];
  const out = new Uint8Array([...base, ...opt, ...glue]);
  out[2] = 0x80; // as answered to a query without RD: RD clear
  out[11] = 2;
  return out;
}

/** The OPT record of a message as [udpSize, DO, RDATA bytes], or `undefined`. */
function optOf(bytes: Uint8Array): [number, boolean, number[]] | undefined {
  const edns = parseMessage(bytes).edns;
  if (edns === undefined) return undefined;
  return [edns.udpSize, edns.dnssecOk, [...bytes.subarray(edns.offset + 11, edns.end)]];
}

Deno.test("DnsCache answers carry the asker's RD and an OPT of the proxy's own", async (t) => {
  let clock = 0;
  const cache = new DnsCache({ now: () => clock });
  const NSID = 3;
  const COOKIE = 10;
  const cookie = [1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 9, 9, 9, 9, 9];
  for (const dnssecOk of [false, true]) {
    const stored = answerWithOpt("o.", [[NSID, [117, 112]], [COOKIE, cookie]], dnssecOk);
    const info = parseMessage(stored);
    const key = cacheKey(parseMessage(buildQuery({ id: 1, name: "o.", type: 1, dnssecOk })));
    assert.ok(cache.store(key, stored, info));
  }
  clock = 2_000;
  for (const dnssecOk of [false, true]) {
    for (const recursionDesired of [true, false]) {
      const label = `DO ${dnssecOk}, RD ${recursionDesired}`;
      const query = buildQuery({ id: 5, name: "o.", type: 1, dnssecOk, recursionDesired });
      const hit = cache.lookup(cacheKey(parseMessage(query)))!;
      await t.step(`${label}: RD copied from the query, RA set (RFC 1035 §4.1.1)`, () => {
        const out = cache.answer(hit, query, false, new Uint8Array(4096));
        assert.equal(out[2]! & 1, recursionDesired ? 1 : 0);
        assert.equal(out[3]! & 0x80, 0x80);
        assert.equal(out[3]! & 0x40, 0, "Z is zero");
      });
      await t.step(
        `${label}: no upstream option replayed, DO as asked (RFC 5001, 7873, 3225)`,
        () => {
          const out = cache.answer(hit, query);
          assert.deepEqual(optOf(out), [1232, dnssecOk, []]);
          const info = parseMessage(out);
          assert.deepEqual(info.counts, [1, 1, 0, 2]);
          // TTLs still decremented where they are (the glue record came after the OPT).
          assert.deepEqual(info.ttlOffsets.map((at) => new DataView(out.buffer).getUint32(at)), [
            58,
            48,
          ]);
        },
      );
      await t.step(`${label}: no OPT for a client that sent none (RFC 6891 §7)`, () => {
        const plain = buildQuery({ id: 5, name: "o.", type: 1, edns: false, recursionDesired });
        const out = cache.answer(hit, plain, true);
        assert.equal(optOf(out), undefined);
        assert.deepEqual(parseMessage(out).counts, [1, 1, 0, 1]);
        assert.equal(out[2]! & 1, recursionDesired ? 1 : 0);
      });
    }
  }
});

Deno.test("DnsCache answers carry AD only to those who asked with AD or DO (RFC 6840 §5.7)", () => {
  const cache = new DnsCache({ now: () => 0 });
  for (const dnssecOk of [false, true]) {
    const stored = answerWithOpt("ad.", [], dnssecOk);
    stored[3] = stored[3]! | 0x20; // validated by the upstream
    const key = cacheKey(parseMessage(buildQuery({ id: 1, name: "ad.", type: 1, dnssecOk })));
    assert.ok(cache.store(key, stored, parseMessage(stored)));
  }
  for (const dnssecOk of [false, true]) {
    for (const ad of [false, true]) {
      const query = buildQuery({ id: 5, name: "ad.", type: 1, dnssecOk });
      if (ad) query[3] = query[3]! | 0x20;
      const out = cache.answer(cache.lookup(cacheKey(parseMessage(query)))!, query);
      assert.equal(out[3]! & 0x20, ad || dnssecOk ? 0x20 : 0, `DO ${dnssecOk}, AD ${ad}`);
    }
  }
});

Deno.test("DnsCache keeps no object per entry: a few heap bytes each", async () => {
  // A child with --expose-gc: a full collection each side of 20,000 stores.
  const output = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--v8-flags=--expose-gc",
      new URL("./bench/heap_per_entry.ts", import.meta.url).pathname,
      "20000",
    ],
    stderr: "inherit",
  }).output();
  assert.ok(output.success, "heap_per_entry.ts ran");
  const result = JSON.parse(new TextDecoder().decode(output.stdout));
  assert.equal(result.entries, 20_000);
  // An object per entry (with its key and TTL offsets) cost 442 heap bytes; slots cost none.
  assert.ok(result.heapBytesPerEntry < 32, `${result.heapBytesPerEntry} heap bytes per entry`);
});

Deno.test("DnsCache: a lookup held while its slot is reused still answers as itself", () => {
  const cache = new DnsCache({ maxEntries: 1, now: () => 0 });
  store(cache, answer("first.", 60));
  const held = lookup(cache, "first.")!;
  held.entry.used = false; // no second chance
  store(cache, answer("second.", 60)); // evicts first. and takes its slot
  assert.ok(lookup(cache, "first.") === undefined);
  assert.equal(held.entry.lifetime, 60);
  const expected = answer("first.", 60);
  expected[1] = 5;
  const query = buildQuery({ id: 5, name: "first.", type: 1, edns: false });
  assert.deepEqual(cache.answer(held, query, true), expected);
  assert.equal(nameToText(lookup(cache, "second.")!.entry.bytes, 12), "second.");
});
