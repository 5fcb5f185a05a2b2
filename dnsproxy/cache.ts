/**
 * The packet cache: answers kept as raw bytes, without what belongs to the exchange that brought
 * them (the upstream's OPT record and its options), and served by rewriting the ID, the RD and RA
 * bits, the question's letter case and the TTLs, and writing an OPT record for the asker.
 *
 * @module
 */
import { Flag, Rcode } from "./wire/constants.ts";
import { readTtl } from "./wire/_ttl.ts";
import { OWN_OPT_LENGTH, setAnswerHeader, writeOwnOpt } from "./wire/_answer.ts";
import { keyHash } from "./_key_hash.ts";
import type { MessageInfo } from "./wire/message.ts";

/** Limits and behaviour of a {@linkcode DnsCache}. */
export interface CacheOptions {
  /** Most entries kept. @default {100000} */
  maxEntries?: number;
  /** Most bytes kept (answers and keys). @default {64 MiB} */
  maxBytes?: number;
  /** TTLs below this many seconds are raised to it. @default {0} */
  minTtl?: number;
  /** TTLs above this many seconds are lowered to it. @default {86400} */
  maxTtl?: number;
  /** Negative answers (RFC 2308) are kept at most this many seconds. @default {3600} */
  maxNegativeTtl?: number;
  /** Seconds past expiry an answer may still be served when upstreams fail (RFC 8767); 0 is off. @default {86400} */
  staleTtl?: number;
  /** TTL given to stale answers (RFC 8767 §4 suggests 30). @default {30} */
  staleAnswerTtl?: number;
  /** An entry hit at least `prefetchHits` times is refreshed once this fraction of its TTL is left. @default {0.1} */
  prefetchFraction?: number;
  /** Hits before an entry counts as popular for prefetch; 0 turns prefetch off. @default {2} */
  prefetchHits?: number;
  /** Milliseconds clock, for tests. @default {performance.now} */
  now?: () => number;
  /** The hash the entries are found by, for tests (keys made to collide). @default {a seeded hash} */
  hash?: (key: string) => number;
}

/**
 * The bytes an answer is written from, and where in them its TTLs and question are: what a hit
 * needs, without the parsed message (an entry keeps only this, so each costs less to hold).
 */
export interface CachedAnswer {
  /** The answer as received, less its OPT record (written per asker by `DnsCache.answer`). */
  readonly bytes: Uint8Array;
  /** Offsets of the TTL field of every record but OPT (as `MessageInfo.ttlOffsets`). */
  readonly ttlOffsets: readonly number[];
  /** Offset just after the question (as `QuestionInfo.end`). */
  readonly questionEnd: number;
  /** Whether `bytes` carry an OPT record: never for a cached answer (see `bytes`). */
  readonly hasOpt: boolean;
}

/** A cached answer. */
export interface CacheEntry extends CachedAnswer {
  /** The cache key. */
  readonly key: string;
  /** The response code. */
  readonly rcode: number;
  /** TTLs per record (clamped, as the cache's copy of the answer carries them), as `ttlOffsets`. */
  readonly ttls: readonly number[];
  /** When it was stored (ms, cache clock). */
  readonly storedAt: number;
  /** When it expires (ms). */
  readonly expiresAt: number;
  /** Its lifetime in seconds. */
  readonly lifetime: number;
  /** Whether it is a negative answer (NXDOMAIN or NODATA). */
  readonly negative: boolean;
  /** Times it was served. */
  hits: number;
  /** Whether a prefetch is under way for it. */
  prefetching: boolean;
  /** Bytes it is charged for. */
  readonly size: number;
  /** Whether it was served since it was stored or last given a second chance (see `lookup`). */
  used: boolean;
  /** Unused: `bytes` are kept without an OPT record, for every client (stays `undefined`). */
  plain: CachedAnswer | undefined;
}

/** Result of {@linkcode DnsCache.lookup}. */
export interface CacheLookup {
  /** The entry. */
  readonly entry: CacheEntry;
  /** `true` when past its TTL but inside the serve-stale window. */
  readonly stale: boolean;
  /** The cache clock at lookup. */
  readonly now: number;
}

