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
export { Flag, Rcode, rcodeName, RrType, typeName } from "./wire/constants.ts";
export { WireError } from "./wire/wire_error.ts";
export { encodeName, nameToText } from "./wire/name.ts";
export {
  type EdnsInfo,
  type MessageInfo,
  parseMessage,
  type QuestionInfo,
} from "./wire/message.ts";
export { buildQuery, type QueryOptions } from "./wire/builders.ts";
export {
  type CachedAnswer,
  type CacheEntry,
  type CacheLookup,
  type CacheOptions,
  DnsCache,
} from "./cache.ts";
export { Acl, DEFAULT_ALLOW } from "./acl.ts";
export { RateLimiter, type RateLimitOptions } from "./rate_limit.ts";
export { type ClientTransport, DnsMetrics } from "./metrics.ts";
export { type Readiness, readinessOf } from "./health.ts";
export { UpstreamError } from "./upstream/upstream_error.ts";
export {
  parseUpstreamAddress,
  type UdpSocketOptions,
  type UdpSocketPool,
  Upstream,
  type UpstreamDone,
  type UpstreamOptions,
  type UpstreamProtocol,
  type UpstreamReply,
  type UpstreamTransport,
} from "./upstream/upstream.ts";
export type { AcceptedReply, MismatchReason } from "./upstream/reply_check.ts";
export type { UdpExchange, UdpQuery, UdpQueryDone } from "./upstream/udp_exchange.ts";
export { UPSTREAM_POLICIES, type UpstreamPolicy } from "./upstream/policy.ts";
export {
  type GroupResult,
  UpstreamGroup,
  type UpstreamGroupOptions,
} from "./upstream/upstream_group.ts";
export {
  type ClientInfo,
  DnsProxy,
  type DnsProxyOptions,
  type ProxyAnswer,
  type ProxyResponder,
  type ProxySettings,
} from "./proxy.ts";
export {
  type DnsServer,
  type EncryptedDnsServer,
  type EncryptedListenOptions,
  serveDns,
  type ServeDnsOptions,
  serveEncryptedDns,
} from "./server.ts";
export type { CertificatePair, FrontendListener } from "./frontend/listener.ts";
export type { StreamOptions } from "./frontend/stream.ts";
export { answerDohRequest } from "./frontend/https.ts";
export {
  type NetloopDnsOptions,
  type NetloopDnsServer,
  serveDnsOnNetloop,
} from "./netloop_server.ts";
export {
  maxTcpConnections,
  parseDnsConfig,
  toProxySettings,
  upstreamsFromResolvConf,
} from "./config.ts";
export type { DnsConfig, DnsConfigInput } from "./config.ts";
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
