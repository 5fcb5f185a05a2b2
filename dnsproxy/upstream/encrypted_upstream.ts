/**
 * Upstreams over DNS over HTTPS (RFC 8484: one HTTP/2 connection, each query a POST stream on it)
 * and DNS over QUIC (RFC 9250: one QUIC connection, each query a stream). Both send the message ID
 * 0 (RFC 8484 §4.1, RFC 9250 §4.2.1) and accept a reply only when its ID and question match.
 *
 * @module
 */
import http2 from "node:http2";
import type { MessageInfo } from "../wire/message.ts";
import { concat, DNS_FRAMING, onlyMessage, readAll } from "../_bytes.ts";
import { checkReply } from "./reply_check.ts";
import type { AcceptedReply, MismatchReason } from "./reply_check.ts";
import { UpstreamError } from "./upstream_error.ts";

/** What an upstream's connection-oriented transport offers (the TCP/TLS pool is one). */
export interface StreamExchanger {
  /** One query and its accepted reply. */
  exchange(query: Uint8Array, info: MessageInfo, timeoutMs: number): Promise<AcceptedReply>;
  /** Open connections. */
  readonly connections: number;
  /** Closes the connection; queries in flight fail. */
  close(): void;
}

/** Where and how an encrypted upstream is reached. */
export interface EncryptedUpstreamOptions {
  /** The IP address. */
  hostname: string;
  /** The port. */
  port: number;
  /** The name to verify in its certificate (and send as SNI); the address by default. */
  serverName?: string | undefined;
  /** Extra PEM CA certificates to trust. */
  caCerts?: string[] | undefined;
  /** How it is named in errors. */
  label: string;
  /** Called for every refused reply. */
  onMismatch: (reason: MismatchReason) => void;
}

const DNS_MESSAGE = "application/dns-message";

function withIdZero(query: Uint8Array): Uint8Array {
  const copy = query.slice();
  copy[0] = 0;
  copy[1] = 0;
  return copy;
}

function accept(
  bytes: Uint8Array,
  info: MessageInfo,
  options: EncryptedUpstreamOptions,
): AcceptedReply {
  const checked = checkReply(bytes, 0, info);
  if (typeof checked === "string") {
    options.onMismatch(checked);
    throw new UpstreamError(`Upstream ${options.label} sent a reply refused (${checked})`, {
      code: "network",
    });
  }
  return checked;
}

function timedOut(label: string, how: string): UpstreamError {
  return new UpstreamError(`Upstream ${label} over ${how} timed out`, { code: "timeout" });
}

/** A DNS over HTTPS upstream: one HTTP/2 session, multiplexed, opened again when it closes. */
export class DohExchanger implements StreamExchanger {
  #session: http2.ClientHttp2Session | undefined;
  #options: EncryptedUpstreamOptions;
  #path: string;
  #closed = false;

  /**
   * Creates the client (it connects on the first query).
   *
   * @param options Address, certificate checks.
   * @param path The URL path (`/dns-query`).
   */
  constructor(options: EncryptedUpstreamOptions, path: string) {
    this.#options = options;
    this.#path = path;
  }

  get connections(): number {
    return this.#session === undefined ? 0 : 1;
  }

  #connect(): http2.ClientHttp2Session {
    const existing = this.#session;
    if (existing !== undefined && !existing.closed && !existing.destroyed) return existing;
    const { hostname, port, serverName, caCerts } = this.#options;
    const host = hostname.includes(":") ? `[${hostname}]` : hostname;
    const session = http2.connect(`https://${host}:${port}`, {
      ...(caCerts === undefined ? {} : { ca: caCerts }),
      ...(serverName === undefined || /^[\d.:]+$/.test(serverName)
        ? {}
        : { servername: serverName }),
    });
    session.on("error", () => {});
    session.on("close", () => {
      if (this.#session === session) this.#session = undefined;
    });
    this.#session = session;
    return session;
  }

