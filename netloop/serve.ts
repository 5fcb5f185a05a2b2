/**
 * `serve()`: starts an engine of event loops, one Worker each, every one with its own listener.
 *
 * @module
 */
import {
  createLogger,
  type Logger,
  type LogLevel,
  parseDuration,
  type SocketAddress,
} from "@triad/core";
import type { BackendName } from "./event_handler.ts";
import { NetloopError } from "./errors.ts";
import { chooseBackend } from "./_probe.ts";
import type { LoopConfig } from "./_loop.ts";
import type { FromLoop, ToLoop } from "./_worker.ts";
import { libc } from "./_ffi.ts";
import type { ServeTlsOptions, TlsStats } from "./tls.ts";
import { emptyTlsStats, type LoopTlsConfig } from "./_tls.ts";

/** Options of {@linkcode serve}. */
export interface ServeOptions {
  /** `"tcp"` or `"udp"`. @default {"tcp"} */
  network?: "tcp" | "udp";
  /** The address to listen on. @default {"127.0.0.1"} */
  hostname?: string;
  /** The port; 0 picks a free one (every loop then shares it). @default {0} */
  port?: number;
  /** The number of loops (Workers). @default {navigator.hardwareConcurrency} */
  loops?: number;
  /** Give every loop its own `SO_REUSEPORT` listener on the same port. @default {true} */
  reusePort?: boolean;
  /** `"auto"` probes uring, then epoll, then portable. @default {"auto"} */
  backend?: "auto" | BackendName;
  /** How often `onTick` runs: milliseconds or a duration such as `"100ms"`. Off when unset. */
  tick?: number | string;
  /**
   * Close connections without traffic for this long (milliseconds or `"30s"`; checked every
   * quarter of it, at most every second; up to 2^29 ms, about 6.2 days). Off when unset.
   */
  idleTimeout?: number | string;
  /** Stop reading a connection while more than this many bytes wait to be sent. @default {1048576} */
  maxWriteBuffer?: number;
  /** Bytes per read (and per provided buffer for uring). @default {65536} */
  readBufferSize?: number;
  /**
   * A UDP listener's kernel receive and send buffers (`SO_RCVBUF`, `SO_SNDBUF`), in bytes: room
   * for the datagrams that arrive while a loop is busy (a garbage collection pauses it for
   * milliseconds), which would otherwise be dropped. Past `net.core.rmem_max`/`wmem_max` only with
   * CAP_NET_ADMIN (`SO_RCVBUFFORCE`); without it the kernel caps the size. 0 keeps the kernel's
   * default. uring and epoll backends.
   * @default {4194304}
   */
  socketBuffer?: number;
  /** Passed to every loop as `loop.data` (structured-cloned). */
  data?: unknown;
  /** Receives what loops send with `loop.postMessage`. */
  onMessage?: (data: unknown, loop: number) => void;
  /** Where the engine logs (the backend choice, loop failures). @default {a JSON logger on stderr} */
  logger?: Logger;
  /** The level loops log at. @default {"info"} */
  logLevel?: LogLevel;
  /**
   * Serve TLS (TCP only): every accepted connection does a TLS handshake on the loop (system
   * OpenSSL, `libssl3`, on `uring` and `epoll`; `Deno.listenTls` on `portable`, which refuses
   * `earlyData` and `sessionTickets: false` and tells only the ALPN protocol), and the handler
   * sees plaintext, with {@linkcode Conn.tls}. `onOpen` runs once the handshake is done (or when
   * 0-RTT early data arrives).
   */
  tls?: ServeTlsOptions;
}

/** A certificate or key: PEM text as given, or read from the file named. */
function pemSource(what: "cert" | "key", value: string): { text: string; name: string } {
  if (typeof value !== "string" || value.length === 0) {
    throw new NetloopError(`Option tls.${what} must be PEM text or a file path`, {
      code: "bad_option",
    });
  }
  if (value.includes("-----BEGIN")) return { text: value, name: `(tls.${what} PEM text)` };
  try {
    return { text: Deno.readTextFileSync(value), name: value };
  } catch (cause) {
    throw new NetloopError(`Cannot read tls.${what} file ${value}: ${(cause as Error).message}`, {
      code: "bad_tls",
      cause,
    });
  }
}

