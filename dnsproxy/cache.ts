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

/**
 * Result of {@linkcode DnsCache.lookup}: valid until the cache next stores an answer (the entry's
 * bytes are a view of a slab the cache reuses once its answers are gone); look the key up again
 * to answer later.
 */
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
/** Records larger than this get a slab of their own (they are rare: over TCP only). */
const SLAB_MAX_RECORD = 16 * 1024;
/**
 * Emptied slabs kept for the next ones (4 MiB). A slab let go to the collector is external memory
 * V8 counts towards its next full collection: under a miss load the slabs' churn (8 MB/s at 75,000
 * stores/s) started one every 1.1 s, whose 2-7 ms pause queued the answers behind it.
 */
const SPARE_SLABS = 16;

/**
 * Address space for slabs taken in one buffer, at most (a cache needing more slabs makes buffers of
 * their own past it, as above). See {@linkcode SlabArena}.
 */
const ARENA_MAX_BYTES = 1024 * 1024 * 1024;

/** Entries whose records are moved out of old slabs per store while a compaction runs. */
const COMPACT_STEP = 16;

/**
 * Entries kept under one hash at most: another key with that hash is not cached, so a lookup
 * compares at most this many keys even against names made to collide.
 */
const MAX_CHAIN = 8;

/**
 * Entries the arrays are made for up front, at most (a cache allowed more grows by doubling past
 * it). An entry takes 60 bytes of arrays and 16-32 of table: 4,000,000 reserve 290 MiB of address
 * space. The arrays take memory as entries fill them; the table, where entries land at random, is
 * all in memory after a few entries per page (64 MiB for 4,000,000).
 */
const RESERVED_ENTRIES = 4_000_000;

/** Entry flags (`#flags`). */
const NEGATIVE = 2;
const USED = 4;
const PREFETCHING = 8;

/**
 * The slabs' address space, taken in one buffer when the cache makes its first slab: as many slabs
 * as `maxBytes` of records may spread over before a compaction (twice the records' bytes), up to
 * {@linkcode ARENA_MAX_BYTES}. V8 counts every new buffer's bytes as external memory towards its
 * next full collection, so a growing cache's slabs of their own (7.8 MB/s at 90,000 stores/s)
 * started one every 4.7 s; its 4-6 ms pause and its marking threads on the loop's CPU made the p99
 * of an 80,000 misses/s load 3.0-3.8 ms against 1.3 with a cache that stayed the same size. One
 * buffer is counted once, and its pages take memory only when a slab first uses them. An emptied
 * slab returns to it (its pages stay with the process, as a spare slab's do).
 */
class SlabArena {
  readonly #buffer: ArrayBuffer;
  /** Slabs handed out at least once. */
  #high = 0;
  readonly #free: Uint8Array[] = [];

  constructor(bytes: number) {
    this.#buffer = new ArrayBuffer(bytes);
  }

  /** Its bytes, used or not. */
  get size(): number {
    return this.#buffer.byteLength;
  }

