/**
 * Upstream selection policies: the order in which upstreams are tried for one query.
 *
 * @module
 */
import type { Upstream } from "./upstream.ts";

/** The policies (CoreDNS forward and dnsdist names). */
export type UpstreamPolicy = "random" | "round_robin" | "sequential" | "fastest";

/** The policy names, for validation. */
export const UPSTREAM_POLICIES: readonly UpstreamPolicy[] = [
  "random",
  "round_robin",
  "sequential",
  "fastest",
];

/**
 * Orders upstreams for one query: healthy ones first in policy order, then the slow ones
 * (deprioritised: see `UpstreamOptions.slowAfter`), then the down ones (still worth a try when
 * every upstream is down, as CoreDNS does).
 *
 * - `random`: uniform shuffle.
 * - `round_robin`: rotate the start by one per query.
 * - `sequential`: configuration order.
 * - `fastest`: weighted by 1/RTT (an upstream never measured counts as fast so it gets measured).
 *
 * @param upstreams The upstreams in configuration order.
 * @param policy The policy.
 * @param turn A per-group counter (round robin).
 * @param random Uniform [0, 1) source, for tests.
 * @returns The upstreams in the order to try.
 *
 * @example
 * ```ts
 * import { Upstream } from "@triad/dnsproxy";
 * import { orderUpstreams } from "./policy.ts";
 * import assert from "node:assert/strict";
 *
 * const a = new Upstream({ address: "127.0.0.1:5301" });
 * const b = new Upstream({ address: "127.0.0.1:5302" });
 * assert.deepEqual(orderUpstreams([a, b], "round_robin", 1), [b, a]);
 * a.close();
 * b.close();
 * ```
 */
export function orderUpstreams(
  upstreams: readonly Upstream[],
  policy: UpstreamPolicy,
  turn: number,
  random: () => number = Math.random,
): readonly Upstream[] {
  // One upstream (the common case) has one order: no arrays per query.
  if (upstreams.length === 1) return upstreams;
  const healthy: Upstream[] = [];
  const slow: Upstream[] = [];
  const down: Upstream[] = [];
  const n = upstreams.length;
  for (let i = 0; i < n; i++) {
    const upstream = upstreams[policy === "round_robin" ? (i + turn) % n : i]!;
    (!upstream.healthy ? down : upstream.slow ? slow : healthy).push(upstream);
  }
  if (policy === "random") {
    shuffle(healthy, random);
    shuffle(slow, random);
  } else if (policy === "fastest") {
    weightedByRtt(healthy, random);
    weightedByRtt(slow, random);
  }
  for (const upstream of slow) healthy.push(upstream);
  for (const upstream of down) healthy.push(upstream);
  return healthy;
}

function shuffle(list: Upstream[], random: () => number): void {
  for (let i = list.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [list[i], list[j]] = [list[j]!, list[i]!];
  }
}

/** Weighted sampling without replacement, weight 1/RTT. */
function weightedByRtt(list: Upstream[], random: () => number): void {
  const weight = (u: Upstream) => 1 / Math.max(u.rtt, 0.05);
  for (let i = 0; i < list.length - 1; i++) {
    let total = 0;
    for (let j = i; j < list.length; j++) total += weight(list[j]!);
    let pick = random() * total;
    let chosen = i;
    for (let j = i; j < list.length; j++) {
      pick -= weight(list[j]!);
      if (pick < 0) {
        chosen = j;
        break;
      }
    }
    [list[i], list[chosen]] = [list[chosen]!, list[i]!];
  }
}