async function resolveTls(
  tls: ServeTlsOptions,
  backend: BackendName,
  logger: Logger,
): Promise<LoopTlsConfig> {
  const cert = pemSource("cert", tls.cert);
  const key = pemSource("key", tls.key);
  const minVersion = tls.minVersion ?? "1.3";
  if (minVersion !== "1.2" && minVersion !== "1.3") {
    throw new NetloopError(`Option tls.minVersion must be "1.2" or "1.3", got "${minVersion}"`, {
      code: "bad_option",
    });
  }
  const early = tls.earlyData === true ? 16384 : tls.earlyData === false ? 0 : tls.earlyData ?? 0;
  if (!Number.isInteger(early) || early < 0) {
    throw new NetloopError(`Option tls.earlyData must be a boolean or a byte count, got ${early}`, {
      code: "bad_option",
    });
  }
  const ticketKeys = new Uint8Array(80);
  crypto.getRandomValues(ticketKeys);
  const config: LoopTlsConfig = {
    cert: cert.text,
    key: key.text,
    certName: cert.name,
    keyName: key.name,
    alpn: tls.alpn ?? [],
    sessionTickets: tls.sessionTickets ?? true,
    earlyData: early,
    minVersion: minVersion === "1.2" ? 0x0303 : 0x0304,
    handshakeTimeoutMs: milliseconds("tls.handshakeTimeout", tls.handshakeTimeout) ?? 10_000,
    ticketKeys,
  };
  const { alpnWire, checkServerConfig } = await import("./_tls.ts");
  alpnWire(config.alpn);
  if (backend === "portable") {
    // Deno.listenTls (rustls) checks the pair when each loop listens; what it cannot do is
    // refused here rather than silently left out.
    if (early > 0) {
      throw new NetloopError(
        "Option tls.earlyData: the portable backend (Deno.listenTls) offers no 0-RTT early data; " +
          'use backend "uring" or "epoll"',
        { code: "bad_option" },
      );
    }
    if (tls.sessionTickets === false) {
      throw new NetloopError(
        "Option tls.sessionTickets: the portable backend (Deno.listenTls) always lets clients " +
          'resume and cannot turn it off; use backend "uring" or "epoll"',
        { code: "bad_option" },
      );
    }
    if (minVersion === "1.3") {
      logger.warn(
        "netloop: portable backend: Deno.listenTls also accepts TLS 1.2 clients; " +
          'tls.minVersion "1.3" is not enforced (use backend "uring" or "epoll" for that)',
      );
    }
  } else {
    checkServerConfig(config);
    const { ktlsLine, probeKtls } = await import("./_ktls.ts");
    const probe = probeKtls();
    logger.info(ktlsLine(probe), { ktls: probe.available });
  }
  return config;
}

let tlsRequests = 0;
const tlsReplies = new Map<number, (reply: Extract<FromLoop, { type: "tls" }>) => void>();

interface LoopWorker {
  worker: Worker;
  control: Int32Array;
  wakeFd: number;
  stopped: Promise<void>;
}

function milliseconds(name: string, value: number | string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const ms = typeof value === "number" ? value : parseDuration(value);
  if (!Number.isFinite(ms) || ms <= 0) {
    throw new NetloopError(`Option ${name} must be a positive duration, got ${value}`, {
      code: "bad_option",
    });
  }
  return ms;
}

function positiveInteger(name: string, value: number): number {
  if (!Number.isInteger(value) || value <= 0) {
    throw new NetloopError(`Option ${name} must be a positive integer, got ${value}`, {
      code: "bad_option",
    });
  }
  return value;
}

/** uring features switched off by `TRIAD_NETLOOP_URING_DISABLE` (to exercise the fallbacks). */
function uringDisabled(): string[] {
  try {
    return (Deno.env.get("TRIAD_NETLOOP_URING_DISABLE") ?? "").split(",").filter((s) => s);
  } catch {
    return []; // no --allow-env
  }
}

function resolveHandler(handler: string | URL): string {
  if (handler instanceof URL) return handler.href;
  if (/^[a-z][a-z0-9+.-]*:/i.test(handler)) return handler;
  const path = handler.startsWith("/") ? handler : `${Deno.cwd()}/${handler}`;
  return new URL(`file://${path}`).href;
}

