/**
 * `deno task dns`: the caching DNS proxy as a program.
 *
 * ```sh
 * deno task dns [--listen ADDR] [--upstream ADDR]... [--config FILE] [--metrics ADDR] [--loops N]
 *   [--xdp IFACE]... [--etcd URL[,URL] [--etcd-key KEY]]
 *   [--tls-listen ADDR] [--https-listen ADDR] [--quic-listen ADDR] [--tls-cert FILE --tls-key FILE]
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
import { createConfig, denoFileSystem, etcdSource } from "@triad/config";
import type { Config, ConfigFsWatcher, RemoteSource } from "@triad/config";
import {
  createLogger,
  formatSocketAddress,
  parseDuration,
  parseSocketAddress,
  TriadError,
} from "@triad/core";
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
import { serveDns, serveEncryptedDns } from "./server.ts";
import type { EncryptedDnsServer, EncryptedListenOptions } from "./server.ts";
import type { CertificatePair } from "./frontend/listener.ts";
import { serveDnsOnNetloop } from "./netloop_server.ts";
import { readinessOf } from "./health.ts";
import { needCertificate } from "./frontend/listener.ts";
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
  /** Certificate reloads applied and refused. */
  readonly certificateReloads: { applied: number; failed: number };
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
  /** Where a new certificate goes. */
  readonly encrypted: { setCertificate(pair: CertificatePair): Promise<void> } | undefined;
  reconfigure(settings: ProxySettings): void;
  metrics(): Promise<string>;
  close(): Promise<void>;
}

/** The encrypted listeners of the netloop backend, with their main-thread proxy. */
interface Encrypted {
  readonly proxy: DnsProxy;
  readonly server: EncryptedDnsServer;
}

/** Reads the certificate pair the configuration names, or `undefined` when none. */
async function readCertificate(value: DnsConfig): Promise<CertificatePair | undefined> {
  if (value.tls.cert === "" && value.tls.key === "") return undefined;
  if (value.tls.cert === "" || value.tls.key === "") {
    throw new TriadError("tls.cert and tls.key (--tls-cert, --tls-key) go together", {
      code: "config_invalid",
    });
  }
  const read = (path: string, what: string) =>
    Deno.readTextFile(path).catch((cause) => {
      throw new TriadError(`Cannot read the TLS ${what} ${path}: ${cause}`, {
        code: "config_invalid",
        cause,
      });
    });
  return { cert: await read(value.tls.cert, "certificate"), key: await read(value.tls.key, "key") };
}

async function encryptedOptions(value: DnsConfig): Promise<EncryptedListenOptions> {
  const given = (address: string) => address === "" ? undefined : address;
  return {
    tls: given(value.tls.listen),
    https: given(value.https.listen),
    quic: given(value.quic.listen),
    httpsPath: value.https.path,
    certificate: await readCertificate(value),
  };
}

async function startEncrypted(
  value: DnsConfig,
  settings: ProxySettings,
  logger: Logger,
  idleTimeout: number,
  onNetloop: boolean,
  onDefence: (event: DefenceEvent) => void,
): Promise<Encrypted | undefined> {
  const options = await encryptedOptions(value);
  // DoT and DoH are on the netloop engines themselves there.
  if (onNetloop) options.tls = options.https = undefined;
  if (options.tls === undefined && options.https === undefined && options.quic === undefined) {
    return undefined;
  }
  const proxy = new DnsProxy({ ...settings, logger, onDefence });
  try {
    const server = await serveEncryptedDns(proxy, options, {
      idleTimeout,
      maxConnections: maxTcpConnections(value),
      maxPipelined: value.tcp.max_pipelined,
      logger,
    });
    for (const served of server.listeners) {
      logger.info("listening", {
        address: formatSocketAddress(served.address),
        transport: served.transport,
      });
    }
    return { proxy, server };
  } catch (error) {
    proxy.close();
    throw error;
  }
}

/**
 * Follows the certificate and key files (their directories, through `@triad/config`'s file
 * system watch, so a rename over them or a Kubernetes Secret's `..data` swap is seen) and hands a
 * new pair to the listeners; a pair they refuse keeps the running one, with an error naming the
 * files.
 */
function watchCertificate(
  paths: () => { cert: string; key: string },
  target: { setCertificate(pair: CertificatePair): Promise<void> },
  logger: Logger,
  counts: { applied: number; failed: number },
): { close(): void; reload(): Promise<void> } {
  let watcher: ConfigFsWatcher | undefined;
  let watched = "";
  let timer: ReturnType<typeof setTimeout> | undefined;
  const reload = async () => {
    const { cert, key } = paths();
    try {
      const pair = {
        cert: await Deno.readTextFile(cert),
        key: await Deno.readTextFile(key),
      };
      await target.setCertificate(pair);
      counts.applied++;
      logger.info("TLS certificate reloaded", { cert, key });
    } catch (error) {
      counts.failed++;
      logger.error("TLS certificate not applied; keeping the running one", {
        cert,
        key,
        error: error instanceof Error ? error.message : String(error),
      });
    }
  };
  const follow = () => {
    const { cert, key } = paths();
    const dirs = [...new Set([dirOf(cert), dirOf(key)])];
    if (dirs.join("\0") === watched) return;
    watcher?.close();
    watched = dirs.join("\0");
    watcher = denoFileSystem.watch(dirs);
    const names = new Set([baseOf(cert), baseOf(key)]);
    (async () => {
      for await (const event of watcher!) {
        if (!event.paths.some((path) => names.has(baseOf(path)) || baseOf(path) === "..data")) {
          continue;
        }
        clearTimeout(timer);
        timer = setTimeout(() => void reload(), 100);
      }
    })().catch(() => {});
  };
  follow();
  return {
    close() {
      clearTimeout(timer);
      watcher?.close();
    },
    async reload() {
      follow();
      await reload();
    },
  };
}

