/**
 * `deno task dns`: the caching DNS proxy as a program.
 *
 * ```sh
 * deno task dns [--listen ADDR] [--upstream ADDR]... [--config FILE] [--metrics ADDR] [--loops N]
 *   [--xdp IFACE]... [--etcd URL[,URL] [--etcd-key KEY]]
 * ```
 *
 * Configuration comes from `@triad/config`: defaults < the YAML/JSON/TOML file (`--config`, or
 * `dnsproxy.yaml` in `.` or `/etc/triad`) < an etcd key (`--etcd`) < `DNSPROXY_*` environment
 * variables < flags. The file and the key are watched: upstreams, cache limits, ACLs, the rate
 * limit and the defence's rules and block lists change in place without dropping a query; an
 * invalid file keeps the running configuration and logs why.
 *
 * @module
 */
import { createConfig, etcdSource } from "@triad/config";
import type { Config, RemoteSource } from "@triad/config";
import { createLogger, formatSocketAddress, parseDuration, parseSocketAddress } from "@triad/core";
import type { Logger, SocketAddress } from "@triad/core";
import {
  dnsConfigSchema,
  maxTcpConnections,
  toProxySettings,
  upstreamsFromResolvConf,
} from "./config.ts";
import type { DnsConfig } from "./config.ts";
import { DnsProxy } from "./proxy.ts";
import type { ProxySettings } from "./proxy.ts";
import { serveDns } from "./server.ts";
import { serveDnsOnNetloop } from "./netloop_server.ts";
import { readinessOf } from "./health.ts";
import type { Readiness } from "./health.ts";
import { checkLimits } from "@triad/netloop";
import { startDefence } from "./defence/controller.ts";
import type { Defence } from "./defence/controller.ts";
import type { DefenceEvent } from "./defence/rules.ts";

/** Options of {@linkcode runDnsProxy}. */
export interface RunDnsProxyOptions {
  /** Command-line arguments. */
  argv: readonly string[];
  /** Environment variables. @default {Deno.env.toObject()} */
  env?: Record<string, string | undefined>;
  /** Where to log; built from the configuration when absent. */
  logger?: Logger;
  /** The resolv.conf to read default upstreams from. @default {"/etc/resolv.conf"} */
  resolvConf?: string;
}

/** A running proxy program. */
export interface RunningDnsProxy extends AsyncDisposable {
  /** The address UDP and TCP listen on. */
  readonly address: SocketAddress;
  /** What serves: `builtin`, or the netloop backend and why it was chosen. */
  readonly backend: string;
  /** The proxy, with the `builtin` backend (with netloop, each loop has its own). */
  readonly proxy: DnsProxy | undefined;
  /** The Prometheus text (merged from every loop on netloop). */
  metrics(): Promise<string>;
  /**
   * What `/health/ready` answers: ready once the listeners are bound (they are before this
   * object exists) and while one upstream or more is up; not ready while closing.
   */
  readiness(): Promise<Readiness>;
  /** The metrics listener's address (`/metrics`, `/health/live`, `/health/ready`), if any. */
  readonly metricsAddress: string | undefined;
  /** Resolves after each applied reload (tests wait on it). */
  readonly reloads: { applied: number; failed: number };
  /** The defence (kernel filter state), see `defence/`. */
  readonly defence: Defence;
  /** Stops everything. */
  close(): Promise<void>;
}

/** What serves the proxy: the builtin listeners, or netloop engines. */
interface Frontend {
  readonly address: SocketAddress;
  readonly backend: string;
  readonly proxy: DnsProxy | undefined;
  /** Loops with their own proxy, whose `dns_upstream_healthy` values are summed. */
  readonly loops: number;
  reconfigure(settings: ProxySettings): void;
  metrics(): Promise<string>;
  close(): Promise<void>;
}