/**
 * A running set of event loops. Stop it with `stop()` or `await using`.
 */
export class Engine implements AsyncDisposable {
  /** The address every loop listens on (the port is filled in when 0 was asked for). */
  readonly address: SocketAddress;
  /** The backend the loops run on. */
  readonly backend: BackendName;
  /** Why that backend was chosen. */
  readonly reason: string;
  /** The number of loops. */
  readonly loops: number;
  /** Resolves when every loop has stopped (after `stop()` or a handler's `Action.Shutdown`). */
  readonly done: Promise<void>;
  #workers: LoopWorker[];
  #stopping: Promise<void> | undefined;
  #logger: Logger;
  #tls: LoopTlsConfig | undefined;

  /**
   * Wraps started loops; use {@linkcode serve} instead.
   *
   * @param init The loops and what they agreed on.
   */
  constructor(init: {
    address: SocketAddress;
    backend: BackendName;
    reason: string;
    workers: unknown[];
    logger: Logger;
    tls?: LoopTlsConfig | undefined;
  }) {
    this.#tls = init.tls;
    this.address = init.address;
    this.backend = init.backend;
    this.reason = init.reason;
    this.#workers = init.workers as LoopWorker[];
    this.loops = this.#workers.length;
    this.#logger = init.logger;
    this.done = Promise.all(this.#workers.map((w) => w.stopped)).then(() => {});
  }

  /**
   * Sends a message to every loop's `onMessage`.
   *
   * @param data A structured-cloneable value.
   */
  broadcast(data: unknown): void {
    for (const w of this.#workers) {
      w.worker.postMessage({ type: "message", data } satisfies ToLoop);
      Atomics.add(w.control, 0, 1);
      wake(w);
    }
  }

  /**
   * Replaces the TLS certificate and key without a restart: new handshakes use the new pair,
   * connections already up keep theirs.
   *
   * @param pair The certificate chain and key, as PEM text or file paths.
   * @throws {NetloopError} `bad_tls` when the pair cannot be read or does not match (the old pair
   *   stays in use); `bad_option` when the engine does not serve TLS.
   */
  async reloadTls(pair: { cert: string; key: string }): Promise<void> {
    if (this.#tls === undefined) {
      throw new NetloopError("reloadTls: this engine does not serve TLS", { code: "bad_option" });
    }
    const cert = pemSource("cert", pair.cert);
    const key = pemSource("key", pair.key);
    const next = {
      ...this.#tls,
      cert: cert.text,
      key: key.text,
      certName: cert.name,
      keyName: key.name,
    };
    if (this.backend !== "portable") {
      const { checkServerConfig } = await import("./_tls.ts");
      checkServerConfig(next);
    }
    const replies = await this.#askTls({
      op: "reload",
      cert: next.cert,
      key: next.key,
      certName: next.certName,
      keyName: next.keyName,
    });
    this.#tls = next;
    const failed = replies.find((r) => r.error !== undefined);
    if (failed) throw new NetloopError(failed.error!, { code: "bad_tls" });
  }

  /**
   * The TLS counters, summed over the loops: handshakes, resumptions, and connections closed for
   * bad input.
   *
   * @returns The counters (all 0 when the engine serves no TLS and dialed none).
   */
  async tlsStats(): Promise<TlsStats> {
    const replies = await this.#askTls({ op: "stats" });
    const sum = emptyTlsStats();
    for (const r of replies) {
      for (const k of Object.keys(sum) as (keyof TlsStats)[]) sum[k] += r.stats?.[k] ?? 0;
    }
    return sum;
  }

  #askTls(
    request:
      | { op: "stats" }
      | { op: "reload"; cert: string; key: string; certName: string; keyName: string },
  ): Promise<Extract<FromLoop, { type: "tls" }>[]> {
    return Promise.all(
      this.#workers.map((w) =>
        new Promise<Extract<FromLoop, { type: "tls" }>>((resolve) => {
          const id = ++tlsRequests;
          tlsReplies.set(id, (reply) => {
            tlsReplies.delete(id);
            resolve(reply);
          });
          w.worker.postMessage({ type: "tls", id, ...request } satisfies ToLoop);
          Atomics.add(w.control, 0, 1);
          wake(w);
        })
      ),
    );
  }

  /**
   * Stops every loop: listeners close, every connection is closed (its `onClose` runs), the
   * Workers end. Safe to call more than once.
   *
   * @returns When everything is closed.
   */
  stop(): Promise<void> {
    this.#stopping ??= (async () => {
      for (const w of this.#workers) {
        w.worker.postMessage({ type: "stop" } satisfies ToLoop);
        Atomics.add(w.control, 0, 1);
        wake(w);
      }
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timeout = new Promise<"timeout">((resolve) => {
        timer = setTimeout(() => resolve("timeout"), 10_000);
      });
      const result = await Promise.race([this.done, timeout]);
      clearTimeout(timer);
      if (result === "timeout") this.#logger.warn("loops did not stop within 10 s; terminating");
      for (const w of this.#workers) w.worker.terminate();
    })();
    return this.#stopping;
  }

  /** Stops the engine (`await using engine = await serve(...)`). */
  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }
}