const ENTRY_OVERHEAD = 160;

/**
 * Bytes per slab of cached answers. Answers are carved from shared slabs rather than given a
 * buffer each: a buffer of its own costs a malloc and the collector's tracking of external memory
 * (with this and the replies' copies in slabs, a miss cost 17.6 instead of 19.1 µs).
 */
const SLAB_SIZE = 256 * 1024;
/** Answers larger than this get a buffer of their own (they are rare: over TCP only). */
const SLAB_MAX_ANSWER = 16 * 1024;

/** Answers moved out of old slabs per store while a compaction runs (bounds its pause). */
const COMPACT_STEP = 16;

/**
 * Entries kept under one hash at most: another key with that hash is not cached, so a lookup
 * compares at most this many keys even against names made to collide.
 */
const MAX_CHAIN = 8;

/** A slab of cached answers: what it has handed out, and how much of that is still cached. */
class Slab {
  used = 0;
  live = 0;
  /** The compaction epoch it was made in (answers in slabs of earlier epochs get moved). */
  constructor(readonly bytes: Uint8Array, readonly epoch: number) {}
}

/** The entries the cache keeps: a {@linkcode CacheEntry} and the slab its bytes are in. */
class Entry implements CacheEntry {
  hits = 0;
  prefetching = false;
  used = false;
  plain: CachedAnswer | undefined = undefined;
  /** The next entry whose key has the same hash (rare: see #entries). */
  nextSame: Entry | undefined = undefined;
  constructor(
    readonly key: string,
    /** keyHash(key): where it is in the Map. */
    readonly hash: number,
    public bytes: Uint8Array,
    readonly ttlOffsets: readonly number[],
    readonly questionEnd: number,
    readonly hasOpt: boolean,
    readonly rcode: number,
    readonly storedAt: number,
    readonly expiresAt: number,
    readonly lifetime: number,
    readonly negative: boolean,
    readonly size: number,
    public slab: Slab | undefined,
  ) {}

  /** The clamped TTLs: the cache's copy of the answer carries them (no array kept per entry). */
  get ttls(): readonly number[] {
    return this.ttlOffsets.map((at) => readTtl(this.bytes, at));
  }
}

/**
 * Builds the cache key of a query: lower-cased name, type, class, and the DO and CD bits.
 *
 * @param info The parsed query; must have a question.
 * @returns The key.
 *
 * @example
 * ```ts
 * import { buildQuery, cacheKey, parseMessage } from "@triad/dnsproxy";
 * import assert from "node:assert/strict";
 *
 * const a = cacheKey(parseMessage(buildQuery({ id: 1, name: "WWW.example.org", type: 1 })));
 * const b = cacheKey(parseMessage(buildQuery({ id: 2, name: "www.EXAMPLE.org", type: 1 })));
 * const c = cacheKey(parseMessage(buildQuery({ id: 2, name: "www.example.org", type: 1, dnssecOk: true })));
 * assert.equal(a, b);
 * assert.notEqual(a, c);
 * ```
 */
export function cacheKey(info: MessageInfo): string {
  const question = info.question!;
  const bits = (info.edns?.dnssecOk ? 1 : 0) | ((info.flags & Flag.CD) !== 0 ? 2 : 0);
  return question.key + String.fromCharCode(question.type, question.class, bits);
}