async function startFrontend(
  value: DnsConfig,
  settings: ProxySettings,
  logger: Logger,
  onDefence: (event: DefenceEvent) => void,
): Promise<Frontend> {
  const idleTimeout = parseDuration(value.tcp.idle_timeout);
  if (value.backend !== "builtin") {
    // Limits too low for tcp.max_connections clients: said at start, with what lifts them.
    for (
      const check of checkLimits({ connections: maxTcpConnections(value), loops: 2 * value.loops })
    ) {
      if (!check.ok) {
        logger.warn(`${check.name} is too low for tcp.max_connections`, {
          value: check.value,
          needed: check.needed,
          fix: check.fix,
        });
      }
    }
    const server = await serveDnsOnNetloop(settings, {
      listen: value.listen,
      loops: value.loops,
      backend: value.backend,
      idleTimeout,
      maxConnections: maxTcpConnections(value),
      logger,
      onDefence,
    });
    logger.info("listening", {
      address: formatSocketAddress(server.address),
      transports: "udp+tcp",
      backend: `netloop ${server.backend}`,
      loops: value.loops,
    });
    return {
      address: server.address,
      backend: `netloop ${server.backend}`,
      proxy: undefined,
      loops: server.loops,
      reconfigure: (next) => server.reconfigure(next),
      metrics: () => server.metrics(),
      close: () => server.close(),
    };
  }
  if (value.loops > 1) {
    logger.warn("the builtin backend serves on one loop", { loops: value.loops });
  }
  const proxy = new DnsProxy({ ...settings, logger, onDefence });
  try {
    const server = await serveDns(proxy, {
      listen: value.listen,
      idleTimeout,
      maxConnections: maxTcpConnections(value),
      maxPipelined: value.tcp.max_pipelined,
      logger,
    });
    return {
      address: server.address,
      backend: "builtin",
      proxy,
      loops: 1,
      reconfigure: (next) => proxy.reconfigure(next),
      metrics: () => Promise.resolve(proxy.metrics.registry.expose()),
      close: async () => {
        await server.close();
        proxy.close();
      },
    };
  } catch (error) {
    proxy.close();
    throw error;
  }
}

async function settingsOf(
  config: DnsConfig,
  resolvConf: string,
  logger: Logger,
): Promise<ProxySettings> {
  let effective = config;
  if (config.upstream.servers.length === 0) {
    const text = await Deno.readTextFile(resolvConf).catch(() => "");
    const servers = upstreamsFromResolvConf(text, config.listen);
    logger.info("upstreams from resolv.conf", { file: resolvConf, servers });
    effective = { ...config, upstream: { ...config.upstream, servers } };
  }
  const caCerts = config.upstream.ca_file === ""
    ? undefined
    : [await Deno.readTextFile(config.upstream.ca_file)];
  return toProxySettings(effective, caCerts);
}

/**
 * Loads the proxy's configuration: defaults < `dnsproxy.{yaml,json,toml}` in `.` or `/etc/triad`
 * (or `--config FILE`) < `DNSPROXY_*` variables < flags (`--listen`, `--upstream` repeated,
 * `--metrics`, `--loops`, and every key as `--a.b`).
 *
 * @param argv Command-line arguments.
 * @param env Environment variables.
 * @returns The configuration (not yet watched).
 * @throws {ConfigError} Naming the file position, variable or flag of an invalid value.
 */
async function loadDnsConfig(
  argv: readonly string[],
  env: Record<string, string | undefined>,
): Promise<Config<DnsConfig>> {
  const { rest, etcd } = etcdFlags(argv);
  return await createConfig({
    schema: dnsConfigSchema,
    files: { name: "dnsproxy", paths: [".", "/etc/triad"] },
    env: { prefix: "DNSPROXY", vars: env },
    args: { argv: rest, aliases: { upstream: "upstream.servers", xdp: "defence.xdp" } },
    program: "deno task dns",
    ...(etcd === undefined ? {} : { remote: [etcd] }),
  }) as unknown as Config<DnsConfig>;
}

/**
 * Takes `--etcd URL[,URL]` and `--etcd-key KEY` (default `/triad/dnsproxy.yaml`) out of the
 * arguments: one etcd key holding a YAML document, merged over the file and watched.
 */
function etcdFlags(argv: readonly string[]): { rest: string[]; etcd?: RemoteSource } {
  const rest: string[] = [];
  let endpoints: string[] = [];
  let key = "/triad/dnsproxy.yaml";
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const [flag, inline] = arg.split(/=(.*)/s, 2) as [string, string | undefined];
    if (flag !== "--etcd" && flag !== "--etcd-key") {
      rest.push(arg);
      continue;
    }
    const value = inline ?? argv[++i];
    if (value === undefined) throw new TypeError(`${flag} needs a value`);
    if (flag === "--etcd") endpoints = value.split(",");
    else key = value;
  }
  return endpoints.length === 0 ? { rest } : { rest, etcd: etcdSource({ endpoints, key }) };
}

/**
 * Loads the configuration, starts the proxy, its listeners and /metrics, and follows the file.
 *
 * @param options Arguments and environment.
 * @returns The running program; `close()` stops it.
 * @throws {ConfigError} When the configuration is invalid at start.
 */