const WAKE = new Uint8Array(new BigUint64Array([1n]).buffer);

function wake(w: LoopWorker): void {
  if (w.wakeFd >= 0) libc().writeBuffer(w.wakeFd, WAKE, 8);
}

function startLoop(
  handlerUrl: string,
  config: LoopConfig,
  options: ServeOptions,
  onShutdown: () => void,
  logger: Logger,
): Promise<{ loop: LoopWorker; address: SocketAddress }> {
  const worker = new Worker(new URL("./_worker.ts", import.meta.url), { type: "module" });
  const control = new Int32Array(new SharedArrayBuffer(8));
  let stoppedResolve!: () => void;
  const stopped = new Promise<void>((resolve) => (stoppedResolve = resolve));
  return new Promise((resolve, reject) => {
    let ready = false;
    worker.onmessage = (event: MessageEvent<FromLoop>) => {
      const message = event.data;
      switch (message.type) {
        case "ready":
          ready = true;
          resolve({
            loop: { worker, control, wakeFd: message.wakeFd, stopped },
            address: message.address,
          });
          break;
        case "failed": {
          const error = new NetloopError(`Loop ${config.index} failed: ${message.message}`, {
            code: message.code === "syscall" ? "syscall" : "loop_failed",
          });
          if (!ready) {
            worker.terminate();
            reject(error);
          } else logger.error(error.message, { loop: config.index });
          stoppedResolve();
          break;
        }
        case "stopped":
          stoppedResolve();
          break;
        case "shutdown":
          onShutdown();
          break;
        case "message":
          options.onMessage?.(message.data, config.index);
          break;
        case "tls":
          tlsReplies.get(message.id)?.(message);
          break;
      }
    };
    worker.onerror = (event) => {
      event.preventDefault();
      const error = new NetloopError(`Loop ${config.index} crashed: ${event.message}`, {
        code: "loop_failed",
      });
      if (!ready) {
        worker.terminate();
        reject(error);
      } else logger.error(error.message, { loop: config.index });
      stoppedResolve();
    };
    worker.postMessage({ type: "start", config, handlerUrl, control } satisfies ToLoop);
  });
}

/**
 * Starts an engine: `loops` Workers, each importing the handler module and listening on the same
 * address (with `SO_REUSEPORT`, the kernel spreads connections and datagrams over them).
 *
 * @param handler The handler module, as a URL or path; its default export (or its named exports)
 *   implement {@linkcode EventHandler}.
 * @param options Network, address, loops, backend and limits.
 * @returns The running engine, once every loop listens.
 * @throws {NetloopError} `bad_option`, `backend_unavailable`, or `syscall` (say, the port is taken).
 *
 * @example An echo server on a free port, stopped by `await using`
 * ```ts
 * import { serve } from "@triad/netloop";
 * import assert from "node:assert/strict";
 *
 * const handler = `data:text/javascript,export function onTraffic(c) { c.write(c.next()); }`;
 * await using engine = await serve(handler, { backend: "portable", loops: 1 });
 * const conn = await Deno.connect({ hostname: "127.0.0.1", port: engine.address.port });
 * await conn.write(new TextEncoder().encode("hi"));
 * const reply = new Uint8Array(2);
 * assert.equal(await conn.read(reply), 2);
 * assert.equal(new TextDecoder().decode(reply), "hi");
 * conn.close();
 * ```
 */
