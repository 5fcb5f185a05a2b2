/**
 * Readiness of the proxy program, read from its own metrics: `/health/ready` answers 200 when at
 * least one upstream is up, 503 with the reason otherwise.
 *
 * @module
 */

/** What `/health/ready` answers. */
export interface Readiness {
  /** Whether the proxy should be sent queries. */
  readonly ready: boolean;
  /** Why, in one line: `1 of 2 upstreams up`, `no upstream up: 10.0.0.2:53 down`, ... */
  readonly reason: string;
}

const HEALTHY_LINE = /^dns_upstream_healthy\{upstream="((?:[^"\\]|\\.)*)"\} (\S+)$/gm;

/**
 * Decides readiness from the Prometheus text of `dns_upstream_healthy`. On netloop every loop
 * (UDP and TCP ones) keeps its own upstream health and the merged value counts the loops that see
 * an upstream up: an upstream counts as up only when every loop sees it up, since a loop that
 * marked it down (the UDP loop, which carries the queries, say) is not served by it.
 *
 * @param metrics The proxy's Prometheus text.
 * @param loops How many loops' values were summed. @default {1}
 * @returns Ready when one upstream or more is up; the reason names the down ones otherwise.
 *
 * @example
 * ```ts
 * import { readinessOf } from "@triad/dnsproxy";
 * import assert from "node:assert/strict";
 *
 * const text = 'dns_upstream_healthy{upstream="10.0.0.2:53"} 0\n' +
 *   'dns_upstream_healthy{upstream="10.0.0.3:53"} 1\n';
 * assert.deepEqual(readinessOf(text), { ready: true, reason: "1 of 2 upstreams up" });
 * assert.deepEqual(readinessOf(text, 2), {
 *   ready: false,
 *   reason: "no upstream up: 10.0.0.2:53 down, 10.0.0.3:53 down in 1 of 2 loops",
 * });
 * ```
 */
export function readinessOf(metrics: string, loops = 1): Readiness {
  const up: string[] = [];
  const down: string[] = [];
  for (const match of metrics.matchAll(HEALTHY_LINE)) {
    const name = match[1]!.replace(/\\(.)/g, "$1");
    const upIn = Number(match[2]);
    if (upIn >= loops) up.push(name);
    else if (upIn <= 0) down.push(`${name} down`);
    else down.push(`${name} down in ${loops - upIn} of ${loops} loops`);
  }
  if (up.length > 0) {
    return { ready: true, reason: `${up.length} of ${up.length + down.length} upstreams up` };
  }
  if (down.length === 0) {
    return { ready: false, reason: "no upstreams configured: every miss is answered SERVFAIL" };
  }
  return { ready: false, reason: `no upstream up: ${down.join(", ")}` };
}
