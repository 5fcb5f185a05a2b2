/**
 * The proxy's configuration schema (zod, used through `@triad/config`) and its mapping to
 * {@linkcode ProxySettings}.
 *
 * @module
 */
import { formatSocketAddress, parseDuration, parseSocketAddress } from "@triad/core";
import type { StandardSchema } from "@triad/config";
import { z } from "zod";
import { DEFAULT_ALLOW } from "./acl.ts";
import { defenceSchema, toDefenceSettings } from "./defence/config.ts";
import type { DefenceConfig } from "./defence/config.ts";
import type { ProxySettings } from "./proxy.ts";
import { UPSTREAM_POLICIES } from "./upstream/policy.ts";
import { parseUpstreamAddress } from "./upstream/upstream.ts";

/** A string the given parser accepts (it throws on anything else). */
function parsedBy(parse: (text: string) => unknown, message: string): z.ZodString {
  return z.string().refine((text) => {
    try {
      parse(text);
      return true;
    } catch {
      return false;
    }
  }, { message });
}

const duration = (fallback: string): z.ZodType<string, string | undefined> =>
  parsedBy(parseDuration, 'expected a duration such as "500ms" or "2s"').default(fallback);

const socketAddress: z.ZodString = parsedBy(
  parseSocketAddress,
  'expected an address with a port, such as "127.0.0.1:5353" or "[::1]:5353"',
);

const optionalAddress = (what: string): z.ZodType<string, string | undefined> =>
  z.string().refine((text) => {
    if (text === "") return true;
    try {
      parseSocketAddress(text);
      return true;
    } catch {
      return false;
    }
  }, { message: 'expected an address with a port, such as "127.0.0.1:853", or ""' }).default("")
    .describe(`${what} address; "" for none.`);

const upstreamAddress: z.ZodString = parsedBy(
  parseUpstreamAddress,
  'expected an upstream such as "127.0.0.1:53", "tcp://10.0.0.1", "tls://1.1.1.1", ' +
    '"https://1.1.1.1/dns-query" or "quic://94.140.14.14"',
);