export async function serve(handler: string | URL, options: ServeOptions = {}): Promise<Engine> {
  const logger = options.logger ?? createLogger({ fields: { module: "netloop" } });
  const network = options.network ?? "tcp";
  if (network !== "tcp" && network !== "udp") {
    throw new NetloopError(`Option network must be "tcp" or "udp", got "${network}"`, {
      code: "bad_option",
    });
  }
  const requested = options.backend ?? "auto";
  if (!["auto", "uring", "epoll", "portable"].includes(requested)) {
    throw new NetloopError(
      `Option backend must be "auto", "uring", "epoll" or "portable", got "${requested}"`,
      { code: "bad_option" },
    );
  }
  const port = options.port ?? 0;
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new NetloopError(`Option port must be 0 to 65535, got ${port}`, { code: "bad_option" });
  }
  let loops = positiveInteger("loops", options.loops ?? navigator.hardwareConcurrency ?? 1);
  const reusePort = options.reusePort ?? true;
  const disable = uringDisabled();
  const choice = await chooseBackend(requested, disable);
  let reason = choice.reason;
  if (loops > 1 && !reusePort) {
    reason += "; one loop because reusePort is off";
    loops = 1;
  }
  if (choice.backend === "portable" && loops > 1) {
    const unstableNet = typeof (Deno as { listenDatagram?: unknown }).listenDatagram === "function";
    if (network === "udp" || !unstableNet) {
      reason += network === "udp"
        ? "; one loop because node:dgram cannot share a UDP port"
        : "; one loop because Deno.listen needs --unstable-net for reusePort";
      loops = 1;
    }
  }
  let tls: LoopTlsConfig | undefined;
  if (options.tls !== undefined) {
    if (network !== "tcp") {
      throw new NetloopError(`Option tls needs network "tcp", got "${network}"`, {
        code: "bad_option",
      });
    }
    tls = await resolveTls(options.tls, choice.backend, logger);
  }
  logger.info(`netloop: ${choice.backend} backend (${reason})`, {
    backend: choice.backend,
    reason,
    loops,
  });
  const config: LoopConfig = {
    index: 0,
    loops,
    backend: choice.backend,
    network,
    hostname: options.hostname ?? "127.0.0.1",
    port,
    reusePort,
    tickMs: milliseconds("tick", options.tick),
    idleTimeoutMs: milliseconds("idleTimeout", options.idleTimeout),
    maxWriteBuffer: positiveInteger("maxWriteBuffer", options.maxWriteBuffer ?? 1 << 20),
    readBufferSize: positiveInteger("readBufferSize", options.readBufferSize ?? 65536),
    socketBuffer: options.socketBuffer === 0
      ? 0
      : positiveInteger("socketBuffer", options.socketBuffer ?? 4 << 20),
    data: options.data,
    logLevel: options.logLevel ?? "info",
    disable,
    ...(tls === undefined ? {} : { tls }),
  };
  const handlerUrl = resolveHandler(handler);
  let engine: Engine | undefined;
  const onShutdown = () => void engine?.stop();
  const started: LoopWorker[] = [];
  try {
    const first = await startLoop(handlerUrl, config, options, onShutdown, logger);
    started.push(first.loop);
    const rest = await Promise.allSettled(
      Array.from({ length: loops - 1 }, (_, i) =>
        startLoop(
          handlerUrl,
          { ...config, index: i + 1, port: first.address.port },
          options,
          onShutdown,
          logger,
        )),
    );
    for (const r of rest) if (r.status === "fulfilled") started.push(r.value.loop);
    const failed = rest.find((r) => r.status === "rejected");
    if (failed !== undefined) throw (failed as PromiseRejectedResult).reason;
    engine = new Engine({
      address: first.address,
      backend: choice.backend,
      reason,
      workers: started,
      logger,
      tls,
    });
    return engine;
  } catch (error) {
    const partial = new Engine({
      address: config as unknown as SocketAddress,
      backend: choice.backend,
      reason,
      workers: started,
      logger,
    });
    await partial.stop();
    throw error;
  }
}
