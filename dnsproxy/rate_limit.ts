/**
 * Per-client token buckets.
 *
 * @module
 */

/** Settings of a {@linkcode RateLimiter}. */
export interface RateLimitOptions {
  /** Queries per second refilled per client. */
  rate: number;
  /** Bucket size (the burst allowed). @default {rate} */
  burst?: number;
  /** Most clients tracked; the oldest are forgotten beyond it. @default {100000} */
  maxClients?: number;
  /** Milliseconds clock, for tests. @default {performance.now} */
  now?: () => number;
}

interface Bucket {
  tokens: number;
  at: number;
}

/**
 * A token bucket per client address: each query takes a token, tokens refill at `rate` per second
 * up to `burst`.
 *
 * @example
 * ```ts
 * import { RateLimiter } from "@triad/dnsproxy";
 * import assert from "node:assert/strict";
 *
 * let clock = 0;
 * const limiter = new RateLimiter({ rate: 2, burst: 2, now: () => clock });
 * assert.equal(limiter.take("10.0.0.1"), true);
 * assert.equal(limiter.take("10.0.0.1"), true);
 * assert.equal(limiter.take("10.0.0.1"), false);
 * assert.equal(limiter.take("10.0.0.2"), true);
 * clock = 500;
 * assert.equal(limiter.take("10.0.0.1"), true);
 * ```
 */
export class RateLimiter {
  #buckets = new Map<string, Bucket>();
  #rate: number;
  #burst: number;
  #maxClients: number;
  #now: () => number;

  /**
   * Creates the limiter.
   *
   * @param options Rate, burst and bounds.
   */
  constructor(options: RateLimitOptions) {
    this.#rate = options.rate;
    this.#burst = options.burst ?? options.rate;
    this.#maxClients = options.maxClients ?? 100_000;
    this.#now = options.now ?? (() => performance.now());
  }

  /**
   * Takes a token for a client.
   *
   * @param client The client key (its address).
   * @returns `false` when the client is over its rate.
   */
  take(client: string): boolean {
    const now = this.#now();
    let bucket = this.#buckets.get(client);
    if (bucket === undefined) {
      if (this.#buckets.size >= this.#maxClients) {
        const oldest = this.#buckets.keys().next().value;
        if (oldest !== undefined) this.#buckets.delete(oldest);
      }
      bucket = { tokens: this.#burst, at: now };
      this.#buckets.set(client, bucket);
    } else {
      bucket.tokens = Math.min(this.#burst, bucket.tokens + (now - bucket.at) * this.#rate / 1000);
      bucket.at = now;
    }
    if (bucket.tokens < 1) return false;
    bucket.tokens -= 1;
    return true;
  }
}