const schema = z.object({
  listen: socketAddress.default("127.0.0.1:5353").describe("Address for UDP and TCP."),
  loops: z.number().int().min(1).max(64).default(1).describe("netloop event loops (Workers)."),
  backend: z.enum(["auto", "uring", "epoll", "portable", "builtin"]).default("auto").describe(
    "auto (uring, else epoll, else portable), uring, epoll or portable serve on @triad/netloop; " +
      "builtin on Deno's sockets.",
  ),
  metrics: z.string().default("").describe('Prometheus /metrics address, "" for none.'),
  log: z.object({
    level: z.enum(["debug", "info", "warn", "error"]).default("info").describe("Log level."),
    format: z.enum(["json", "pretty"]).default("json").describe("Log format."),
    queries: z.boolean().default(false).describe("Log every query."),
  }).default({ level: "info", format: "json", queries: false }),
  upstream: z.object({
    servers: z.array(upstreamAddress).default([]).describe(
      "Upstreams; empty means the nameservers of /etc/resolv.conf.",
    ),
    policy: z.enum(UPSTREAM_POLICIES as [string, ...string[]]).default("random")
      .describe("random, round_robin, sequential or fastest."),
    max_concurrent: z.number().int().min(0).default(0).describe(
      "Upstream queries in flight beyond which REFUSED is answered; 0 is no limit.",
    ),
    timeout: duration("2s").describe("Time per upstream try."),
    attempts: z.number().int().min(1).max(10).default(3).describe("Upstreams tried per query."),
    max_fails: z.number().int().min(1).default(2).describe("Failures that mark an upstream down."),
    health_check: duration("500ms").describe("Probe interval of upstreams that are down."),
    tls_server_name: z.string().default("").describe(
      "Name to verify for tls://, https:// and quic:// upstreams.",
    ),
    ca_file: z.string().default("").describe(
      "Extra CA certificates (PEM) for tls://, https:// and quic:// upstreams.",
    ),
    idle_timeout: duration("30s").describe(
      "TCP/TLS upstream connections idle this long are closed.",
    ),
    slow_rtt: duration("200ms").describe("An upstream round trip longer than this is slow."),
    slow_after: z.number().int().min(1).default(3).describe(
      "Slow round trips in a row that deprioritise an upstream until it answers fast again.",
    ),
    sockets: z.enum(["pool", "per_query"]).default("pool").describe(
      "UDP source sockets: pool (random sockets of a pool, moved to new ports over time) or " +
        "per_query (a new random port per query).",
    ),
    pool_size: z.number().int().min(1).max(4096).default(256).describe(
      "UDP sockets per upstream in pool mode.",
    ),
    pool_rotate_queries: z.number().int().min(1).default(1000).describe(
      "A pool socket moves to a new random port after at most this many queries (each socket " +
        "draws its own limit, between half of it and all of it).",
    ),
    pool_rotate_after: duration("10s").describe(
      "A pool socket moves to a new random port after at most this long (each socket draws " +
        "its own limit, between half of it and all of it).",
    ),
  }).default({
    servers: [],
    policy: "random",
    max_concurrent: 0,
    timeout: "2s",
    attempts: 3,
    max_fails: 2,
    health_check: "500ms",
    tls_server_name: "",
    ca_file: "",
    idle_timeout: "30s",
    slow_rtt: "200ms",
    slow_after: 3,
    sockets: "pool",
    pool_size: 256,
    pool_rotate_queries: 1000,
    pool_rotate_after: "10s",
  }),
  cache: z.object({
    max_entries: z.number().int().min(0).default(100_000).describe("Most cached answers."),
    max_bytes: z.number().int().min(0).default(64 * 1024 * 1024).describe("Most cached bytes."),
    min_ttl: z.number().int().min(0).default(0).describe("Lowest TTL kept (seconds)."),
    max_ttl: z.number().int().min(0).default(86_400).describe("Highest TTL kept (seconds)."),
    max_negative_ttl: z.number().int().min(0).default(3_600).describe(
      "Highest TTL of negative answers (seconds).",
    ),
    serve_stale: z.number().int().min(0).default(86_400).describe(
      "Seconds past expiry an answer may be served when upstreams fail; 0 is off.",
    ),
    stale_answer_timeout: duration("1800ms").describe(
      "Serve stale when a refresh takes longer than this.",
    ),
    prefetch_hits: z.number().int().min(0).default(2).describe(
      "Hits that make an entry popular for prefetch; 0 is off.",
    ),
    prefetch_fraction: z.number().min(0).max(1).default(0.1).describe(
      "Fraction of the TTL left when popular entries are refreshed.",
    ),
  }).default({
    max_entries: 100_000,
    max_bytes: 64 * 1024 * 1024,
    min_ttl: 0,
    max_ttl: 86_400,
    max_negative_ttl: 3_600,
    serve_stale: 86_400,
    stale_answer_timeout: "1800ms",
    prefetch_hits: 2,
    prefetch_fraction: 0.1,
  }),
  acl: z.object({
    allow: z.array(z.string()).default([...DEFAULT_ALLOW]).describe("Client prefixes allowed."),
    deny: z.array(z.string()).default([]).describe("Client prefixes refused."),
  }).default({ allow: [...DEFAULT_ALLOW], deny: [] }),
  rate_limit: z.object({
    rate: z.number().min(0).default(0).describe("Queries per second per client; 0 is off."),
    burst: z.number().min(0).default(0).describe("Burst per client; 0 means equal to rate."),
  }).default({ rate: 0, burst: 0 }),
  tcp: z.object({
    idle_timeout: duration("10s").describe("Idle TCP connections are closed after this."),
    max_connections: z.number().int().min(0).default(0).describe(
      "Most TCP clients at once; 0: 15000 on netloop, 1000 on builtin.",
    ),
    max_pipelined: z.number().int().min(1).default(100).describe(
      "Queries in flight per TCP client.",
    ),
  }).default({ idle_timeout: "10s", max_connections: 0, max_pipelined: 100 }),
  defence: defenceSchema,
  tls: z.object({
    listen: optionalAddress("DNS over TLS (RFC 7858)"),
    cert: z.string().default("").describe(
      "Certificate chain (PEM file) of DoT, DoH and DoQ; reloaded when it changes.",
    ),
    key: z.string().default("").describe("Private key (PEM file) of the certificate."),
  }).default({ listen: "", cert: "", key: "" }),
  https: z.object({
    listen: optionalAddress("DNS over HTTPS (RFC 8484)"),
    path: z.string().startsWith("/").default("/dns-query").describe("URL path of DoH queries."),
  }).default({ listen: "", path: "/dns-query" }),
  quic: z.object({
    listen: optionalAddress("DNS over QUIC (RFC 9250, UDP)"),
  }).default({ listen: "" }),
});

