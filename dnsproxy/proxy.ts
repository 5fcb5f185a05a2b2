/**
 * The proxy's query path, independent of sockets: ACL, rate limit, strict parsing, RFC 8482,
 * cache, in-flight deduplication, upstreams, serve-stale, truncation for the client's limit.
 *
 * @module
 */
import { BytePool, type Logger } from "@triad/core";
import { keyHash } from "./_key_hash.ts";
import { QUERY_SLAB, QueryBytes } from "./_query_slab.ts";
import { Acl } from "./acl.ts";
import { cacheKey, copyQuestionCase, DnsCache } from "./cache.ts";
import type { CacheLookup, CacheOptions } from "./cache.ts";
import { DefenceRules } from "./defence/rules.ts";
import type { DefenceEvent, DefenceSettings } from "./defence/rules.ts";
import { DnsMetrics } from "./metrics.ts";
import type { ClientTransport } from "./metrics.ts";
import { RateLimiter } from "./rate_limit.ts";
import type { RateLimitOptions } from "./rate_limit.ts";
import { UpstreamGroup } from "./upstream/upstream_group.ts";
import type { GroupResult, UpstreamGroupOptions } from "./upstream/upstream_group.ts";
import type { UpstreamTransport } from "./upstream/upstream.ts";
import { buildAnyResponse, buildErrorResponse, truncateResponse } from "./wire/builders.ts";
import { copyWithOwnOpt, setAnswerHeader } from "./wire/_answer.ts";
import {
  CLASSIC_UDP_SIZE,
  EDNS_UDP_SIZE,
  Flag,
  Rcode,
  rcodeName,
  RrType,
  typeName,
} from "./wire/constants.ts";
import { parseMessage } from "./wire/message.ts";
import type { MessageInfo } from "./wire/message.ts";
import { nameToText } from "./wire/name.ts";

/** Who sent a query and how. */
export interface ClientInfo {
  /** The client's IP address. */
  readonly address: string;
  /** The client's port. */
  readonly port: number;
  /** The transport the query came on. */
  readonly transport: ClientTransport;
}

/** Everything that can change at run time (hot reload). */
export interface ProxySettings {
  /** Upstreams and their behaviour. */
  upstream: Omit<
    UpstreamGroupOptions,
    "onMismatch" | "onReply" | "onSlow" | "onIdleClose" | "logger" | "transport"
  >;
  /** Cache limits and behaviour. */
  cache?: CacheOptions;
  /** Client prefixes allowed and denied; loopback and private ranges by default. */
  acl?: { allow?: readonly string[]; deny?: readonly string[] };
  /** Per-client rate limit; off when absent. */
  rateLimit?: Omit<RateLimitOptions, "now">;
  /** Serve a stale answer when a refresh takes longer than this (ms, RFC 8767 §5). @default {1800} */
  staleAnswerTimeout?: number;
  /** Log every query at info level. @default {false} */
  queryLog?: boolean;
  /** Dynamic block rules and static block lists (`defence/`); off when absent. */
  defence?: DefenceSettings;
}

/** Options of a {@linkcode DnsProxy}. */
export interface DnsProxyOptions extends ProxySettings {
  /** Where logs go. */
  logger?: Logger;
  /** The metrics (shared with /metrics). @default {new DnsMetrics()} */
  metrics?: DnsMetrics;
  /** How upstream queries travel (an event loop's own sockets); Deno's sockets by default. */
  transport?: UpstreamTransport;
  /** Receives blocks starting and ending (for the kernel filter). */
  onDefence?: (event: DefenceEvent) => void;
}

/** A query answered from nothing: the raw answer or `null` for "send nothing". */
export type ProxyAnswer = Uint8Array | null;

/**
 * Receives an answer given later by {@linkcode DnsProxy.answer}, with the caller's context: the
 * answer is valid while it runs (send or copy it there).
 */
export type ProxyResponder<C> = (answer: ProxyAnswer, context: C) => void;

/**
 * A query waiting for an upstream answer: one object per cache miss, where there were two closures
 * and their context (what the miss path allocates is what the next scavenge may have to copy).
 * Released once answered, so a waiter that lived through a scavenge keeps nothing alive.
 */
class Waiter<C> {
  settled = false;
  timer: ReturnType<typeof setTimeout> | undefined = undefined;