  exchange(query: Uint8Array, info: MessageInfo, timeoutMs: number): Promise<AcceptedReply> {
    if (this.#closed) {
      return Promise.reject(
        new UpstreamError(`Upstream ${this.#options.label} is closed`, { code: "closed" }),
      );
    }
    const label = this.#options.label;
    return new Promise((resolve, reject) => {
      let request: http2.ClientHttp2Stream;
      try {
        request = this.#connect().request({
          ":method": "POST",
          ":path": this.#path,
          "content-type": DNS_MESSAGE,
          "accept": DNS_MESSAGE,
        });
      } catch (cause) {
        reject(new UpstreamError(`Cannot reach upstream ${label}`, { code: "network", cause }));
        return;
      }
      const chunks: Uint8Array[] = [];
      let total = 0;
      let status = 0;
      let settled = false;
      const fail = (error: UpstreamError) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        request.close(http2.constants.NGHTTP2_CANCEL);
        reject(error);
      };
      const timer = setTimeout(() => fail(timedOut(label, "HTTPS")), timeoutMs);
      request.on("response", (headers) => {
        status = Number(headers[":status"]);
      });
      request.on("data", (chunk: Uint8Array) => {
        total += chunk.length;
        if (total > 65_535) {
          fail(new UpstreamError(`Upstream ${label} sent over 64 KiB`, { code: "network" }));
        } else chunks.push(chunk);
      });
      request.on(
        "error",
        (cause) =>
          fail(
            new UpstreamError(`Upstream ${label} over HTTPS failed`, { code: "network", cause }),
          ),
      );
      request.on("end", () => {
        if (settled) return;
        if (status !== 200) {
          fail(new UpstreamError(`Upstream ${label} answered HTTP ${status}`, { code: "network" }));
          return;
        }
        const bytes = concat(chunks, total);
        try {
          const reply = accept(bytes, info, this.#options);
          settled = true;
          clearTimeout(timer);
          resolve(reply);
        } catch (error) {
          fail(error as UpstreamError);
        }
      });
      request.end(withIdZero(query));
    });
  }

  close(): void {
    this.#closed = true;
    this.#session?.destroy();
    this.#session = undefined;
  }
}

/** A DNS over QUIC upstream: one QUIC connection, a stream per query. */
export class DoqExchanger implements StreamExchanger {
  #conn: Promise<Deno.QuicConn> | undefined;
  #open = false;
  #options: EncryptedUpstreamOptions;
  #closed = false;

  /**
   * Creates the client (it connects on the first query; needs `--unstable-net`).
   *
   * @param options Address, certificate checks.
   */
  constructor(options: EncryptedUpstreamOptions) {
    this.#options = options;
  }

  get connections(): number {
    return this.#open ? 1 : 0;
  }

  #connect(): Promise<Deno.QuicConn> {
    if (this.#conn !== undefined) return this.#conn;
    if (typeof (Deno as { connectQuic?: unknown }).connectQuic !== "function") {
      return Promise.reject(
        new UpstreamError(`Upstream ${this.#options.label}: QUIC needs --unstable-net`, {
          code: "network",
        }),
      );
    }
    const { hostname, port, serverName, caCerts } = this.#options;
    const connecting = Deno.connectQuic<false>({
      hostname,
      port,
      alpnProtocols: ["doq"],
      ...(serverName === undefined ? {} : { serverName }),
      ...(caCerts === undefined ? {} : { caCerts }),
    });
    this.#conn = connecting;
    connecting.then((conn) => {
      this.#open = true;
      conn.closed.catch(() => {}).finally(() => {
        this.#open = false;
        if (this.#conn === connecting) this.#conn = undefined;
      });
    }, () => {
      if (this.#conn === connecting) this.#conn = undefined;
    });
    return connecting;
  }

  async exchange(query: Uint8Array, info: MessageInfo, timeoutMs: number): Promise<AcceptedReply> {
    const label = this.#options.label;
    if (this.#closed) throw new UpstreamError(`Upstream ${label} is closed`, { code: "closed" });
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(timedOut(label, "QUIC")), timeoutMs);
    });
    const ask = async () => {
      const conn = await this.#connect();
      const stream = await conn.createBidirectionalStream();
      const message = withIdZero(query);
      const frame = DNS_FRAMING.encode(message);
      const writer = stream.writable.getWriter();
      await writer.write(frame);
      await writer.close();
      const bytes = await readAll(stream.readable, 65_537);
      if (bytes === undefined) {
        throw new UpstreamError(`Upstream ${label} sent over 64 KiB`, { code: "network" });
      }
      const reply = onlyMessage(bytes);
      if (reply === undefined) {
        this.#options.onMismatch("malformed");
        throw new UpstreamError(`Upstream ${label} sent a malformed DoQ stream`, {
          code: "network",
        });
      }
      return accept(reply, info, this.#options);
    };
    try {
      return await Promise.race([ask(), timeout]);
    } catch (error) {
      if (error instanceof UpstreamError) throw error;
      throw new UpstreamError(`Upstream ${label} over QUIC failed`, {
        code: "network",
        cause: error,
      });
    } finally {
      clearTimeout(timer);
    }
  }

  close(): void {
    this.#closed = true;
    this.#conn?.then((conn) => conn.close({ closeCode: 0, reason: "" }), () => {});
    this.#conn = undefined;
  }
}