/**
 * A DNS answer cache bounded by entries and bytes with LRU eviction (as CLOCK approximates it: a
 * hit marks its entry, eviction gives a marked one a second chance); positive answers live for
 * their smallest answer TTL, negative ones per RFC 2308 (SOA TTL capped by SOA MINIMUM); expired
 * entries may be served stale (RFC 8767); popular entries are flagged for prefetch near expiry.
 * Answers are copied into shared 256 KiB slabs; when the slabs hold more than about twice the bytes
 * of the answers cached (plus 1 MiB), the cached ones are moved into new slabs, 16 per store.
 *
 * @example
 * ```ts
 * import { buildQuery, cacheKey, DnsCache, parseMessage } from "@triad/dnsproxy";
 * import assert from "node:assert/strict";
 *
 * let clock = 0;
 * const cache = new DnsCache({ now: () => clock });
 * // An answer: the query with QR set and one A record with TTL 60.
 * const answer = new Uint8Array([
 *   0, 1, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0, 1, 97, 0, 0, 1, 0, 1,
 *   0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 0, 0, 1,
 * ]);
 * const info = parseMessage(answer);
 * assert.ok(cache.store(cacheKey(info), answer, info));
 * clock = 10_500;
 * const query = buildQuery({ id: 0x4242, name: "a.", type: 1, edns: false });
 * const hit = cache.lookup(cacheKey(parseMessage(query)))!;
 * const served = cache.answer(hit, query, true); // true: the query has no OPT record
 * assert.equal(served[0], 0x42); // the client's ID
 * assert.equal(served[28], 50); // TTL 60 less 10 s
 * ```
 */
export class DnsCache {
  /**
   * In the order stored (a Map iterates in insertion order), which is the order the eviction's
   * clock hand walks. An entry never moves: in V8 a delete and set of the same key, repeated, gets
   * slower with the table's size until it rehashes (20,000 of them in a 100,000-entry Map cost
   * 20 µs each, 0.8 µs with rotating keys: as if each delete left a hole in that key's chain).
   * Keyed by `keyHash(key)`: what is found is checked against the key, and an entry whose key
   * shares its hash with another's is chained behind that one (`nextSame`; the two share a place
   * in the clock hand's order).
   */
  #entries = new Map<number, Entry>();
  /** Entries held, the chained ones included. */
  #count = 0;
  /** The clock hand: walks #entries across evictions, back to the start at the end (see #evict). */
  #oldest: MapIterator<Entry> | undefined;
  #bytes = 0;
  /** The slab answers are carved from now. */
  #slab: Slab | undefined;
  /** Bytes of the slabs that still hold a cached answer (the current one included). */
  #slabBytes = 0;
  /** Bytes of the cached answers in slabs. */
  #slabLive = 0;
  /** Compactions started so far. */
  #epoch = 0;
  /** The running compaction's walk over the entries, or `undefined`. */
  #compacting: MapIterator<Entry> | undefined;
  #maxEntries: number;
  #maxBytes: number;
  #minTtl: number;
  #maxTtl: number;
  #maxNegativeTtl: number;
  #staleMs: number;
  #staleAnswerTtl: number;
  #prefetchFraction: number;
  #prefetchHits: number;
  readonly #now: () => number;
  readonly #hash: (key: string) => number;
  /** Entries evicted to stay within the limits. */
  evictions = 0;

  /**
   * Creates an empty cache.
   *
   * @param options Limits and behaviour.
   */
  constructor(options: CacheOptions = {}) {
    this.#now = options.now ?? (() => performance.now());
    this.#hash = options.hash ?? keyHash;
    this.#maxEntries = 0;
    this.#maxBytes = 0;
    this.#minTtl = 0;
    this.#maxTtl = 0;
    this.#maxNegativeTtl = 0;
    this.#staleMs = 0;
    this.#staleAnswerTtl = 0;
    this.#prefetchFraction = 0;
    this.#prefetchHits = 0;
    this.configure(options);
  }

  /**
   * Changes limits and behaviour in place (hot reload); entries over the new limits are evicted.
   *
   * @param options The new settings; missing ones return to their defaults.
   */
  configure(options: CacheOptions): void {
    this.#maxEntries = options.maxEntries ?? 100_000;
    this.#maxBytes = options.maxBytes ?? 64 * 1024 * 1024;
    this.#minTtl = options.minTtl ?? 0;
    this.#maxTtl = options.maxTtl ?? 86_400;
    this.#maxNegativeTtl = options.maxNegativeTtl ?? 3_600;
    this.#staleMs = (options.staleTtl ?? 86_400) * 1000;
    this.#staleAnswerTtl = options.staleAnswerTtl ?? 30;
    this.#prefetchFraction = options.prefetchFraction ?? 0.1;
    this.#prefetchHits = options.prefetchHits ?? 2;
    this.#evict();
  }