/** The validated configuration (see the schema's descriptions, and the README). */
export interface DnsConfig {
  /** Address for UDP and TCP. */
  listen: string;
  /** netloop event loops. */
  loops: number;
  /** `auto`, `uring`, `epoll`, `portable` (netloop) or `builtin`. */
  backend: "auto" | "uring" | "epoll" | "portable" | "builtin";
  /** Prometheus /metrics address, `""` for none. */
  metrics: string;
  /** Logging. */
  log: { level: "debug" | "info" | "warn" | "error"; format: "json" | "pretty"; queries: boolean };
  /** Upstreams. */
  upstream: {
    servers: string[];
    policy: string;
    max_concurrent: number;
    timeout: string;
    attempts: number;
    max_fails: number;
    health_check: string;
    tls_server_name: string;
    ca_file: string;
    idle_timeout: string;
    slow_rtt: string;
    slow_after: number;
    sockets: "pool" | "per_query";
    pool_size: number;
    pool_rotate_queries: number;
    pool_rotate_after: string;
  };
  /** Cache. */
  cache: {
    max_entries: number;
    max_bytes: number;
    min_ttl: number;
    max_ttl: number;
    max_negative_ttl: number;
    serve_stale: number;
    stale_answer_timeout: string;
    prefetch_hits: number;
    prefetch_fraction: number;
  };
  /** Client ACL. */
  acl: { allow: string[]; deny: string[] };
  /** Per-client rate limit. */
  rate_limit: { rate: number; burst: number };
  /** TCP serving. */
  tcp: { idle_timeout: string; max_connections: number; max_pipelined: number };
  /** Dynamic and static blocks, and the kernel filter's interfaces (`defence/config.ts`). */
  defence: DefenceConfig;
  /** DNS over TLS, and the certificate of every encrypted transport. */
  tls: { listen: string; cert: string; key: string };
  /** DNS over HTTPS. */
  https: { listen: string; path: string };
  /** DNS over QUIC. */
  quic: { listen: string };
}

/**
 * The TCP clients a proxy holds at most: `tcp.max_connections`, or by backend when it is 0.
 * netloop holds 15,000 idle clients at about 2 KB of process memory each (dnsdist: 5.8 KB) while
 * it serves 1,000 active ones (bench:dns-tcp, 2026-12-07); the builtin backend keeps an 80 KiB
 * read buffer per client, so it stays at 1,000.
 *
 * @param config The configuration.
 * @returns The limit.
 *
 * @example
 * ```ts
 * import { maxTcpConnections } from "@triad/dnsproxy";
 * import assert from "node:assert/strict";
 *
 * const tcp = { idle_timeout: "10s", max_connections: 0, max_pipelined: 100 };
 * assert.equal(maxTcpConnections({ backend: "auto", tcp }), 15000);
 * assert.equal(maxTcpConnections({ backend: "builtin", tcp }), 1000);
 * assert.equal(maxTcpConnections({ backend: "epoll", tcp: { ...tcp, max_connections: 50 } }), 50);
 * ```
 */
export function maxTcpConnections(config: Pick<DnsConfig, "backend" | "tcp">): number {
  if (config.tcp.max_connections > 0) return config.tcp.max_connections;
  return config.backend === "builtin" ? 1000 : 15000;
}

/** What a file, env or flags may give: any part of {@linkcode DnsConfig}. */
export type DnsConfigInput = {
  [K in keyof DnsConfig]?: DnsConfig[K] extends string[] ? string[]
    : DnsConfig[K] extends object ? Partial<DnsConfig[K]>
    : DnsConfig[K];
};

/**
 * The configuration schema, a Standard Schema (zod 4 inside) for `@triad/config`. Every key has a
 * default, so the proxy runs with no file at all.
 */
export const dnsConfigSchema: StandardSchema<DnsConfigInput, DnsConfig> =
  schema as unknown as StandardSchema<DnsConfigInput, DnsConfig>;

/**
 * Validates a configuration object and fills in defaults.
 *
 * @param input The configuration, as parsed from a file.
 * @returns The complete configuration.
 * @throws {Error} A zod error naming each bad path.
 *
 * @example
 * ```ts
 * import { parseDnsConfig } from "@triad/dnsproxy";
 * import assert from "node:assert/strict";
 *
 * assert.equal(parseDnsConfig({}).listen, "127.0.0.1:5353");
 * assert.throws(() => parseDnsConfig({ upstream: { policy: "fast" } }), /policy/);
 * ```
 */