export async function runDnsProxy(options: RunDnsProxyOptions): Promise<RunningDnsProxy> {
  const config = await loadDnsConfig(options.argv, options.env ?? Deno.env.toObject());
  const value = config.value;
  const logger = options.logger ?? createLogger({
    level: value.log.level,
    format: value.log.format,
    fields: { app: "dnsproxy" },
  });
  const resolvConf = options.resolvConf ?? "/etc/resolv.conf";
  const settings = await settingsOf(value, resolvConf, logger);
  if (settings.upstream.upstreams.length === 0) {
    logger.warn("no upstreams: every miss is answered SERVFAIL", { resolvConf });
  }
  let frontend: Frontend;
  // Blocks the loops start reach the kernel filter, once it is loaded (it needs the port).
  const sink: { defence?: Defence } = {};
  try {
    frontend = await startFrontend(
      value,
      settings,
      logger,
      (event) => sink.defence?.onEvent(event),
    );
  } catch (error) {
    await config[Symbol.asyncDispose]();
    throw error;
  }
  let closing = false;
  const readiness = async (): Promise<Readiness> =>
    closing
      ? { ready: false, reason: "shutting down" }
      : readinessOf(await frontend.metrics(), frontend.loops);
  const running = sink.defence = await startDefence({
    interfaces: value.defence.xdp,
    port: frontend.address.port,
    settings: settings.defence!,
    logger,
  });
  let metricsServer: Deno.HttpServer | undefined;
  let metricsAddress: string | undefined;
  if (value.metrics !== "") {
    const at = parseSocketAddress(value.metrics);
    metricsServer = Deno.serve({
      hostname: at.address,
      port: at.port,
      onListen: () => {},
    }, async (request) => {
      const path = new URL(request.url).pathname;
      if (path === "/metrics") {
        return new Response((await frontend.metrics()) + running.metrics(), {
          headers: { "content-type": "text/plain; version=0.0.4" },
        });
      }
      if (path === "/health/live") {
        // answering at all is the signal: the main loop runs and the listeners are open
        return text(closing ? 503 : 200, closing ? "shutting down" : "live");
      }
      if (path === "/health/ready") {
        const { ready, reason } = await readiness();
        return text(ready ? 200 : 503, reason);
      }
      return text(404, "Not found: try /metrics, /health/live or /health/ready");
    });
    const addr = metricsServer.addr as Deno.NetAddr;
    metricsAddress = formatSocketAddress({ ...at, port: addr.port });
    logger.info("metrics", {
      address: `http://${metricsAddress}/metrics`,
      health: ["/health/live", "/health/ready"],
    });
  }
  const reloads = { applied: 0, failed: 0 };
  config.on("change", (event) => {
    settingsOf(event.current, resolvConf, logger).then((next) => {
      frontend.reconfigure(next);
      running.reconfigure(next.defence!);
      reloads.applied++;
      const fixed = ["listen", "loops", "backend", "metrics", "tcp"].filter((path) =>
        event.changed(path as "listen")
      );
      logger.info("configuration reloaded", { cause: event.cause });
      if (fixed.length > 0) logger.warn("restart needed to apply", { paths: fixed });
    }).catch((error) => {
      reloads.failed++;
      logger.error("configuration not applied; keeping the running one", { error });
    });
  });
  config.on("error", (error) => {
    reloads.failed++;
    logger.error("configuration invalid; keeping the running one", { error: error.message });
  });
  await config.watch();
  const close = async () => {
    if (closing) return;
    closing = true;
    await config[Symbol.asyncDispose]();
    await frontend.close();
    running.close();
    await metricsServer?.shutdown();
  };
  return {
    address: frontend.address,
    backend: frontend.backend,
    proxy: frontend.proxy,
    metrics: () => frontend.metrics().then((text) => text + running.metrics()),
    readiness,
    metricsAddress,
    reloads,
    defence: running,
    close,
    [Symbol.asyncDispose]: close,
  };
}

function text(status: number, body: string): Response {
  return new Response(`${body}\n`, { status, headers: { "content-type": "text/plain" } });
}

if (import.meta.main) {
  try {
    if (Deno.args.includes("--help") || Deno.args.includes("-h")) {
      await using config = await loadDnsConfig(Deno.args, Deno.env.toObject());
      console.log(config.help());
      Deno.exit(0);
    }
    const running = await runDnsProxy({ argv: Deno.args });
    const stop = async () => {
      await running.close();
      Deno.exit(0);
    };
    Deno.addSignalListener("SIGINT", stop);
    Deno.addSignalListener("SIGTERM", stop);
  } catch (error) {
    console.error(error instanceof Error ? error.message : String(error));
    Deno.exit(2);
  }
}