  /** Number of entries. */
  get size(): number {
    return this.#count;
  }

  /** Bytes held. */
  get bytes(): number {
    return this.#bytes;
  }

  /**
   * Finds the entry for a key, fresh or inside the serve-stale window, and marks it recently used.
   *
   * @param key From {@linkcode cacheKey}.
   * @returns The entry and whether it is stale, or `undefined`.
   */
  lookup(key: string): CacheLookup | undefined {
    let entry = this.#entries.get(this.#hash(key));
    if (entry !== undefined && entry.key !== key) entry = chained(entry, key);
    if (entry === undefined) return undefined;
    const now = this.#now();
    if (now >= entry.expiresAt + this.#staleMs) {
      this.#remove(entry);
      return undefined;
    }
    // Only marked: the eviction's clock hand passes over a served entry once (LRU as CLOCK
    // approximates it).
    entry.used = true;
    return { entry, stale: now >= entry.expiresAt, now };
  }

  /**
   * Tells whether a fresh entry should be refreshed ahead of expiry, and claims the refresh.
   *
   * @param entry The entry just served.
   * @param now The cache clock, when the caller has just read it (a lookup's `now`).
   * @returns `true` once per entry when it is popular and near expiry.
   */
  claimPrefetch(entry: CacheEntry, now: number = this.#now()): boolean {
    if (this.#prefetchHits === 0 || entry.prefetching || entry.hits < this.#prefetchHits) {
      return false;
    }
    const left = entry.expiresAt - now;
    if (left <= 0 || left > entry.lifetime * 1000 * this.#prefetchFraction) return false;
    entry.prefetching = true;
    return true;
  }

  /**
   * Stores an answer if it may be cached: NOERROR with answers, or NXDOMAIN/NODATA with an SOA
   * (RFC 2308); never truncated answers, other response codes or a zero lifetime.
   *
   * @param key From {@linkcode cacheKey} of the query.
   * @param response The answer from upstream: copied without its OPT record (the caller may
   *   reuse it).
   * @param info The parsed answer.
   * @returns Whether it was stored.
   */
  store(key: string, response: Uint8Array, info: MessageInfo): boolean {
    if ((info.flags & Flag.TC) !== 0 || info.question === undefined) return false;
    const answers = info.counts[1];
    let lifetime: number;
    let negative = false;
    if (info.rcode === Rcode.NOERROR && answers > 0) {
      lifetime = Math.min(Math.max(info.minAnswerTtl, this.#minTtl), this.#maxTtl);
    } else if (info.rcode === Rcode.NXDOMAIN || (info.rcode === Rcode.NOERROR && answers === 0)) {
      if (info.negativeTtl < 0) return false;
      negative = true;
      lifetime = Math.min(
        Math.max(info.negativeTtl, this.#minTtl),
        this.#maxTtl,
        this.#maxNegativeTtl,
      );
    } else {
      return false;
    }
    if (lifetime <= 0) return false;
    // The OPT record is not kept: its options (NSID, COOKIE, padding, EDE, ...) belong to the
    // upstream exchange (RFC 5001 §2.2, RFC 7873); `answer` writes one for each asker.
    const edns = info.edns;
    const cutFrom = edns?.offset ?? response.length;
    const cut = edns === undefined ? 0 : edns.end - edns.offset;
    const length = response.length - cut;
    const size = length + key.length * 2 + info.ttlOffsets.length * 8 + ENTRY_OVERHEAD;
    if (size > this.#maxBytes) return false;
    const now = this.#now();
    const hash = this.#hash(key);
    const head = this.#entries.get(hash);
    const old = head === undefined || head.key === key ? head : chained(head, key);
    if (old === undefined && head !== undefined && chainLength(head) >= MAX_CHAIN) return false;
    // Replaced where it stands (see #entries), and marked: a refreshed answer was just asked for.
    if (old !== undefined) this.#forget(old);
    // The parsed message is not kept: only the offsets a hit rewrites (each entry outlives a few
    // scavenges, which copy all it holds; the parsed form was over 40% of it).
    let bytes: Uint8Array;
    let slab: Slab | undefined;
    if (length > SLAB_MAX_ANSWER) {
      bytes = new Uint8Array(length);
      copyCut(response, cutFrom, cut, bytes);
    } else {
      bytes = this.#copyIn(response, cutFrom, cut);
      slab = this.#slab;
    }
    // Records after the OPT record moved up (it is usually the last: then nothing moved).
    let offsets = info.ttlOffsets;
    if (cut > 0 && offsets.length > 0 && offsets[offsets.length - 1]! > cutFrom) {
      offsets = offsets.map((at) => at > cutFrom ? at - cut : at);
    }
    // The copy keeps the clamped TTLs (RFC 2181 §8: the top bit set reads as zero), so a hit
    // subtracts the time spent from what it copies.
    if (cut > 0) {
      const arcount = ((bytes[10]! << 8) | bytes[11]!) - 1;
      bytes[10] = arcount >> 8;
      bytes[11] = arcount & 0xff;
    }
    for (let i = 0; i < offsets.length; i++) {
      const ttl = readTtl(bytes, offsets[i]!);
      writeTtl(bytes, offsets[i]!, Math.min(Math.max(ttl, this.#minTtl), this.#maxTtl));
    }
    const entry = new Entry(
      key,
      hash,
      bytes,
      offsets,
      info.question.end,
      false,
      info.rcode,
      now,
      now + lifetime * 1000,
      lifetime,
      negative,
      size,
      slab,
    );
    entry.used = old !== undefined;
    if (old !== undefined) {
      entry.nextSame = old.nextSame;
      if (old === head) this.#entries.set(hash, entry);
      else this.#before(old)!.nextSame = entry;
    } else {
      if (head === undefined) this.#entries.set(hash, entry);
      else {
        entry.nextSame = head.nextSame;
        head.nextSame = entry;
      }
      this.#count++;
    }
    this.#bytes += size;
    this.#evict();
    this.#compactSome();
    return true;
  }

  /**
   * Writes the answer to a query from an entry: a copy with the query's ID and RD bit (RFC 1035
   * §4.1.1), RA set, AD only for a query with AD or DO (RFC 6840 §5.7), the query's letter case
   * in the question, every TTL decremented by the time spent in the cache (or set to the
   * stale-answer TTL when stale), and unless `plain` an OPT record of the proxy's own: 1232
   * bytes, the DO bit of the key (the asker's), no options. Counts the hit.
   *
   * @param lookup The entry found by {@linkcode lookup}.
   * @param query The client's query.
   * @param plain Answer without an OPT record (the client sent none, RFC 6891 §7).
   * @param into Where to write the answer when it fits (no allocation but a view); a new buffer
   *   otherwise.
   * @returns The answer bytes.
   */
  answer(lookup: CacheLookup, query: Uint8Array, plain = false, into?: Uint8Array): Uint8Array {
    const { entry, stale } = lookup;
    entry.hits++;
    const { bytes, ttlOffsets: offsets, questionEnd } = entry;
    const length = bytes.length + (plain ? 0 : OWN_OPT_LENGTH);
    let out: Uint8Array;
    if (into !== undefined && into.length >= length) {
      out = into.subarray(0, length);
    } else {
      out = new Uint8Array(length);
    }
    out.set(bytes);
    const key = entry.key;
    const dnssecOk = (key.charCodeAt(key.length - 1) & 1) !== 0; // see cacheKey
    if (!plain) {
      writeOwnOpt(out, bytes.length, dnssecOk);
      const arcount = ((out[10]! << 8) | out[11]!) + 1;
      out[10] = arcount >> 8;
      out[11] = arcount & 0xff;
    }
    setAnswerHeader(out, query, dnssecOk);
    copyQuestionCase(out, questionEnd, query);
    if (stale) {
      for (let i = 0; i < offsets.length; i++) writeTtl(out, offsets[i]!, this.#staleAnswerTtl);
    } else {
      const elapsed = Math.floor((lookup.now - entry.storedAt) / 1000);
      for (let i = 0; i < offsets.length; i++) {
        const ttl = readTtl(out, offsets[i]!) - elapsed; // the clamped TTL, copied from the entry
        writeTtl(out, offsets[i]!, ttl > 0 ? ttl : 0);
      }
    }
    return out;
  }

  /**
   * Returns what an answer is written from: the entry itself, for clients with or without EDNS
   * (it is kept without an OPT record; {@linkcode answer} writes one when asked).
   *
   * @param entry The entry.
   * @param _plain Whether the client sent no OPT record (makes no difference).
   * @returns Bytes, TTL offsets and question end.
   */
  variant(entry: CacheEntry, _plain: boolean): CachedAnswer {
    return entry;
  }

  /** Removes every entry. */
  clear(): void {
    this.#entries.clear();
    this.#count = 0;
    this.#oldest = undefined;
    this.#bytes = 0;
    this.#slab = undefined;
    this.#slabBytes = 0;
    this.#slabLive = 0;
    this.#compacting = undefined;
  }

  /** Bytes of the slabs that cached answers are carved from (held while any answer in one is). */
  get slabBytes(): number {
    return this.#slabBytes;
  }

  /**
   * Copies an answer, less `cut` bytes at `cutFrom`, into the slab being filled (a new one when
   * it is full); returns the copy.
   */
  #copyIn(source: Uint8Array, cutFrom = source.length, cut = 0): Uint8Array {
    const length = source.length - cut;
    let slab = this.#slab;
    if (slab === undefined || slab.used + length > SLAB_SIZE) {
      this.#retireSlab();
      this.#slabBytes += SLAB_SIZE;
      slab = this.#slab = new Slab(new Uint8Array(SLAB_SIZE), this.#epoch);
    }
    const bytes = slab.bytes.subarray(slab.used, slab.used + length);
    copyCut(source, cutFrom, cut, bytes);
    slab.used += (length + 7) & ~7;
    slab.live += length;
    this.#slabLive += length;
    return bytes;
  }

  /**
   * Stops filling the current slab. It was held while filled even if empty (see #release): held
   * on now only while an answer in it is cached.
   */
  #retireSlab(): void {
    const slab = this.#slab;
    if (slab !== undefined && slab.live === 0) this.#slabBytes -= SLAB_SIZE; // to the collector
    this.#slab = undefined;
  }

  /** Uncounts an entry's bytes and lets go of its answer (the caller drops or replaces it). */
  #forget(entry: Entry): void {
    this.#bytes -= entry.size;
    this.#release(entry);
  }

  /** Lets go of an entry's answer in its slab; a slab left empty is no longer held. */
  #release(entry: Entry): void {
    const slab = entry.slab;
    if (slab === undefined) return;
    slab.live -= entry.bytes.length;
    this.#slabLive -= entry.bytes.length;
    if (slab.live === 0 && slab !== this.#slab) this.#slabBytes -= SLAB_SIZE;
  }

  /**
   * A slab stays alive while any answer in it is cached. When evicted and expired answers leave
   * more than half of the slabs' bytes unused, a compaction starts: every answer in a slab made
   * before it is copied into new slabs, a few per store (so no store pauses for the whole cache),
   * and the old slabs go once emptied. Amortised: the bytes copied are fewer than those freed since
   * the last compaction.
   */
  #compactSome(): void {
    if (this.#compacting === undefined) {
      if (this.#slabBytes <= 2 * this.#slabLive + 4 * SLAB_SIZE) return;
      this.#epoch++;
      this.#compacting = this.#entries.values();
      this.#retireSlab(); // it is from before the compaction too
    }
    for (let i = 0; i < COMPACT_STEP; i++) {
      const next = this.#compacting.next();
      if (next.done) {
        this.#compacting = undefined;
        return;
      }
      for (let entry: Entry | undefined = next.value; entry !== undefined; entry = entry.nextSame) {
        if (entry.slab === undefined || entry.slab.epoch === this.#epoch) continue;
        const bytes = this.#copyIn(entry.bytes);
        this.#release(entry);
        entry.bytes = bytes;
        entry.slab = this.#slab;
      }
    }
  }

  /** The entry chained just before `entry` (`undefined` when it is the first, or not held). */
  #before(entry: Entry): Entry | undefined {
    let at = this.#entries.get(entry.hash);
    while (at !== undefined && at.nextSame !== entry) at = at.nextSame;
    return at;
  }

  #remove(entry: Entry): void {
    if (this.#entries.get(entry.hash) === entry) {
      // The next one with its hash, if any, takes its place.
      if (entry.nextSame === undefined) this.#entries.delete(entry.hash);
      else this.#entries.set(entry.hash, entry.nextSame);
    } else {
      const before = this.#before(entry);
      if (before === undefined) return; // not held (removed already)
      before.nextSame = entry.nextSame;
    }
    entry.nextSame = undefined;
    this.#count--;
    this.#forget(entry);
  }

  #evict(): void {
    let chances = this.#count;
    while (this.#count > this.#maxEntries || this.#bytes > this.#maxBytes) {
      // One iterator kept across calls: a fresh one would step over every hole that the
      // evictions before it left at the front of the table, each time.
      this.#oldest ??= this.#entries.values();
      let next = this.#oldest.next();
      if (next.done) {
        this.#oldest = this.#entries.values();
        next = this.#oldest.next();
      }
      const oldest = next.value;
      if (oldest === undefined) break;
      if (oldest.used && chances-- > 0) {
        // Served since it was stored or the hand last passed: a second chance, unmarked.
        oldest.used = false;
        continue;
      }
      this.#remove(oldest);
      this.evictions++;
    }
  }
}

/** How many entries share `head`'s hash, `head` included. */
function chainLength(head: Entry): number {
  let n = 1;
  for (let entry = head.nextSame; entry !== undefined; entry = entry.nextSame) n++;
  return n;
}

/** The entry for `key` chained behind `head` (another key with the same hash), if any. */
function chained(head: Entry, key: string): Entry | undefined {
  let entry = head.nextSame;
  while (entry !== undefined && entry.key !== key) entry = entry.nextSame;
  return entry;
}

/** Copies `source` less `cut` bytes at `cutFrom` into `out` (as long as what is copied). */
function copyCut(source: Uint8Array, cutFrom: number, cut: number, out: Uint8Array): void {
  if (cut === 0) {
    out.set(source);
    return;
  }
  out.set(source.subarray(0, cutFrom));
  out.set(source.subarray(cutFrom + cut), cutFrom);
}

function writeTtl(out: Uint8Array, at: number, ttl: number): void {
  out[at] = ttl >>> 24;
  out[at + 1] = (ttl >>> 16) & 0xff;
  out[at + 2] = (ttl >>> 8) & 0xff;
  out[at + 3] = ttl & 0xff;
}

/**
 * Copies the query's question name over the answer's when both hold it uncompressed at the same
 * length, so a client sees its own letter case (and 0x20 randomisation keeps working).
 *
 * @param out The answer, written in place.
 * @param questionEnd Offset just after the answer's question (`QuestionInfo.end`); `undefined`
 *   (no question) leaves it as it is.
 * @param query The client's query.
 *
 * @example
 * ```ts
 * import { buildQuery, copyQuestionCase } from "@triad/dnsproxy";
 * import assert from "node:assert/strict";
 *
 * const answer = buildQuery({ id: 1, name: "www.example.org", type: 1, edns: false });
 * const query = buildQuery({ id: 1, name: "WwW.ExAmple.org", type: 1, edns: false });
 * copyQuestionCase(answer, query.length, query);
 * assert.deepEqual(answer, query);
 * ```
 */
export function copyQuestionCase(
  out: Uint8Array,
  questionEnd: number | undefined,
  query: Uint8Array,
): void {
  if (questionEnd === undefined || questionEnd > query.length) return;
  const nameEnd = questionEnd - 4;
  for (let i = 12; i < nameEnd; i++) {
    const a = out[i]!;
    const b = query[i]!;
    if (a === b) continue;
    const lower = a | 0x20;
    if (lower !== (b | 0x20) || lower < 0x61 || lower > 0x7a) return;
  }
  for (let i = 12; i < nameEnd; i++) out[i] = query[i]!; // a name: shorter than a view costs
}