  constructor(
    public packet: Uint8Array,
    public info: MessageInfo,
    /** The stale entry to fall back on (its key is the query's). */
    public stale: CacheLookup | undefined,
    readonly limit: number,
    public client: ClientInfo,
    public respond: ProxyResponder<C>,
    public context: C,
  ) {}

  /** Lets go of everything it references (after its answer is made). */
  release(): void {
    this.packet = EMPTY;
    this.info = NO_INFO;
    this.stale = undefined;
    this.client = NO_CLIENT;
    this.respond = ignoreAnswer;
    this.context = undefined as C;
  }
}

const EMPTY = new Uint8Array(0);
const NO_INFO = {} as MessageInfo;
const NO_CLIENT: ClientInfo = { address: "", port: 0, transport: "udp" };
function ignoreAnswer(): void {}

/**
 * The upstream query under way for a cache key, and who waits for its outcome: the query that
 * started it (none for a prefetch), then those that joined, in an array made at the first that
 * joins (most flights have one waiter: an array each was 56 heap bytes more per miss in flight).
 */
class InFlight {
  /** The next one in its bucket of {@linkcode FlightTable}. */
  next: InFlight | undefined = undefined;
  /** The waiters that joined after `first`. */
  joined: Waiter<unknown>[] | undefined = undefined;
  constructor(
    readonly key: string,
    readonly hash: number,
    public first: Waiter<unknown> | undefined,
    /** The query sent upstream (from `QueryBytes`, given back once the upstreams are done). */
    public sent: Uint8Array,
  ) {}
}

/** Buckets of the in-flight table (a power of two). */
const FLIGHT_BUCKETS = 1 << 14;

/**
 * The upstream queries in flight by key hash, at most one per hash: chains in a fixed array of
 * buckets. A `Map` churned by one insert and one delete per miss reallocated its table every few
 * misses (about 150 heap bytes a miss, measured); this allocates nothing past the flights.
 */
class FlightTable {
  readonly #buckets: (InFlight | undefined)[] = new Array(FLIGHT_BUCKETS).fill(undefined);

  /** The flight under `hash`, or `undefined`. */
  get(hash: number): InFlight | undefined {
    for (let f = this.#buckets[hash & (FLIGHT_BUCKETS - 1)]; f !== undefined; f = f.next) {
      if (f.hash === hash) return f;
    }
    return undefined;
  }

  /** Adds a flight; one under the same hash loses its place. */
  set(flight: InFlight): void {
    const old = this.get(flight.hash);
    if (old !== undefined) this.remove(old);
    const at = flight.hash & (FLIGHT_BUCKETS - 1);
    flight.next = this.#buckets[at];
    this.#buckets[at] = flight;
  }

  /** Removes a flight if it is still in the table. */
  remove(flight: InFlight): void {
    const at = flight.hash & (FLIGHT_BUCKETS - 1);
    let f = this.#buckets[at];
    if (f === flight) {
      this.#buckets[at] = flight.next;
      flight.next = undefined;
      return;
    }
    while (f !== undefined && f.next !== flight) f = f.next;
    if (f !== undefined) {
      f.next = flight.next;
      flight.next = undefined;
    }
  }
}

/**
 * The query path of the proxy. Feed it a packet and who sent it; it returns the answer bytes (at
 * once for cache hits, as a promise otherwise) or `null` when nothing must be sent.
 *
 * @example
 * ```ts
 * import { buildQuery, DnsProxy, parseMessage, Rcode } from "@triad/dnsproxy";
 * import assert from "node:assert/strict";
 *
 * using proxy = new DnsProxy({ upstream: { upstreams: [] } });
 * const client = { address: "8.8.8.8", port: 1000, transport: "udp" } as const;
 * const answer = await proxy.handle(buildQuery({ id: 1, name: "x.", type: 1 }), client);
 * assert.equal(parseMessage(answer!).rcode, Rcode.REFUSED); // not an allowed client
 * ```
 */
