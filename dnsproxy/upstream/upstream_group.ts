/**
 * The upstreams of the proxy: policy, concurrency limit, per-query timeout with retry on another
 * upstream, and active health probes of upstreams that are down.
 *
 * @module
 */
import type { Logger } from "@triad/core";
import { buildQuery } from "../wire/builders.ts";
import { parseMessage } from "../wire/message.ts";
import type { MessageInfo } from "../wire/message.ts";
import { orderUpstreams } from "./policy.ts";
import type { UpstreamPolicy } from "./policy.ts";
import type { MismatchReason } from "./reply_check.ts";
import type { UpstreamError } from "./upstream_error.ts";
import { ownReply, Upstream } from "./upstream.ts";
import type {
  UdpSocketOptions,
  UpstreamOptions,
  UpstreamReply,
  UpstreamTransport,
} from "./upstream.ts";
import { randomId } from "./tcp_pool.ts";

/** Settings of an {@linkcode UpstreamGroup}. */
export interface UpstreamGroupOptions {
  /** The upstreams (addresses or full options). */
  upstreams: readonly (string | UpstreamOptions)[];
  /** How to order them per query. @default {"random"} */
  policy?: UpstreamPolicy;
  /** Queries in flight upstream beyond which new ones are answered REFUSED; 0 is no limit. @default {0} */
  maxConcurrent?: number;
  /** Time allowed per upstream try (ms). @default {2000} */
  timeout?: number;
  /** Upstreams tried per query at most. @default {3} */
  attempts?: number;
  /** Consecutive failures that mark an upstream down. @default {2} */
  maxFails?: number;
  /** Interval of active probes (`. IN NS`) of upstreams marked down (ms); 0 is off. @default {500} */
  healthCheck?: number;
  /** TCP/TLS connections idle this long are closed (ms). @default {30000} */
  idleTimeout?: number;
  /** A round trip longer than this (ms) is slow. @default {200} */
  slowRtt?: number;
  /**
   * Slow round trips in a row that deprioritise an upstream: it is tried after the others and
   * probed every `healthCheck` until a round trip is fast again. @default {3}
   */
  slowAfter?: number;
  /** Reports an upstream deprioritised (`true`) or fast again (`false`). */
  onSlow?: (upstream: string, slow: boolean) => void;
  /** Reports an idle TCP/TLS connection closed. */
  onIdleClose?: (upstream: string) => void;
  /** Where UDP queries leave from (a pool of sockets per upstream by default). */
  udpSockets?: UdpSocketOptions;
  /** Reports refused replies. */
  onMismatch?: (upstream: string, reason: MismatchReason) => void;
  /** Reports every upstream round trip. */
  onReply?: (upstream: string, rtt: number, ok: boolean) => void;
  /** Where health changes are logged. */
  logger?: Logger;
  /** How queries travel (an event loop's own sockets); Deno's sockets by default. */
  transport?: UpstreamTransport;
}

/** The outcome of {@linkcode UpstreamGroup.resolve}. */
export type GroupResult =
  | { readonly ok: true; readonly reply: UpstreamReply; readonly upstream: string }
  | { readonly ok: false; readonly reason: "busy" | "failed" };

/** Receives a query's outcome and its caller's context. */
type GroupDone = (result: GroupResult, context: unknown) => void;

/** A query going through the group's upstreams, `order[i]` being tried now. */
class GroupQuery {
  i = 0;
  constructor(
    readonly query: Uint8Array,
    readonly info: MessageInfo,
    readonly order: readonly Upstream[],
    readonly done: GroupDone,
    readonly context: unknown,
  ) {}
}

const BUSY: GroupResult = { ok: false, reason: "busy" };
const FAILED: GroupResult = { ok: false, reason: "failed" };

/**
 * A set of upstreams behind one policy. Each query tries up to `attempts` upstreams in policy
 * order, each for at most `timeout` ms, and reports `failed` when none answered (the caller answers
 * SERVFAIL or serves stale) or `busy` above `maxConcurrent` (the caller answers REFUSED).
 *
 * @example
 * ```ts ignore
 * using group = new UpstreamGroup({ upstreams: ["127.0.0.1:5300"], policy: "fastest" });
 * const result = await group.resolve(query, parseMessage(query));
 * ```
 */
export class UpstreamGroup {
  /** The upstreams. */
  readonly upstreams: readonly Upstream[];
  #options: UpstreamGroupOptions;
  #turn = 0;
  #inFlight = 0;
  #probeTimer: ReturnType<typeof setInterval> | undefined;
  #probing = new Set<Upstream>();
  #closed = false;