export function parseDnsConfig(input: unknown): DnsConfig {
  return schema.parse(input) as DnsConfig;
}

/**
 * Reads the nameservers of a resolv.conf, skipping the proxy's own address (and any loopback
 * address on the proxy's port) so the proxy never forwards to itself.
 *
 * @param text The resolv.conf contents.
 * @param listen The proxy's listen address.
 * @returns Upstream addresses (`ip:53`).
 *
 * @example
 * ```ts
 * import { upstreamsFromResolvConf } from "@triad/dnsproxy";
 * import assert from "node:assert/strict";
 *
 * const conf = "nameserver 127.0.0.1\nnameserver 10.0.0.2 # office\nnameserver ::1\n";
 * assert.deepEqual(upstreamsFromResolvConf(conf, "127.0.0.1:53"), ["10.0.0.2:53", "[::1]:53"]);
 * ```
 */
export function upstreamsFromResolvConf(text: string, listen: string): string[] {
  const self = parseSocketAddress(listen);
  const out: string[] = [];
  for (const line of text.split("\n")) {
    const match = /^\s*nameserver\s+([0-9a-fA-F.:]+)(?:%\S+)?\s*(?:[#;].*)?$/.exec(line);
    if (match === null) continue;
    let address;
    try {
      address = parseSocketAddress(match[1]!, { defaultPort: 53 });
    } catch {
      continue;
    }
    const sameHost = address.address === self.address ||
      (self.address === "0.0.0.0" || self.address === "::");
    if (sameHost && address.port === self.port) continue;
    out.push(formatSocketAddress(address));
  }
  return out;
}

/**
 * Maps a validated configuration to the proxy's run-time settings.
 *
 * @param config The configuration.
 * @param caCerts PEM certificates read from `upstream.ca_file`, if any.
 * @returns The settings for {@linkcode DnsProxy} and {@linkcode DnsProxy.reconfigure}.
 *
 * @example
 * ```ts
 * import { parseDnsConfig, toProxySettings } from "@triad/dnsproxy";
 * import assert from "node:assert/strict";
 *
 * const config = parseDnsConfig({ upstream: { servers: ["127.0.0.1:53"], timeout: "1s" } });
 * const settings = toProxySettings(config);
 * assert.equal(settings.upstream.timeout, 1000);
 * assert.equal(settings.rateLimit, undefined);
 * ```
 */
export function toProxySettings(config: DnsConfig, caCerts?: string[]): ProxySettings {
  const { upstream, cache } = config;
  const servers = upstream.servers.map((address) => {
    const options: { address: string; tlsServerName?: string; caCerts?: string[] } = { address };
    if (upstream.tls_server_name !== "") options.tlsServerName = upstream.tls_server_name;
    if (caCerts !== undefined) options.caCerts = caCerts;
    return options;
  });
  const settings: ProxySettings = {
    upstream: {
      upstreams: servers,
      policy: upstream.policy as ProxySettings["upstream"]["policy"] & string,
      maxConcurrent: upstream.max_concurrent,
      timeout: parseDuration(upstream.timeout),
      attempts: upstream.attempts,
      maxFails: upstream.max_fails,
      healthCheck: parseDuration(upstream.health_check),
      idleTimeout: parseDuration(upstream.idle_timeout),
      slowRtt: parseDuration(upstream.slow_rtt),
      slowAfter: upstream.slow_after,
      udpSockets: {
        mode: upstream.sockets,
        size: upstream.pool_size,
        rotateQueries: upstream.pool_rotate_queries,
        rotateAfter: parseDuration(upstream.pool_rotate_after),
      },
    },
    cache: {
      maxEntries: cache.max_entries,
      maxBytes: cache.max_bytes,
      minTtl: cache.min_ttl,
      maxTtl: cache.max_ttl,
      maxNegativeTtl: cache.max_negative_ttl,
      staleTtl: cache.serve_stale,
      prefetchHits: cache.prefetch_hits,
      prefetchFraction: cache.prefetch_fraction,
    },
    acl: { allow: config.acl.allow, deny: config.acl.deny },
    staleAnswerTimeout: parseDuration(cache.stale_answer_timeout),
    queryLog: config.log.queries,
    defence: toDefenceSettings(config.defence),
  };
  if (config.rate_limit.rate > 0) {
    settings.rateLimit = {
      rate: config.rate_limit.rate,
      burst: config.rate_limit.burst > 0 ? config.rate_limit.burst : config.rate_limit.rate,
    };
  }
  return settings;
}