export class DnsProxy {
  /** The metrics. */
  readonly metrics: DnsMetrics;
  /** The cache. */
  readonly cache: DnsCache;
  #settings: ProxySettings;
  #group: UpstreamGroup;
  #acl: Acl;
  #limiter: RateLimiter | undefined;
  /** By `keyHash` of the key (see `_key_hash.ts`); what is found is checked against the key. */
  #inFlight = new FlightTable();
  /** Where synchronous cache hits of {@linkcode answer} are written (valid until the next call). */
  #scratch = new Uint8Array(65_536);
  /** Where later answers are written (valid while `respond` runs), as a pool `copyWithOwnOpt` takes. */
  readonly #later = ((buffer: Uint8Array) => ({
    alloc: (length: number) => buffer.subarray(0, length),
  }))(new Uint8Array(65_536));
  /** Answers and other short-lived copies, without a malloc each (small slabs: see QUERY_SLAB). */
  #bytes = new BytePool(QUERY_SLAB);
  /**
   * The copies a miss keeps until it is answered (the client's query, the query sent upstream),
   * given back then, so that their slabs are carved again rather than made anew.
   */
  #queries = new QueryBytes();
  #logger: Logger | undefined;
  #transport: UpstreamTransport | undefined;
  #draining = new Set<UpstreamGroup>();
  #healthExposed = new Set<string>();
  #closed = false;
  #defence: DefenceRules | undefined;
  #defenceOn = false;
  #onDefence: ((event: DefenceEvent) => void) | undefined;
  readonly #undefended = this.#answer.bind(this);

  /**
   * Creates the proxy.
   *
   * @param options Settings, logger and metrics.
   * @throws {TriadError} When an upstream or ACL entry is invalid.
   */
  constructor(options: DnsProxyOptions) {
    this.metrics = options.metrics ?? new DnsMetrics();
    this.#logger = options.logger;
    this.#transport = options.transport;
    this.#settings = options;
    this.cache = new DnsCache(options.cache ?? {});
    this.#acl = new Acl(options.acl ?? {});
    this.#limiter = options.rateLimit === undefined
      ? undefined
      : new RateLimiter(options.rateLimit);
    this.#group = this.#makeGroup(options.upstream);
    this.#onDefence = options.onDefence;
    this.#configureDefence(options.defence);
    this.metrics.registry.onCollect(() => {
      this.metrics.cacheEntries.set(this.cache.size);
      this.metrics.cacheBytes.set(this.cache.bytes);
      const exposed = new Set<string>();
      for (const upstream of this.#group.upstreams) {
        const labels = { upstream: upstream.name };
        this.metrics.upstreamHealthy.set(upstream.healthy ? 1 : 0, labels);
        this.metrics.upstreamSlow.set(upstream.slow ? 1 : 0, labels);
        if (upstream.protocol !== "udp") {
          this.metrics.upstreamConnections.set(upstream.connections, labels);
        }
        exposed.add(upstream.name);
      }
      // an upstream a reload removed is no longer "up": its series goes
      for (const name of this.#healthExposed) {
        if (exposed.has(name)) continue;
        const labels = { upstream: name };
        this.metrics.upstreamHealthy.remove(labels);
        this.metrics.upstreamSlow.remove(labels);
        this.metrics.upstreamConnections.remove(labels);
      }
      this.#healthExposed = exposed;
    });
  }

  /** The upstream group in use. */
  get upstreams(): UpstreamGroup {
    return this.#group;
  }

  #makeGroup(options: ProxySettings["upstream"]): UpstreamGroup {
    const groupOptions: UpstreamGroupOptions = {
      ...options,
      onMismatch: (upstream, reason) => this.metrics.mismatch(upstream, reason),
      onReply: (upstream, rtt, ok) => this.metrics.upstreamReply(upstream, rtt, ok),
      onSlow: (upstream, slow) => {
        if (slow) this.metrics.upstreamWentSlow(upstream);
      },
      onIdleClose: (upstream) => this.metrics.idleClosed(upstream),
    };
    if (this.#logger !== undefined) groupOptions.logger = this.#logger;
    if (this.#transport !== undefined) groupOptions.transport = this.#transport;
    return new UpstreamGroup(groupOptions);
  }

  /**
   * Applies new settings without dropping a query: the cache is resized in place, ACL and rate
   * limit are swapped, and a changed upstream list gets a new group while the old one finishes the
   * queries it has in flight.
   *
   * @param settings The new settings (validated: nothing is changed if any part is invalid).
   * @throws {TriadError} When an upstream or ACL entry is invalid; the old settings stay.
   */
  reconfigure(settings: ProxySettings): void {
    const acl = new Acl(settings.acl ?? {});
    const upstreamChanged =
      JSON.stringify(settings.upstream) !== JSON.stringify(this.#settings.upstream);
    const group = upstreamChanged ? this.#makeGroup(settings.upstream) : this.#group;
    this.#acl = acl;
    this.#limiter = settings.rateLimit === undefined
      ? undefined
      : new RateLimiter(settings.rateLimit);
    this.cache.configure(settings.cache ?? {});
    this.#configureDefence(settings.defence);
    if (group !== this.#group) {
      const old = this.#group;
      this.#group = group;
      this.#drain(old);
    }
    this.#settings = settings;
  }

  #configureDefence(settings: DefenceSettings | undefined): void {
    const on = settings !== undefined &&
      settings.rules.length + settings.clients.length + settings.names.length > 0;
    if (on && this.#defence === undefined) {
      this.#defence = new DefenceRules(settings, {
        metrics: this.metrics.registry,
        ...(this.#logger === undefined ? {} : { logger: this.#logger }),
        ...(this.#onDefence === undefined ? {} : { onEvent: this.#onDefence }),
      });
    } else if (settings !== undefined) {
      this.#defence?.reconfigure(settings);
    }
    this.#defenceOn = on;
  }

  #drain(old: UpstreamGroup): void {
    this.#draining.add(old);
    const started = performance.now();
    const limit = (this.#settings.upstream.timeout ?? 2000) *
        (this.#settings.upstream.attempts ?? 3) + 1000;
    const timer = setInterval(() => {
      if (old.inFlight === 0 || performance.now() - started > limit || this.#closed) {
        clearInterval(timer);
        old.close();
        this.#draining.delete(old);
      }
    }, 50);
  }

  /**
   * Answers one query.
   *
   * @param packet The query bytes (not kept).
   * @param client Who sent it and how.
   * @returns The answer, or `null` to send nothing (malformed beyond answering, a response, rate
   *   limited over UDP).
   */
  handle(packet: Uint8Array, client: ClientInfo): ProxyAnswer | Promise<ProxyAnswer> {
    let later: ProxyAnswer | undefined;
    let deliver: ((answer: ProxyAnswer) => void) | undefined;
    const now = this.answer(packet, client, (answer) => {
      // A later answer is valid while this runs: the promise's is a copy.
      const own = answer === null ? null : this.#bytes.copy(answer);
      if (deliver === undefined) later = own;
      else deliver(own);
    }, undefined);
    if (now !== undefined) {
      return now !== null && now.buffer === this.#scratch.buffer ? now.slice() : now;
    }
    if (later !== undefined) return Promise.resolve(later);
    return new Promise((resolve) => deliver = resolve);
  }

  /**
   * Answers one query without promises: cache hits, errors and refusals are returned at once (a
   * hit is written into a buffer the proxy reuses: the bytes are valid until the next call, so
   * send or copy them before); otherwise `undefined` is returned and `respond(answer, context)`
   * runs once when the upstreams have answered, with an answer that is valid while `respond` runs
   * (it too may be written into a buffer the proxy reuses: send or copy it there). With a
   * callback transport (an event loop's own sockets) that happens inside the loop's receive path,
   * so the answer leaves in the same turn.
   *
   * @param packet The query bytes; only read during the call (a view on a receive buffer is fine).
   * @param client Who sent it and how.
   * @param respond Receives a later answer (`null`: send nothing), valid while it runs.
   * @param context Handed to `respond` (saves a closure per query).
   * @returns The answer, `null` to send nothing, or `undefined` when `respond` will be called.
   */
  answer<C>(
    packet: Uint8Array,
    client: ClientInfo,
    respond: ProxyResponder<C>,
    context: C,
  ): ProxyAnswer | undefined {
    if (this.#defenceOn) {
      return this.#defence!.answer(packet, client, respond, context, this.#undefended);
    }
    return this.#answer(packet, client, respond, context);
  }

  #answer<C>(
    packet: Uint8Array,
    client: ClientInfo,
    respond: ProxyResponder<C>,
    context: C,
  ): ProxyAnswer | undefined {
    const headerOk = packet.length >= 12 && (packet[2]! & 0x80) === 0;
    if (!this.#acl.allows(client.address)) {
      this.metrics.aclRefused();
      return headerOk ? this.#refuse(packet) : null;
    }
    if (this.#limiter !== undefined && !this.#limiter.take(client.address)) {
      this.metrics.rateLimited();
      // Over UDP a reply would still feed a reflection attack: stay silent.
      return headerOk && client.transport !== "udp" ? this.#refuse(packet) : null;
    }
    if (!headerOk) {
      this.metrics.malformedDropped();
      return null;
    }
    let info: MessageInfo;
    try {
      info = parseMessage(packet);
    } catch (error) {
      this.metrics.malformedAnswered();
      if (this.#logger?.enabled("debug")) {
        this.#logger.debug("malformed query", { client: client.address, error });
      }
      return this.#error(packet, Rcode.FORMERR);
    }
    if (info.opcode !== 0) return this.#error(packet, Rcode.NOTIMP, info);
    const question = info.question;
    if (question === undefined || info.counts[1] !== 0 || info.counts[2] !== 0) {
      this.metrics.malformedAnswered();
      return this.#error(packet, Rcode.FORMERR, info);
    }
    this.metrics.query(question.type, client.transport);
    if (info.edns !== undefined && info.edns.version !== 0) {
      return this.#error(packet, Rcode.BADVERS, info);
    }
    if (question.type === 251 || question.type === 252) {
      return this.#error(packet, Rcode.NOTIMP, info); // IXFR, AXFR: not for a cache
    }
    const limit = client.transport !== "udp"
      ? 65_535
      : info.edns === undefined
      ? CLASSIC_UDP_SIZE
      : Math.min(Math.max(info.edns.udpSize, CLASSIC_UDP_SIZE), EDNS_UDP_SIZE);
    if (question.type === RrType.ANY) {
      return this.#any(packet, info, limit, client, respond, context);
    }
    return this.#query(packet, info, limit, client, respond, context);
  }

  /**
   * Answers ANY per RFC 8482 once it knows what the name is: the name's CNAME is asked for (as
   * any CNAME query: cached, shared with queries in flight), then a CNAME found is the answer (a
   * single RRset owned by the name, RFC 8482 §4.1; §4.2 allows the synthesized HINFO only where
   * there is no CNAME), a name that exists without one gets the synthesized HINFO, and every
   * other outcome (NXDOMAIN, SERVFAIL, a truncated answer) is passed on with the question's type
   * set back to ANY.
   */
  #any<C>(
    packet: Uint8Array,
    info: MessageInfo,
    limit: number,
    client: ClientInfo,
    respond: ProxyResponder<C>,
    context: C,
  ): ProxyAnswer | undefined {
    const query = this.#bytes.copy(packet); // kept past this call (packet may be a view)
    const typeAt = info.question!.end - 4;
    const probe = this.#bytes.copy(packet);
    probe[typeAt] = 0;
    probe[typeAt + 1] = RrType.CNAME;
    const finish = (answer: ProxyAnswer): ProxyAnswer => {
      if (answer === null || answer.length < typeAt + 2) return answer;
      const rcode = answer[3]! & 0xf;
      const answers = (answer[6]! << 8) | answer[7]!;
      if (rcode === Rcode.NOERROR && answers === 0 && (answer[2]! & (Flag.TC >> 8)) === 0) {
        return buildAnyResponse(query, info);
      }
      answer[typeAt] = 0;
      answer[typeAt + 1] = RrType.ANY;
      return answer;
    };
    const now = this.#query(
      probe,
      parseMessage(probe),
      limit,
      client,
      (answer, context: C) => respond(finish(answer), context),
      context,
    );
    return now === undefined ? undefined : finish(now);
  }

  /** Answers a QUERY from the cache, or from upstream (`undefined`: `respond` gets it later). */
  #query<C>(
    packet: Uint8Array,
    info: MessageInfo,
    limit: number,
    client: ClientInfo,
    respond: ProxyResponder<C>,
    context: C,
  ): ProxyAnswer | undefined {
    const key = cacheKey(info);
    const lookup = this.cache.lookup(key);
    if (lookup !== undefined && !lookup.stale) {
      this.metrics.cacheHits();
      const plain = info.edns === undefined;
      const out = this.cache.answer(lookup, packet, plain, this.#scratch);
      if (this.cache.claimPrefetch(lookup.entry, lookup.now)) this.#prefetch(key, packet, info);
      this.#log(client, packet, info, lookup.entry.rcode, "hit");
      return this.#fit(out, lookup.entry.rcode, limit);
    }
    this.metrics.cacheMisses();
    // The packet may be a view on a receive buffer: keep a copy past this call.
    this.#resolve(this.#queries.copy(packet), info, key, lookup, limit, client, respond, context);
    return undefined;
  }

  #resolve<C>(
    packet: Uint8Array,
    info: MessageInfo,
    key: string,
    stale: CacheLookup | undefined,
    limit: number,
    client: ClientInfo,
    respond: ProxyResponder<C>,
    context: C,
  ): void {
    const waiter = new Waiter(packet, info, stale, limit, client, respond, context);
    const hash = keyHash(key);
    const flight = this.#inFlight.get(hash);
    if (flight === undefined || flight.key !== key) {
      this.#fetch(key, hash, packet, info, waiter as Waiter<unknown>);
    } else {
      this.metrics.deduplicated();
      (flight.joined ??= []).push(waiter as Waiter<unknown>);
    }
    if (stale !== undefined && !waiter.settled) {
      // (a closure only here: serve-stale is the rare case)
      waiter.timer = setTimeout(
        () => this.#settle(waiter, undefined),
        this.#settings.staleAnswerTimeout ?? 1800,
      );
    }
  }

  /** Answers a waiting query once, with what the upstreams gave (`undefined`: stale timer). */
  #settle<C>(waiter: Waiter<C>, fetched: GroupResult | undefined): void {
    if (waiter.settled) return;
    waiter.settled = true;
    if (waiter.timer !== undefined) clearTimeout(waiter.timer);
    let out: ProxyAnswer;
    try {
      out = this.#answerFetched(waiter, fetched);
    } catch (error) {
      this.#logger?.error("answering failed", { error });
      out = null;
    }
    const { respond, context } = waiter;
    // (the answer is a copy of its own: the query's bytes are no longer read)
    this.#queries.give(waiter.packet);
    waiter.release();
    respond(out, context);
  }

  #answerFetched<C>(waiter: Waiter<C>, fetched: GroupResult | undefined): Uint8Array {
    const { packet, info, limit, client, stale } = waiter;
    if (fetched?.ok === true && fetched.reply.info.rcode !== Rcode.SERVFAIL) {
      // The answer for this client, made in one copy: the upstream's OPT record (whose options
      // belong to that exchange) replaced by the proxy's own with this client's DO bit, none
      // for a client that sent none (RFC 6891 §7); its ID, RD bit, AD if asked, letter case.
      const answerInfo = fetched.reply.info;
      const out = copyWithOwnOpt(fetched.reply.bytes, answerInfo, info.edns?.dnssecOk, this.#later);
      setAnswerHeader(out, packet, info.edns?.dnssecOk ?? false);
      copyQuestionCase(out, answerInfo.question?.end, packet);
      this.#log(client, packet, info, answerInfo.rcode, "miss", fetched.upstream);
      return this.#fit(out, answerInfo.rcode, limit);
    }
    // Looked up again: the lookup kept since the query came is valid only until the next store.
    const still = stale === undefined ? undefined : this.cache.lookup(stale.entry.key);
    if (still !== undefined) {
      this.metrics.cacheStale();
      this.#log(client, packet, info, still.entry.rcode, "stale");
      const out = this.cache.answer(still, packet, info.edns === undefined);
      return this.#fit(out, still.entry.rcode, limit);
    }
    const rcode = fetched?.ok === false && fetched.reason === "busy"
      ? Rcode.REFUSED
      : Rcode.SERVFAIL;
    this.#log(client, packet, info, rcode, "miss");
    return this.#error(packet, rcode, info);
  }

  /**
   * Starts one upstream query for `key`; every waiter (joined later too) gets its outcome.
   * `query` is only read during the call (the upstream query is a copy).
   */
  #fetch(
    key: string,
    hash: number,
    query: Uint8Array,
    info: MessageInfo,
    first: Waiter<unknown> | undefined,
  ): void {
    // Another key in flight under the same hash loses its place: later queries for it start
    // their own upstream query instead of joining (its waiters still get their answer).
    const flight = new InFlight(key, hash, first, withEdns(query, info, this.#queries));
    this.#inFlight.set(flight);
    // The flight is the callback's context: one function for every query, not a closure each.
    this.#group.start(flight.sent, info, this.#fetched, flight);
  }

  /** The upstreams' outcome for a flight: cached if it may be, then given to every waiter. */
  readonly #fetched = (result: GroupResult, flight: InFlight): void => {
    if (result.ok) this.cache.store(flight.key, result.reply.bytes, result.reply.info);
    this.#inFlight.remove(flight);
    // A flight (or array) that lived through a scavenge keeps whatever it points to alive at the
    // next ones until a full collection, even once it is garbage itself: let go of the waiters.
    const first = flight.first;
    const joined = flight.joined;
    flight.first = flight.joined = undefined;
    // The upstreams are done with the query they were sent (`done` runs once, when they are).
    this.#queries.give(flight.sent);
    flight.sent = EMPTY;
    if (first !== undefined) this.#settleFetched(first, result);
    if (joined === undefined) return;
    for (let i = 0; i < joined.length; i++) this.#settleFetched(joined[i]!, result);
    joined.length = 0;
  };

  /** Settles a waiter with the upstreams' outcome; a failure is logged, not thrown. */
  #settleFetched(waiter: Waiter<unknown>, result: GroupResult): void {
    try {
      this.#settle(waiter, result);
    } catch (error) {
      this.#logger?.error("answering failed", { error });
    }
  }

  #prefetch(key: string, packet: Uint8Array, info: MessageInfo): void {
    const hash = keyHash(key);
    if (this.#inFlight.get(hash)?.key === key) return;
    this.metrics.prefetches();
    this.#fetch(key, hash, packet, info, undefined);
  }

  /**
   * Counts an answer and truncates it past the client's limit (its OPT record, when the client
   * sent none, is removed before: by `cache.answer`, or in the miss path's copy).
   *
   * @param info The parsed form of `out` when the caller has it (else parsed if needed: rare).
   */
  #fit(out: Uint8Array, rcode: number, limit: number, info?: MessageInfo): Uint8Array {
    this.metrics.response(rcode);
    if (out.length <= limit) return out;
    return truncateResponse(out, info ?? parseMessage(out));
  }

  #error(packet: Uint8Array, rcode: number, info?: MessageInfo): Uint8Array {
    this.metrics.response(rcode);
    return buildErrorResponse(packet, rcode, info);
  }

  /**
   * REFUSED to a client refused before its query was parsed (ACL, rate limit over TCP): parsed
   * now, so that the answer echoes its question and its OPT record's DO bit (RFC 3225 §3).
   */
  #refuse(packet: Uint8Array): Uint8Array {
    let info: MessageInfo | undefined;
    try {
      info = parseMessage(packet);
    } catch {
      // Refused all the same, with the header only.
    }
    return this.#error(packet, Rcode.REFUSED, info);
  }

  #log(
    client: ClientInfo,
    packet: Uint8Array,
    info: MessageInfo,
    rcode: number,
    cache: string,
    upstream?: string,
  ): void {
    if (this.#settings.queryLog !== true || this.#logger === undefined) return;
    const fields: Record<string, unknown> = {
      client: client.address,
      transport: client.transport,
      name: nameToText(packet, info.question!.nameOffset),
      type: typeName(info.question!.type),
      rcode: rcodeName(rcode),
      cache,
    };
    if (upstream !== undefined) fields.upstream = upstream;
    // Upstreams passed over for slow round trips (rare: a loop only when one is).
    let slow: string | undefined;
    for (const u of this.#group.upstreams) {
      if (u.slow) slow = slow === undefined ? u.name : `${slow},${u.name}`;
    }
    if (slow !== undefined) fields.deprioritized = slow;
    this.#logger.info("query", fields);
  }

  /** Stops upstream probes and closes pooled connections. */
  close(): void {
    this.#closed = true;
    this.#group.close();
    for (const group of this.#draining) group.close();
  }

  /** Same as {@linkcode close}. */
  [Symbol.dispose](): void {
    this.close();
  }
}

/**
 * A copy of the query as sent upstream: RD and AD set (the answer is cached for every client,
 * whatever RD and AD they send; AD is cleared for those who do not ask, RFC 6840 §5.7) and an
 * OPT record of the proxy's own, advertising 1232 bytes with the client's
 * DO bit and no options (the client's options, such as its COOKIE or NSID request, are meant for
 * the proxy).
 */
function withEdns(
  query: Uint8Array,
  info: MessageInfo,
  bytes: { alloc(length: number): Uint8Array },
): Uint8Array {
  const out = copyWithOwnOpt(query, info, info.edns?.dnssecOk ?? false, bytes);
  out[2] = out[2]! | (Flag.RD >> 8);
  out[3] = out[3]! | Flag.AD;
  return out;
}