  /**
   * Creates the group (no traffic until the first query).
   *
   * @param options Upstreams and behaviour.
   */
  constructor(options: UpstreamGroupOptions) {
    this.#options = options;
    this.upstreams = options.upstreams.map((spec) => {
      const upstreamOptions: UpstreamOptions = typeof spec === "string"
        ? { address: spec }
        : { ...spec };
      if (options.maxFails !== undefined && upstreamOptions.maxFails === undefined) {
        upstreamOptions.maxFails = options.maxFails;
      }
      if (options.udpSockets !== undefined && upstreamOptions.udpSockets === undefined) {
        upstreamOptions.udpSockets = options.udpSockets;
      }
      if (options.transport !== undefined && upstreamOptions.transport === undefined) {
        upstreamOptions.transport = options.transport;
      }
      for (const key of ["idleTimeout", "slowRtt", "slowAfter"] as const) {
        if (options[key] !== undefined && upstreamOptions[key] === undefined) {
          upstreamOptions[key] = options[key];
        }
      }
      const name = upstreamOptions.address;
      upstreamOptions.onMismatch = (reason) => options.onMismatch?.(name, reason);
      upstreamOptions.onSlow = (slow, rtt) => {
        const fields = { upstream: name, rttMs: Math.round(rtt) };
        if (slow) options.logger?.warn("upstream slow", fields);
        else options.logger?.info("upstream fast again", fields);
        options.onSlow?.(name, slow);
      };
      upstreamOptions.onIdleClose = () => options.onIdleClose?.(name);
      return new Upstream(upstreamOptions);
    });
    const interval = options.healthCheck ?? 500;
    if (interval > 0) {
      const timer = setInterval(() => this.#probeDown(), interval);
      Deno.unrefTimer(timer);
      this.#probeTimer = timer;
    }
  }

  /** Queries in flight. */
  get inFlight(): number {
    return this.#inFlight;
  }

  /**
   * Resolves a query through the upstreams.
   *
   * @param query The client's query (not modified).
   * @param info The parsed query.
   * @returns The reply and who gave it, or why there is none.
   */
  resolve(query: Uint8Array, info: MessageInfo): Promise<GroupResult> {
    return new Promise((resolve) =>
      this.start(query.slice(), info, (result) => {
        resolve(result.ok ? { ...result, reply: ownReply(result.reply) } : result);
      }, undefined)
    );
  }

  /**
   * {@linkcode resolve}, callback style: `done` runs exactly once, synchronously when the group
   * is busy, and otherwise from the transport's receive path when it is a callback one. Nothing
   * is copied: each UDP try overwrites the query's ID, and the reply's bytes may be the
   * transport's receive buffer, valid while `done` runs (see {@linkcode Upstream.start}).
   *
   * @param query The query to send, the caller's own until `done` runs (its ID is overwritten).
   * @param info The parsed query.
   * @param done Receives the reply and who gave it, or why there is none, and `context`.
   * @param context Handed to `done` (saves the caller a closure per query).
   */
  start<C>(
    query: Uint8Array,
    info: MessageInfo,
    done: (result: GroupResult, context: C) => void,
    context: C,
  ): void {
    const max = this.#options.maxConcurrent ?? 0;
    if (max > 0 && this.#inFlight >= max) {
      done(BUSY, context);
      return;
    }
    const order = orderUpstreams(
      this.upstreams,
      this.#options.policy ?? "random",
      this.#turn++,
    );
    this.#inFlight++;
    this.#attempt(new GroupQuery(query, info, order, done as GroupDone, context));
  }

  /**
   * Tries the query's current upstream; {@linkcode tried} moves on to the next when it fails. The
   * query is the context of the upstream's callback (one object per query, where there were a
   * closure and its context per try: what they hold lives as long as the query is in flight).
   */
  #attempt(q: GroupQuery): void {
    const options = this.#options;
    if (q.i >= Math.min(q.order.length, options.attempts ?? 3) || this.#closed) {
      this.#inFlight--;
      q.done(FAILED, q.context);
      return;
    }
    q.order[q.i]!.start(q.query, q.info, options.timeout ?? 2000, this.#tried, q);
  }

  /**
   * An upstream's outcome for a query: the answer, or the next upstream tried (one function per
   * group, so that a query need not point at its group).
   */
  readonly #tried = (
    error: UpstreamError | undefined,
    reply: UpstreamReply | undefined,
    q: GroupQuery,
  ): void => {
    const options = this.#options;
    const upstream = q.order[q.i]!;
    if (reply !== undefined) {
      options.onReply?.(upstream.name, reply.rtt, true);
      this.#inFlight--;
      q.done({ ok: true, reply, upstream: upstream.name }, q.context);
      return;
    }
    options.onReply?.(upstream.name, options.timeout ?? 2000, false);
    // Logged once, by the failure that crossed maxFails (not by every query then in flight).
    if (upstream.justWentDown) {
      options.logger?.warn("upstream down", { upstream: upstream.name, error });
    }
    q.i++;
    this.#attempt(q);
  };

  #probeDown(): void {
    for (const upstream of this.upstreams) {
      // Down ones, and slow ones: a fast reply to a probe brings either back.
      if ((upstream.healthy && !upstream.slow) || this.#probing.has(upstream) || this.#closed) {
        continue;
      }
      this.#probing.add(upstream);
      const wasDown = !upstream.healthy;
      const probe = buildQuery({ id: randomId(), name: ".", type: 2 });
      upstream.exchange(probe, parseMessage(probe), this.#options.timeout ?? 2000)
        .then(() => {
          if (upstream.fails === 0 && wasDown) {
            this.#options.logger?.info("upstream up", { upstream: upstream.name });
          }
        })
        .catch(() => {})
        .finally(() => this.#probing.delete(upstream));
    }
  }

  /** Stops probes and closes pooled connections. */
  close(): void {
    this.#closed = true;
    if (this.#probeTimer !== undefined) clearInterval(this.#probeTimer);
    for (const upstream of this.upstreams) upstream.close();
  }

  /** Same as {@linkcode close}. */
  [Symbol.dispose](): void {
    this.close();
  }
}
