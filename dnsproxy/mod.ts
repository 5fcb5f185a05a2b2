/**
 * `@triad/dnsproxy`: a caching DNS forwarding proxy. It serves UDP and TCP on one address,
 * validates every packet strictly (RFC 1035, RFC 9267), answers from a packet cache by rewriting
 * only the ID and TTLs, and forwards misses to upstream resolvers over UDP, TCP or TLS with random
 * IDs and source ports, health checks and policies.
 *
 * @example Answer a query from a running proxy
 * ```ts ignore
 * import { DnsProxy, serveDns } from "@triad/dnsproxy";
 *
 * using proxy = new DnsProxy({ upstream: { upstreams: ["127.0.0.1:53"] } });
 * await using server = await serveDns(proxy, { listen: "127.0.0.1:5353" });
 * ```
 *
 * @module
 */
export * from "./wire/constants.ts";
export * from "./wire/wire_error.ts";
export * from "./wire/name.ts";
export * from "./wire/message.ts";
export * from "./wire/builders.ts";
export * from "./cache.ts";
export * from "./acl.ts";
export * from "./rate_limit.ts";
export * from "./metrics.ts";
export * from "./health.ts";
export * from "./upstream/upstream_error.ts";
export * from "./upstream/reply_check.ts";
export * from "./upstream/tcp_pool.ts";
export * from "./upstream/udp_exchange.ts";
export * from "./upstream/upstream.ts";
export * from "./upstream/policy.ts";
export * from "./upstream/upstream_group.ts";
export * from "./proxy.ts";
export * from "./server.ts";
export type { FrontendListener } from "./frontend/listener.ts";
export type { StreamOptions } from "./frontend/stream.ts";
export * from "./netloop_server.ts";
export {
  maxTcpConnections,
  parseDnsConfig,
  toProxySettings,
  upstreamsFromResolvConf,
} from "./config.ts";
export type { DnsConfig, DnsConfigInput } from "./config.ts";
export * from "./main.ts";
export {
  type DefenceAction,
  type DefenceBlock,
  type DefenceClient,
  type DefenceEvent,
  type DefenceMeasure,
  type DefenceNext,
  type DefenceRule,
  DefenceRules,
  type DefenceRulesOptions,
  type DefenceSettings,
} from "./defence/rules.ts";
export type { DefenceConfig } from "./defence/config.ts";
export type { Defence } from "./defence/controller.ts";
export { type AttachMode, type KernelDrops, KernelFilter } from "./defence/kernel_filter.ts";