  /** A slab's bytes, or `undefined` when every slab is in use. */
  take(): Uint8Array | undefined {
    const free = this.#free.pop();
    if (free !== undefined) return free;
    if ((this.#high + 1) * SLAB_SIZE > this.#buffer.byteLength) return undefined;
    return new Uint8Array(this.#buffer, SLAB_SIZE * this.#high++, SLAB_SIZE);
  }

  /** Takes back a slab's bytes if they are its own; `false` if not. */
  give(bytes: Uint8Array): boolean {
    if (bytes.buffer !== this.#buffer) return false;
    this.#free.push(bytes);
    return true;
  }
}

/** A slab of cached records: what it has handed out, and how much of that is still cached. */
class Slab {
  used = 0;
  live = 0;
  /** The compaction epoch it was made in (records in slabs of earlier epochs get moved). */
  constructor(readonly bytes: Uint8Array, readonly epoch: number) {}
}

/**
 * What {@linkcode DnsCache.lookup} returns for an entry: its fields as they were at the lookup (an
 * entry is a slot of the cache's typed arrays, not an object, and a slot may later hold another
 * entry), its record's bytes (valid until the next store: a slab emptied of its records is reused),
 * and the counters (`hits`, `used`, `prefetching`) read and written through while the slot still
 * holds it. Made per lookup and dropped within the turn (a query waiting to serve stale keeps the
 * key and looks it up again).
 */
class EntryView implements CacheEntry {
  constructor(
    readonly slots: Slots,
    readonly slot: number,
    readonly generation: number,
    readonly key: string,
    readonly slab: Uint8Array,
    /** Where its record starts in `slab`: the answer, then TTL offsets (2 bytes each). */
    readonly at: number,
    readonly length: number,
    readonly ttlCount: number,
    readonly questionEnd: number,
    readonly flags: number,
    readonly rcode: number,
    readonly storedAt: number,
    readonly expiresAt: number,
    readonly lifetime: number,
    readonly size: number,
  ) {}

  get bytes(): Uint8Array {
    return this.slab.subarray(this.at, this.at + this.length);
  }

  get ttlOffsets(): readonly number[] {
    const out: number[] = [];
    const base = this.at + this.length;
    for (let i = 0; i < this.ttlCount; i++) {
      out.push((this.slab[base + 2 * i]! << 8) | this.slab[base + 2 * i + 1]!);
    }
    return out;
  }

  get ttls(): readonly number[] {
    return this.ttlOffsets.map((at) => readTtl(this.slab, this.at + at));
  }

  get hasOpt(): boolean {
    return false; // kept without its OPT record (see `CachedAnswer.bytes`)
  }

  get negative(): boolean {
    return (this.flags & NEGATIVE) !== 0;
  }

  get hits(): number {
    return this.slots.hitsOf(this);
  }

  set hits(value: number) {
    this.slots.setHits(this, value);
  }

  get used(): boolean {
    return this.slots.flag(this, USED);
  }

  set used(value: boolean) {
    this.slots.setFlag(this, USED, value);
  }

  get prefetching(): boolean {
    return this.slots.flag(this, PREFETCHING);
  }

  set prefetching(value: boolean) {
    this.slots.setFlag(this, PREFETCHING, value);
  }

  get plain(): CachedAnswer | undefined {
    return undefined; // see `CacheEntry.plain`
  }
}

/**
 * The entries: one slot each in typed arrays (no object per entry, so storing an answer leaves
 * nothing for a scavenge to copy), found through an open-addressing table of slot numbers (linear
 * probing over `keyHash`, deletion by backward shift: no tombstones). An entry's record (the
 * answer, its TTL offsets, its key) is carved from a slab.
 */
class Slots {
  capacity = 0;
  /** Slots ever handed out: [0, high). */
  high = 0;
  hash = new Int32Array(0);
  generation = new Uint32Array(0);
  slab = new Int32Array(0);
  at = new Uint32Array(0);
  length = new Uint32Array(0);
  ttlCount = new Uint16Array(0);
  keyLength = new Uint16Array(0);
  questionEnd = new Uint16Array(0);
  flags = new Uint8Array(0);
  rcode = new Uint8Array(0);
  hits = new Uint32Array(0);
  size = new Uint32Array(0);
  lifetime = new Uint32Array(0);
  storedAt = new Float64Array(0);
  expiresAt = new Float64Array(0);
  /** Free slots below `high` (a stack). */
  free = new Int32Array(0);
  freeCount = 0;
  /**
   * Two words per table position: slot + 1 (0 when empty), then the slot's hash. The hash beside
   * the slot keeps a probe in the table's own cache line: read from `hash[slot]`, each probe was a
   * random read, and a miss walks the table five times (lookup, store, eviction).
   */
  table = new Int32Array(0);
  /** Positions - 1. */
  mask = 0;
  /** The slabs by number (a hole where one was let go), and the numbers free for reuse. */
  slabs: (Slab | undefined)[] = [];
  freeSlabs: number[] = [];

  /** Makes room for `slots` slots (the table stays at most half full). */
  grow(slots: number): void {
    if (slots <= this.capacity) return;
    // Doubled: a store past the capacity copies every array, so that must be rare.
    const capacity = Math.max(slots, 64, this.capacity * 2);
    const copy = <T extends Int32Array | Uint32Array | Uint16Array | Uint8Array | Float64Array>(
      old: T,
      make: (n: number) => T,
    ): T => {
      const next = make(capacity);
      next.set(old);
      return next;
    };
    this.hash = copy(this.hash, (n) => new Int32Array(n));
    this.generation = copy(this.generation, (n) => new Uint32Array(n));
    this.slab = copy(this.slab, (n) => new Int32Array(n));
    this.at = copy(this.at, (n) => new Uint32Array(n));
    this.length = copy(this.length, (n) => new Uint32Array(n));
    this.ttlCount = copy(this.ttlCount, (n) => new Uint16Array(n));
    this.keyLength = copy(this.keyLength, (n) => new Uint16Array(n));
    this.questionEnd = copy(this.questionEnd, (n) => new Uint16Array(n));
    this.flags = copy(this.flags, (n) => new Uint8Array(n));
    this.rcode = copy(this.rcode, (n) => new Uint8Array(n));
    this.hits = copy(this.hits, (n) => new Uint32Array(n));
    this.size = copy(this.size, (n) => new Uint32Array(n));
    this.lifetime = copy(this.lifetime, (n) => new Uint32Array(n));
    this.storedAt = copy(this.storedAt, (n) => new Float64Array(n));
    this.expiresAt = copy(this.expiresAt, (n) => new Float64Array(n));
    this.free = copy(this.free, (n) => new Int32Array(n));
    this.capacity = capacity;
    let positions = 16;
    while (positions < capacity * 2) positions *= 2;
    if (positions * 2 > this.table.length) {
      const old = this.table;
      const table = this.table = new Int32Array(positions * 2);
      const mask = this.mask = positions - 1;
      for (let i = 0; i < old.length; i += 2) {
        const held = old[i]!;
        if (held === 0) continue;
        const hash = old[i + 1]!;
        let p = hash & mask;
        while (table[2 * p] !== 0) p = (p + 1) & mask;
        table[2 * p] = held;
        table[2 * p + 1] = hash;
      }
    }
  }

  /** Whether the slot's record holds `key`. */
  keyIs(slot: number, key: string): boolean {
    const length = key.length;
    if (this.keyLength[slot] !== length) return false;
    const bytes = this.slabs[this.slab[slot]!]!.bytes;
    let p = this.at[slot]! + this.length[slot]! + 2 * this.ttlCount[slot]!;
    for (let i = 0; i < length; i++, p += 2) {
      if (((bytes[p]! << 8) | bytes[p + 1]!) !== key.charCodeAt(i)) return false;
    }
    return true;
  }

  /** The slot's key (read back from its record). */
  keyOf(slot: number): string {
    const bytes = this.slabs[this.slab[slot]!]!.bytes;
    const start = this.at[slot]! + this.length[slot]! + 2 * this.ttlCount[slot]!;
    let key = "";
    for (let i = 0; i < this.keyLength[slot]!; i++) {
      key += String.fromCharCode((bytes[start + 2 * i]! << 8) | bytes[start + 2 * i + 1]!);
    }
    return key;
  }

  /** The table position holding `key`, or -1. */
  find(key: string, hash: number): number {
    const table = this.table;
    const mask = this.mask;
    for (let p = hash & mask;; p = (p + 1) & mask) {
      const held = table[2 * p]!;
      if (held === 0) return -1;
      if (table[2 * p + 1] === hash && this.keyIs(held - 1, key)) return p;
    }
  }

  /** The slot at a table position that holds one. */
  slotAt(p: number): number {
    return this.table[2 * p]! - 1;
  }

  /** Entries held under `hash` (a store of a new key past {@linkcode MAX_CHAIN} is refused). */
  chain(hash: number): number {
    const table = this.table;
    let n = 0;
    for (let p = hash & this.mask;; p = (p + 1) & this.mask) {
      if (table[2 * p] === 0) return n;
      if (table[2 * p + 1] === hash) n++;
    }
  }

  /** Puts a slot (its hash set) into the table. */
  insert(slot: number): void {
    const table = this.table;
    const hash = this.hash[slot]!;
    let p = hash & this.mask;
    while (table[2 * p] !== 0) p = (p + 1) & this.mask;
    table[2 * p] = slot + 1;
    table[2 * p + 1] = hash;
  }

  /** Takes the slot at table position `p` out of the table (backward shift). */
  unlink(p: number): void {
    const table = this.table;
    const mask = this.mask;
    let hole = p;
    table[2 * hole] = 0;
    for (let q = (hole + 1) & mask;; q = (q + 1) & mask) {
      const held = table[2 * q]!;
      if (held === 0) return;
      const hash = table[2 * q + 1]!;
      const home = hash & mask;
      // Moves back into the hole when its home is not in (hole, q] (cyclically).
      const between = hole <= q ? home > hole && home <= q : home > hole || home <= q;
      if (!between) {
        table[2 * hole] = held;
        table[2 * hole + 1] = hash;
        table[2 * q] = 0;
        hole = q;
      }
    }
  }

  /** The table position of a slot (it must be held). */
  positionOf(slot: number): number {
    const table = this.table;
    for (let p = this.hash[slot]! & this.mask;; p = (p + 1) & this.mask) {
      if (table[2 * p] === slot + 1) return p;
    }
  }

  /** A free slot (`capacity` must allow one more). */
  take(): number {
    if (this.freeCount > 0) return this.free[--this.freeCount]!;
    if (this.high === this.capacity) this.grow(this.capacity * 2);
    return this.high++;
  }

  /** Whether a view still describes what its slot holds. */
  holds(view: EntryView): boolean {
    return this.generation[view.slot] === view.generation && this.slab[view.slot]! >= 0;
  }

  hitsOf(view: EntryView): number {
    return this.holds(view) ? this.hits[view.slot]! : 0;
  }

  setHits(view: EntryView, value: number): void {
    if (this.holds(view)) this.hits[view.slot] = value;
  }

  flag(view: EntryView, flag: number): boolean {
    return this.holds(view) && (this.flags[view.slot]! & flag) !== 0;
  }

  setFlag(view: EntryView, flag: number, value: boolean): void {
    if (!this.holds(view)) return;
    const slot = view.slot;
    this.flags[slot] = value ? this.flags[slot]! | flag : this.flags[slot]! & ~flag;
  }

  view(cache: Slots, slot: number, key: string): EntryView {
    return new EntryView(
      cache,
      slot,
      this.generation[slot]!,
      key,
      this.slabs[this.slab[slot]!]!.bytes,
      this.at[slot]!,
      this.length[slot]!,
      this.ttlCount[slot]!,
      this.questionEnd[slot]!,
      this.flags[slot]!,
      this.rcode[slot]!,
      this.storedAt[slot]!,
      this.expiresAt[slot]!,
      this.lifetime[slot]!,
      this.size[slot]!,
    );
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
 * import { buildQuery, parseMessage } from "@triad/dnsproxy";
 * import { cacheKey } from "./cache.ts";
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
  // One flat string from the codes: `key + String.fromCharCode(...)` made a three-character
  // string and a cons string, which the first `charCodeAt` (the key's hash) flattened into a
  // third (96 heap bytes a miss against 40, and a miss in flight kept two of them).
  const name = question.key;
  const n = name.length;
  for (let i = 0; i < n; i++) keyCodes[i] = name.charCodeAt(i);
  keyCodes[n] = question.type;
  keyCodes[n + 1] = question.class;
  keyCodes[n + 2] = bits;
  keyCodes.length = n + 3;
  return String.fromCharCode.apply(null, keyCodes);
}

/** The character codes of the key {@linkcode cacheKey} is making. */
const keyCodes: number[] = [];

/**
 * A DNS answer cache bounded by entries and bytes with LRU eviction (as CLOCK approximates it: a
 * hit marks its entry, eviction gives a marked one a second chance); positive answers live for
 * their smallest answer TTL, negative ones per RFC 2308 (SOA TTL capped by SOA MINIMUM); expired
 * entries may be served stale (RFC 8767); popular entries are flagged for prefetch near expiry.
 * Entries are slots of typed arrays found through an open-addressing table (no object per entry);
 * each entry's answer (without its OPT record), TTL offsets and key are copied into shared 256 KiB
 * slabs; when the slabs hold more than about twice the bytes of the entries cached (plus 1 MiB),
 * the cached ones are moved into new slabs, 16 per store.
 *
 * @example
 * ```ts
 * import { buildQuery, DnsCache, parseMessage } from "@triad/dnsproxy";
 * import { cacheKey } from "./cache.ts";
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
  #s = new Slots();
  /** Entries held. */
  #count = 0;
  /** The clock hand: the next slot eviction looks at (slots in turn, wrapping at `high`). */
  #hand = 0;
  #bytes = 0;
  /** The slab records are carved from now (its number in `#s.slabs`), or -1. */
  #slab = -1;
  /** Bytes of the slabs that still hold a cached record (the current one included). */
  #slabBytes = 0;
  /** Emptied slabs' bytes, for the next slabs (at most SPARE_SLABS), when not the arena's. */
  #spareSlabs: Uint8Array[] = [];
  /** Where slabs come from first (made with the first slab, for the `maxBytes` of then). */
  #arena: SlabArena | null | undefined;
  /** Bytes of the cached records in slabs. */
  #slabLive = 0;
  /** Compactions started so far. */
  #epoch = 0;
  /** The running compaction's next slot, or -1. */
  #compacting = -1;
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
   * Changes limits and behaviour in place (hot reload); entries over the new limits are evicted,
   * and a larger `maxEntries` has the arrays made for it here (a copy of those held).
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
    // A larger `maxBytes` gets a larger arena with the next slab (the slabs of the old one go
    // with their records).
    if (this.#arena != null && this.#arena.size < this.#arenaBytes()) this.#arena = undefined;
    this.#reserve();
    this.#evict();
  }

  /**
   * Makes room for `maxEntries` entries (and the one a store adds before it evicts) up to
   * {@linkcode RESERVED_ENTRIES}: a store that outgrew the arrays copied them all and rebuilt the
   * table: a fill of 2,000,000 entries paused 13, 25, 37 and 89 ms at 131,072, 262,144, 524,288
   * and 1,048,576 entries (`bench/fill_pauses.ts`). Untouched pages of the arrays take no memory.
   */
  #reserve(): void {
    this.#s.grow(Math.min(this.#maxEntries, RESERVED_ENTRIES) + 1);
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
    const s = this.#s;
    if (this.#count === 0) return undefined;
    const p = s.find(key, this.#hash(key));
    if (p < 0) return undefined;
    const slot = s.slotAt(p);
    const now = this.#now();
    const expiresAt = s.expiresAt[slot]!;
    if (now >= expiresAt + this.#staleMs) {
      this.#remove(slot, p);
      return undefined;
    }
    // Only marked: the eviction's clock hand passes over a served entry once (LRU as CLOCK
    // approximates it).
    s.flags[slot] = s.flags[slot]! | USED;
    return { entry: s.view(s, slot, key), stale: now >= expiresAt, now };
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
    // Records after the OPT record move up (it is usually the last: then nothing moves).
    const shift = cut > 0 && info.ttlOffsets.length > 0 &&
      info.ttlOffsets[info.ttlOffsets.length - 1]! > cutFrom;
    const offsets = info.ttlOffsets;
    const size = length + key.length * 2 + offsets.length * 8 + ENTRY_OVERHEAD;
    if (size > this.#maxBytes || key.length > 0xffff || offsets.length > 0xffff) return false;
    const s = this.#s;
    const now = this.#now();
    const hash = this.#hash(key);
    const p = this.#count === 0 ? -1 : s.find(key, hash);
    let slot: number;
    if (p >= 0) {
      // Replaced where it stands (its place in the clock hand's walk), and marked: a refreshed
      // answer was just asked for.
      slot = s.slotAt(p);
      this.#forget(slot);
      s.flags[slot] = USED;
    } else {
      if (this.#count > 0 && s.chain(hash) >= MAX_CHAIN) return false;
      s.grow(this.#count + 1);
      slot = s.take();
      s.hash[slot] = hash;
      s.insert(slot);
      s.flags[slot] = 0;
      this.#count++;
    }
    s.generation[slot] = (s.generation[slot]! + 1) >>> 0;
    // The record: the answer, its TTL offsets (2 bytes each), the key (2 bytes a character).
    const record = length + 2 * offsets.length + 2 * key.length;
    const slabNumber = this.#carve(record);
    const slab = s.slabs[slabNumber]!;
    const bytes = slab.bytes;
    const at = slab.used;
    slab.used += (record + 7) & ~7;
    slab.live += record;
    this.#slabLive += record;
    if (cut === 0) {
      bytes.set(response, at);
    } else {
      // Byte by byte: two subarray views cost 200 heap bytes a store (answers are short).
      for (let i = 0; i < cutFrom; i++) bytes[at + i] = response[i]!;
      for (let i = cutFrom + cut, to = at + cutFrom; i < response.length; i++) {
        bytes[to++] = response[i]!;
      }
      const arcount = ((bytes[at + 10]! << 8) | bytes[at + 11]!) - 1;
      bytes[at + 10] = arcount >> 8;
      bytes[at + 11] = arcount & 0xff;
    }
    // The copy keeps the clamped TTLs (RFC 2181 §8: the top bit set reads as zero), so a hit
    // subtracts the time spent from what it copies.
    let q = at + length;
    for (let i = 0; i < offsets.length; i++, q += 2) {
      const offset = shift && offsets[i]! > cutFrom ? offsets[i]! - cut : offsets[i]!;
      const ttl = readTtl(bytes, at + offset);
      writeTtl(bytes, at + offset, Math.min(Math.max(ttl, this.#minTtl), this.#maxTtl));
      bytes[q] = offset >> 8;
      bytes[q + 1] = offset & 0xff;
    }
    for (let i = 0; i < key.length; i++, q += 2) {
      const c = key.charCodeAt(i);
      bytes[q] = c >> 8;
      bytes[q + 1] = c & 0xff;
    }
    s.slab[slot] = slabNumber;
    s.at[slot] = at;
    s.length[slot] = length;
    s.ttlCount[slot] = offsets.length;
    s.keyLength[slot] = key.length;
    s.questionEnd[slot] = info.question.end;
    if (negative) s.flags[slot] = s.flags[slot]! | NEGATIVE;
    s.rcode[slot] = info.rcode;
    s.hits[slot] = 0;
    s.size[slot] = size;
    s.lifetime[slot] = lifetime;
    s.storedAt[slot] = now;
    s.expiresAt[slot] = now + lifetime * 1000;
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
    let source: Uint8Array;
    let start: number;
    let length: number;
    let offsets: readonly number[] | undefined;
    let questionEnd: number;
    let base = 0;
    let count: number;
    if (!(entry instanceof EntryView)) {
      source = entry.bytes;
      start = 0;
      length = source.length;
      offsets = entry.ttlOffsets;
      questionEnd = entry.questionEnd;
      count = offsets.length;
    } else {
      // The record itself: the TTL offsets are read from it, no array made.
      source = entry.slab;
      start = entry.at;
      length = entry.length;
      questionEnd = entry.questionEnd;
      base = start + length;
      count = entry.ttlCount;
    }
    const outLength = length + (plain ? 0 : OWN_OPT_LENGTH);
    let out: Uint8Array;
    if (into !== undefined && into.length >= outLength) {
      out = into.subarray(0, outLength);
    } else {
      out = new Uint8Array(outLength);
    }
    out.set(
      start === 0 && length === source.length ? source : source.subarray(start, start + length),
    );
    const key = entry.key;
    const dnssecOk = (key.charCodeAt(key.length - 1) & 1) !== 0; // see cacheKey
    if (!plain) {
      writeOwnOpt(out, length, dnssecOk);
      const arcount = ((out[10]! << 8) | out[11]!) + 1;
      out[10] = arcount >> 8;
      out[11] = arcount & 0xff;
    }
    setAnswerHeader(out, query, dnssecOk);
    copyQuestionCase(out, questionEnd, query);
    const elapsed = stale ? 0 : Math.floor((lookup.now - entry.storedAt) / 1000);
    for (let i = 0; i < count; i++) {
      const at = offsets !== undefined
        ? offsets[i]!
        : (source[base + 2 * i]! << 8) | source[base + 2 * i + 1]!;
      if (stale) {
        writeTtl(out, at, this.#staleAnswerTtl);
      } else {
        const ttl = readTtl(out, at) - elapsed; // the clamped TTL, copied from the entry
        writeTtl(out, at, ttl > 0 ? ttl : 0);
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
    this.#s = new Slots();
    this.#reserve();
    this.#count = 0;
    this.#hand = 0;
    this.#bytes = 0;
    this.#slab = -1;
    this.#slabBytes = 0;
    this.#spareSlabs = [];
    this.#arena = undefined;
    this.#slabLive = 0;
    this.#compacting = -1;
  }

  /**
   * Bytes of the slabs that cached answers are carved from (held while any answer in one is; up to
   * 16 emptied ones, 4 MiB, are kept aside for the next ones and not counted).
   */
  get slabBytes(): number {
    return this.#slabBytes;
  }

  /** The number of a slab with room for `length` bytes: the current one, or a new one. */
  #carve(length: number): number {
    const s = this.#s;
    if (length > SLAB_MAX_RECORD) {
      // A slab of its own, not the current one: released when its entry goes.
      this.#slabBytes += length;
      return this.#newSlab(new Slab(new Uint8Array(length), this.#epoch));
    }
    const current = this.#slab >= 0 ? s.slabs[this.#slab]! : undefined;
    if (current !== undefined && current.used + length <= SLAB_SIZE) return this.#slab;
    this.#retireSlab();
    this.#slabBytes += SLAB_SIZE;
    const bytes = (this.#arena === undefined ? this.#newArena() : this.#arena)?.take() ??
      this.#spareSlabs.pop() ?? new Uint8Array(SLAB_SIZE);
    this.#slab = this.#newSlab(new Slab(bytes, this.#epoch));
    return this.#slab;
  }

  /** The arena's bytes for the limits of now. */
  #arenaBytes(): number {
    return Math.ceil(Math.min(2 * this.#maxBytes + 4 * SLAB_SIZE, ARENA_MAX_BYTES) / SLAB_SIZE) *
      SLAB_SIZE;
  }

  /** Takes the slabs' address space (or none: `null`, when that much is refused). */
  #newArena(): SlabArena | null {
    try {
      this.#arena = new SlabArena(this.#arenaBytes());
    } catch {
      // (a RangeError where the address space is limited: slabs of their own, as before)
      this.#arena = null;
    }
    return this.#arena;
  }

  #newSlab(slab: Slab): number {
    const s = this.#s;
    const number = s.freeSlabs.pop() ?? s.slabs.length;
    s.slabs[number] = slab;
    return number;
  }

  /**
   * Stops filling the current slab. It was held while filled even if empty (see #release): held
   * on now only while a record in it is cached.
   */
  #retireSlab(): void {
    if (this.#slab < 0) return;
    const number = this.#slab;
    this.#slab = -1;
    if (this.#s.slabs[number]!.live === 0) this.#dropSlab(number);
  }

  #dropSlab(number: number): void {
    const s = this.#s;
    const slab = s.slabs[number]!;
    this.#slabBytes -= slab.bytes.length;
    // Kept for the next slab, or to the collector (a record's own slab, or enough kept).
    if (
      slab.bytes.length === SLAB_SIZE && this.#arena?.give(slab.bytes) !== true &&
      this.#spareSlabs.length < SPARE_SLABS
    ) {
      this.#spareSlabs.push(slab.bytes);
    }
    s.slabs[number] = undefined;
    s.freeSlabs.push(number);
  }

  /** Uncounts a slot's bytes and lets go of its record (the caller drops or rewrites the slot). */
  #forget(slot: number): void {
    const s = this.#s;
    this.#bytes -= s.size[slot]!;
    this.#release(slot);
  }

  /** Lets go of a slot's record in its slab; a slab left empty is no longer held. */
  #release(slot: number): void {
    const s = this.#s;
    const number = s.slab[slot]!;
    const slab = s.slabs[number]!;
    const record = s.length[slot]! + 2 * s.ttlCount[slot]! + 2 * s.keyLength[slot]!;
    slab.live -= record;
    this.#slabLive -= record;
    if (slab.live === 0 && number !== this.#slab) this.#dropSlab(number);
  }

  /**
   * A slab stays alive while any record in it is cached. When evicted and expired records leave
   * more than half of the slabs' bytes unused, a compaction starts: every record in a slab made
   * before it is copied into new slabs, a few per store (so no store pauses for the whole cache),
   * and the old slabs go once emptied. Amortised: the bytes copied are fewer than those freed since
   * the last compaction.
   */
  #compactSome(): void {
    const s = this.#s;
    if (this.#compacting < 0) {
      if (this.#slabBytes <= 2 * this.#slabLive + 4 * SLAB_SIZE) return;
      this.#epoch++;
      this.#compacting = 0;
      this.#retireSlab(); // it is from before the compaction too
    }
    let moved = 0;
    while (moved < COMPACT_STEP) {
      const slot = this.#compacting;
      if (slot >= s.high) {
        this.#compacting = -1;
        return;
      }
      this.#compacting++;
      const number = s.slab[slot]!;
      if (number < 0) continue; // free
      const old = s.slabs[number]!;
      // Up to date, or a record with a slab of its own (nothing to gain by moving it).
      if (old.epoch === this.#epoch || old.bytes.length !== SLAB_SIZE) continue;
      moved++;
      const record = s.length[slot]! + 2 * s.ttlCount[slot]! + 2 * s.keyLength[slot]!;
      const target = this.#carve(record);
      const slab = s.slabs[target]!;
      const at = slab.used;
      slab.bytes.set(old.bytes.subarray(s.at[slot]!, s.at[slot]! + record), at);
      slab.used += (record + 7) & ~7;
      slab.live += record;
      this.#slabLive += record;
      this.#release(slot);
      s.slab[slot] = target;
      s.at[slot] = at;
    }
  }

  /** Drops the entry in `slot`, at table position `p`. */
  #remove(slot: number, p: number): void {
    const s = this.#s;
    s.unlink(p);
    this.#forget(slot);
    s.slab[slot] = -1;
    s.generation[slot] = (s.generation[slot]! + 1) >>> 0;
    s.free[s.freeCount++] = slot;
    this.#count--;
  }

  #evict(): void {
    const s = this.#s;
    let chances = this.#count;
    while (this.#count > this.#maxEntries || this.#bytes > this.#maxBytes) {
      if (this.#count === 0) break;
      if (this.#hand >= s.high) this.#hand = 0;
      const slot = this.#hand++;
      if (s.slab[slot]! < 0) continue; // free
      const flags = s.flags[slot]!;
      if ((flags & USED) !== 0 && chances-- > 0) {
        // Served since it was stored or the hand last passed: a second chance, unmarked.
        s.flags[slot] = flags & ~USED;
        continue;
      }
      this.#remove(slot, s.positionOf(slot));
      this.evictions++;
    }
  }
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
 * import { buildQuery } from "@triad/dnsproxy";
 * import { copyQuestionCase } from "./cache.ts";
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