function dirOf(path: string): string {
  const at = path.lastIndexOf("/");
  return at < 0 ? "." : at === 0 ? "/" : path.slice(0, at);
}

function baseOf(path: string): string {
  return path.slice(path.lastIndexOf("/") + 1);
}

async function startFrontend(
  value: DnsConfig,
  settings: ProxySettings,
  logger: Logger,
  onDefence: (event: DefenceEvent) => void,
): Promise<Frontend> {
  const idleTimeout = parseDuration(value.tcp.idle_timeout);
  if (value.backend !== "builtin") {
    // DoT and DoH on netloop's own TLS; DoQ on the main thread.
    const certificate = await readCertificate(value);
    const withTls = value.tls.listen !== "";
    const withHttps = value.https.listen !== "";
    // Limits too low for tcp.max_connections clients (TCP, and as many DoT clients when served):
    // said at start, with what lifts them.
    for (
      const check of checkLimits({
        connections: maxTcpConnections(value) * (1 + Number(withTls) + Number(withHttps)),
        loops: (2 + Number(withTls) + Number(withHttps)) * value.loops,
      })
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
      tls: withTls
        ? { listen: value.tls.listen, ...needCertificate(certificate, "DNS over TLS") }
        : undefined,
      https: withHttps
        ? { listen: value.https.listen, path: value.https.path, ...certificate }
        : undefined,
    });
    for (
      const [transport, address] of [["tls", server.tlsAddress], ["https", server.httpsAddress]]
    ) {
      if (address === undefined) continue;
      logger.info("listening", {
        address: formatSocketAddress(address as SocketAddress),
        transport,
        backend: "netloop",
      });
    }
    logger.info("listening", {
      address: formatSocketAddress(server.address),
      transports: "udp+tcp",
      backend: `netloop ${server.backend}`,
      loops: value.loops,
    });
    // DoQ runs on the main thread, with a proxy (and cache) of its own.
    let encrypted: Encrypted | undefined;
    try {
      encrypted = await startEncrypted(value, settings, logger, idleTimeout, true, onDefence);
    } catch (error) {
      await server.close();
      throw error;
    }
    return {
      address: server.address,
      backend: `netloop ${server.backend}`,
      proxy: undefined,
      loops: server.loops + (encrypted === undefined ? 0 : 1),
      encrypted: {
        async setCertificate(pair) {
          await server.reloadTls(pair);
          await encrypted?.server.setCertificate(pair);
        },
      },
      reconfigure: (next) => {
        server.reconfigure(next);
        encrypted?.proxy.reconfigure(next);
      },
      metrics: () => server.metrics(encrypted?.proxy.metrics.registry.snapshot()),
      close: async () => {
        await server.close();
        await encrypted?.server.close();
        encrypted?.proxy.close();
      },
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
      encrypted: await encryptedOptions(value),
    });
    return {
      address: server.address,
      backend: "builtin",
      proxy,
      loops: 1,
      encrypted: server,
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
    args: {
      argv: rest,
      aliases: {
        upstream: "upstream.servers",
        xdp: "defence.xdp",
        "tls-listen": "tls.listen",
        "https-listen": "https.listen",
        "quic-listen": "quic.listen",
        "tls-cert": "tls.cert",
        "tls-key": "tls.key",
      },
    },
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
      const fixed = [
        "listen",
        "loops",
        "backend",
        "metrics",
        "tcp",
        "tls.listen",
        "https",
        "quic",
      ].filter((path) => event.changed(path as "listen"));
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
  const certificateReloads = { applied: 0, failed: 0 };
  let certPaths = { cert: value.tls.cert, key: value.tls.key };
  const certificates = frontend.encrypted !== undefined && certPaths.cert !== ""
    ? watchCertificate(() => certPaths, frontend.encrypted, logger, certificateReloads)
    : undefined;
  config.on("change", (event) => {
    if (certificates === undefined || !event.changed("tls" as "listen")) return;
    certPaths = { cert: event.current.tls.cert, key: event.current.tls.key };
    void certificates.reload();
  });
  await config.watch();
  const close = async () => {
    if (closing) return;
    closing = true;
    certificates?.close();
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
    certificateReloads,
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
