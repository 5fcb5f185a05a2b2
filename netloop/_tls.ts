/**
 * TLS on the loop: a layer between the loop's connections and the user's handler. Ciphertext
 * arriving in `onTraffic` goes into an OpenSSL memory BIO; plaintext comes out of `SSL_read` into
 * the {@linkcode TlsConn} the handler sees; the handler's writes go through `SSL_write` and the
 * output BIO's bytes are written to the loop's connection. The loop keeps owning the socket, so
 * this works the same on every backend.
 *
 * @module
 */
import { Action } from "./action.ts";
import type { Conn } from "./conn.ts";
import type {
  ConnHandler,
  DialOptions,
  EventHandler,
  HandlerResult,
  Loop,
} from "./event_handler.ts";
import { NetloopError } from "./errors.ts";
import { ConnImpl } from "./_conn.ts";
import type { DialTlsOptions, TlsInfo, TlsStats } from "./tls.ts";
import { cBytes, cString, type OpenSsl, openssl, SSL, takeErrors } from "./_tls_ffi.ts";
import { addressOf, offHeap } from "./_ffi.ts";

/** The server TLS settings a loop Worker is given (structured-cloned). */
export interface LoopTlsConfig {
  cert: string;
  key: string;
  /** Where `cert` and `key` came from, for error messages. */
  certName: string;
  keyName: string;
  alpn: string[];
  sessionTickets: boolean;
  /** Bytes of early data accepted (0: none). */
  earlyData: number;
  minVersion: number;
  handshakeTimeoutMs: number;
  /** Session ticket keys (80 bytes), the same in every loop so that any loop resumes. */
  ticketKeys: Uint8Array;
}

type Ptr = NonNullable<Deno.PointerValue>;

/** Largest plaintext handed to one `SSL_write` (the output BIO is drained after each). */
const WRITE_CHUNK = 64 * 1024;
const scratch = new Uint8Array(WRITE_CHUNK + 1024);
const sizeOut = new BigUint64Array(1);
const EMPTY = new Uint8Array(0);
/** Plaintext of the connection in `input` (one at a time: input never nests). */
const shared = new Uint8Array(64 * 1024);
const sizeOutBytes = new Uint8Array(sizeOut.buffer);

/**
 * Input windows. Each connection's input BIO is a read-only memory BIO over a `BUF_MEM` of ours
 * (`length`, `data`, `max`, `flags`: four 8-byte words) that points at the ciphertext where the
 * loop received it, or at `stage` for small inputs: OpenSSL reads records from there, and what it
 * leaves is `length`, read without an FFI call. A `BIO_write` into a memory BIO cost an FFI call,
 * a zeroing and a copy of every byte received.
 */
const WINDOW_SLAB = 256;
const windowWords: Uint32Array[] = [];
const windowBytes: Uint8Array[] = [];
const freeWindows: number[] = [];
let windowCount = 0;
/** Inputs up to this many bytes are copied into `stage` (finding their address costs more). */
const STAGE_MAX = 2048;
const stage = new Uint8Array(new ArrayBuffer(STAGE_MAX));
let stageAddress = -1;
/** Base addresses of the loop's receive buffers, found once each. */
const bases = new WeakMap<ArrayBufferLike, number>();

function takeWindow(): number {
  const free = freeWindows.pop();
  if (free !== undefined) return free;
  const id = windowCount++;
  if (id % WINDOW_SLAB === 0) {
    const bytes = offHeap(WINDOW_SLAB * 32);
    windowBytes.push(bytes);
    windowWords.push(new Uint32Array(bytes.buffer, 0, WINDOW_SLAB * 8));
  }
  return id;
}

/** Points window `words[at..]` at `length` bytes from `address` (below 2^53, little-endian). */
function pointWindow(words: Uint32Array, at: number, address: number, length: number): void {
  words[at] = length; // length
  words[at + 2] = address >>> 0; // data
  words[at + 3] = Math.floor(address / 4294967296);
  words[at + 4] = length; // max
}

/** Per-Worker counters (one loop per Worker); the portable backend counts into them too. */
export const stats: TlsStats = emptyTlsStats();

/** Counters at zero. */
export function emptyTlsStats(): TlsStats {
  return {
    handshakes: 0,
    resumed: 0,
    earlyData: 0,
    handshakeErrors: 0,
    handshakeTimeouts: 0,
    recordErrors: 0,
    truncated: 0,
    live: 0,
  };
}

/** This Worker's counters. */
export function tlsStats(): TlsStats {
  return { ...stats };
}

function tlsError(message: string, code: string): NetloopError {
  return new NetloopError(message, { code });
}

/** The ALPN wire format: each protocol prefixed by its length. */
export function alpnWire(protocols: readonly string[]): Uint8Array<ArrayBuffer> {
  const parts = protocols.map((p) => new TextEncoder().encode(p));
  for (const [i, p] of parts.entries()) {
    if (p.length === 0 || p.length > 255) {
      throw tlsError(`ALPN protocol ${i} ("${protocols[i]}") must be 1 to 255 bytes`, "bad_option");
    }
  }
  // An ArrayBuffer of its own (never on V8's heap): OpenSSL keeps a pointer into it.
  const out = new Uint8Array(
    new ArrayBuffer(Math.max(256, parts.reduce((n, p) => n + 1 + p.length, 0))),
  );
  let at = 0;
  for (const p of parts) {
    out[at++] = p.length;
    out.set(p, at);
    at += p.length;
  }
  return out.subarray(0, at);
}

function readPem<T>(
  lib: OpenSsl,
  pem: string,
  read: (bio: Ptr) => Deno.PointerValue,
): T[] {
  const bytes = new TextEncoder().encode(pem);
  const bio = lib.BIO_new_mem_buf(bytes, bytes.length);
  if (bio === null) throw tlsError(`BIO_new_mem_buf failed: ${takeErrors(lib)}`, "tls");
  const out: T[] = [];
  try {
    for (;;) {
      const item = read(bio);
      if (item === null) break;
      out.push(item as T);
    }
  } finally {
    lib.BIO_free(bio);
    lib.ERR_clear_error(); // the end of the PEM text leaves a "no start line" behind
  }
  return out;
}

/**
 * Builds a server `SSL_CTX` from a configuration: the pair, versions, tickets, early data, ALPN.
 *
 * @throws {NetloopError} `bad_tls`: the certificate or key cannot be read, or they do not match.
 */
function serverContext(config: LoopTlsConfig, alpnCallback: Ptr | null): Ptr {
  const lib = openssl();
  lib.ERR_clear_error();
  const ctx = lib.SSL_CTX_new(lib.TLS_server_method());
  if (ctx === null) throw tlsError(`SSL_CTX_new failed: ${takeErrors(lib)}`, "tls");
  try {
    const certs = readPem<Ptr>(lib, config.cert, (b) => lib.PEM_read_bio_X509(b, null, null, null));
    if (certs.length === 0) {
      throw tlsError(`TLS certificate ${config.certName}: no PEM certificate found`, "bad_tls");
    }
    const [leaf, ...chain] = certs;
    const usedLeaf = lib.SSL_CTX_use_certificate(ctx, leaf!);
    lib.X509_free(leaf!);
    if (usedLeaf !== 1) {
      for (const c of chain) lib.X509_free(c);
      throw tlsError(`TLS certificate ${config.certName}: ${takeErrors(lib)}`, "bad_tls");
    }
    for (const c of chain) {
      // SSL_CTX_add0_chain_cert: takes ownership on success.
      if (lib.SSL_CTX_ctrl(ctx, SSL.CTRL_CHAIN_CERT, 0n, c) !== 1n) lib.X509_free(c);
    }
    const keys = readPem<Ptr>(
      lib,
      config.key,
      (b) => lib.PEM_read_bio_PrivateKey(b, null, null, null),
    );
    if (keys.length === 0) {
      throw tlsError(`TLS key ${config.keyName}: no PEM private key found`, "bad_tls");
    }
    const usedKey = lib.SSL_CTX_use_PrivateKey(ctx, keys[0]!);
    for (const k of keys) lib.EVP_PKEY_free(k);
    if (usedKey !== 1 || lib.SSL_CTX_check_private_key(ctx) !== 1) {
      throw tlsError(
        `TLS key ${config.keyName} does not match certificate ${config.certName}: ` +
          (takeErrors(lib) || "SSL_CTX_check_private_key failed"),
        "bad_tls",
      );
    }
    lib.SSL_CTX_ctrl(ctx, SSL.CTRL_SET_MIN_PROTO_VERSION, BigInt(config.minVersion), null);
    lib.SSL_CTX_ctrl(ctx, SSL.CTRL_MODE, BigInt(SSL.MODE_RELEASE_BUFFERS), null);
    if (config.sessionTickets) {
      const keys = new Uint8Array(config.ticketKeys);
      lib.SSL_CTX_ctrl_buffer(ctx, SSL.CTRL_SET_TLSEXT_TICKET_KEYS, BigInt(keys.length), keys);
    } else {
      lib.SSL_CTX_set_options(ctx, SSL.OP_NO_TICKET);
      lib.SSL_CTX_set_num_tickets(ctx, 0n);
    }
    if (config.earlyData > 0) lib.SSL_CTX_set_max_early_data(ctx, config.earlyData);
    if (alpnCallback !== null) lib.SSL_CTX_set_alpn_select_cb(ctx, alpnCallback, null);
    return ctx;
  } catch (error) {
    lib.SSL_CTX_free(ctx);
    throw error;
  }
}

/**
 * Checks a server configuration by building (and freeing) its context: run on the main thread
 * before any loop starts or reloads.
 */
export function checkServerConfig(config: LoopTlsConfig): void {
  openssl().SSL_CTX_free(serverContext(config, null));
}

/** The server side of this Worker's loop. */
interface Server {
  config: LoopTlsConfig;
  ctx: Ptr;
  alpn: Uint8Array<ArrayBuffer> | undefined;
  callback: Deno.UnsafeCallback<typeof ALPN_CALLBACK> | undefined;
}

/** `SSL_CTX_alpn_select_cb_func`. */
const ALPN_CALLBACK = {
  parameters: ["pointer", "pointer", "pointer", "pointer", "u32", "pointer"],
  result: "i32",
} as const;
let server: Server | undefined;

/** `BIO_s_mem()`: a static method table, asked for once. */
let memMethod: Deno.PointerValue | undefined;

/** Connections whose handshake is running, for the timeout. */
const handshaking = new Set<TlsConn>();

/** A TLS connection as the handler sees it: plaintext in, plaintext out. */
export class TlsConn implements Conn {
  readonly network = "tcp" as const;
  context: unknown = undefined;
  inner!: Conn;
  ssl: Ptr | null;
  rbio: Ptr;
  wbio: Ptr;
  established = false;
  /** The user's onOpen ran (it may run before the handshake ends, for early data). */
  announced = false;
  readingEarly: boolean;
  /**
   * Plaintext not yet consumed: `buf[start, end)`; the first `early` of it came as 0-RTT. While
   * `input` runs this is the Worker's shared buffer unless bytes were left from before; what the
   * handler leaves is copied out, so an idle connection holds no plaintext buffer.
   */
  buf: Uint8Array = EMPTY;
  start = 0;
  end = 0;
  early = 0;
  /** A write emptied the output BIO since `advance` last looked. */
  drained = false;
  /** Writes made before the handshake finished. */
  pending: Uint8Array[] = [];
  /** We sent close_notify or the peer did: a clean end. */
  shutdown = false;
  peerClosed = false;
  deadline: number;
  error: Error | undefined = undefined;
  #info: TlsInfo | undefined;
  /** This connection's input window: `words[at]` is the ciphertext OpenSSL has not read. */
  private readonly window: number;
  private readonly words: Uint32Array;
  private readonly at: number;
  /** Ciphertext OpenSSL left when `input` returned, kept here (rare: see `keepInput`). */
  private held: Uint8Array | undefined = undefined;

  constructor(
    readonly loop: Loop,
    ctx: Ptr,
    readonly handler: ConnHandler,
    readonly client: boolean,
    earlyData: boolean,
    timeoutMs: number,
  ) {
    const lib = openssl();
    this.ssl = lib.SSL_new(ctx);
    const method = memMethod ??= lib.BIO_s_mem();
    const rbio = lib.BIO_new(method);
    const wbio = lib.BIO_new(method);
    if (this.ssl === null || rbio === null || wbio === null) {
      if (rbio !== null) lib.BIO_free(rbio);
      if (wbio !== null) lib.BIO_free(wbio);
      if (this.ssl !== null) lib.SSL_free(this.ssl);
      throw tlsError(`SSL_new failed: ${takeErrors(lib)}`, "tls");
    }
    this.rbio = rbio;
    this.wbio = wbio;
    this.window = takeWindow();
    this.words = windowWords[Math.floor(this.window / WINDOW_SLAB)]!;
    this.at = (this.window % WINDOW_SLAB) * 8;
    pointWindow(this.words, this.at, 0, 0);
    const slot = (this.window % WINDOW_SLAB) * 32;
    const struct = windowBytes[Math.floor(this.window / WINDOW_SLAB)]!.subarray(slot, slot + 32);
    lib.BIO_ctrl_buffer(rbio, SSL.BIO_C_SET_BUF_MEM, BigInt(SSL.BIO_NOCLOSE), struct);
    lib.BIO_set_flags(rbio, SSL.BIO_FLAGS_MEM_RDONLY);
    lib.SSL_set_bio(this.ssl, rbio, wbio); // the SSL owns both BIOs now
    if (client) lib.SSL_set_connect_state(this.ssl);
    else lib.SSL_set_accept_state(this.ssl);
    this.readingEarly = earlyData;
    this.deadline = loop.now + timeoutMs;
    stats.live++;
  }

  get tls(): TlsInfo {
    if (this.#info !== undefined) return this.#info;
    const info = this.readInfo();
    if (this.established) this.#info = info;
    return info;
  }

  private readInfo(): TlsInfo {
    const lib = openssl();
    const ssl = this.ssl;
    if (ssl === null) {
      return {
        protocol: "",
        alpn: undefined,
        cipher: "",
        resumed: false,
        earlyDataAccepted: false,
        earlyBytes: 0,
      };
    }
    const pointer = new BigUint64Array(1);
    const length = new Uint32Array(1);
    lib.SSL_get0_alpn_selected(ssl, new Uint8Array(pointer.buffer), new Uint8Array(length.buffer));
    let alpn: string | undefined;
    if (length[0]! > 0 && pointer[0] !== 0n) {
      const view = new Deno.UnsafePointerView(Deno.UnsafePointer.create(pointer[0]!)!);
      alpn = new TextDecoder().decode(new Uint8Array(view.getArrayBuffer(length[0]!)));
    }
    const cipher = lib.SSL_get_current_cipher(ssl);
    const info = {
      protocol: cString(lib.SSL_get_version(ssl)),
      alpn,
      cipher: cipher === null ? "" : cString(lib.SSL_CIPHER_get_name(cipher)),
      resumed: lib.SSL_session_reused(ssl) === 1,
      earlyDataAccepted: lib.SSL_get_early_data_status(ssl) === SSL.EARLY_DATA_ACCEPTED,
      earlyBytes: 0,
    };
    Object.defineProperty(info, "earlyBytes", { get: () => this.early, enumerable: true });
    return info;
  }

  get localAddress() {
    return this.inner.localAddress;
  }
  get remoteAddress() {
    return this.inner.remoteAddress;
  }
  get inboundBuffered(): number {
    return this.end - this.start;
  }
  get outboundBuffered(): number {
    return this.inner.outboundBuffered;
  }
  get closed(): boolean {
    return this.ssl === null || this.inner.closed;
  }

  peek(n?: number): Uint8Array {
    const k = n === undefined ? this.end - this.start : Math.min(n, this.end - this.start);
    return this.buf.subarray(this.start, this.start + k);
  }

  next(n?: number): Uint8Array {
    const view = this.peek(n);
    this.consumed(view.length);
    return view;
  }

  discard(n?: number): number {
    const k = n === undefined ? this.end - this.start : Math.min(n, this.end - this.start);
    this.consumed(k);
    return k;
  }

  private consumed(k: number): void {
    this.start += k;
    this.early = Math.max(0, this.early - k);
  }

  write(bytes: Uint8Array): number {
    if (this.closed || this.shutdown) return 0;
    if (!this.established) {
      this.pending.push(bytes.slice());
      return bytes.length;
    }
    const lib = openssl();
    for (let at = 0; at < bytes.length; at += WRITE_CHUNK) {
      const chunk = at === 0 && bytes.length <= WRITE_CHUNK
        ? bytes
        : bytes.subarray(at, Math.min(bytes.length, at + WRITE_CHUNK));
      // (No ERR_clear_error first: every failure path empties the queue with takeErrors.)
      const n = lib.SSL_write(this.ssl!, chunk, chunk.length);
      if (n <= 0) {
        this.fail(tlsError(`SSL_write failed: ${takeErrors(lib)}`, "tls_record"), false);
        return at;
      }
      this.flushOut();
      this.drained = true;
    }
    return bytes.length;
  }

  writev(chunks: readonly Uint8Array[]): number {
    let n = 0;
    for (const c of chunks) n += this.write(c);
    return n;
  }

  flush(): void {
    this.inner.flush();
  }

  close(): void {
    if (this.ssl === null || this.inner.closed) return;
    if (this.established && !this.shutdown) {
      this.shutdown = true;
      openssl().SSL_shutdown(this.ssl);
      this.flushOut();
    }
    this.inner.close();
  }

  /** Moves what OpenSSL wrote into the output BIO onto the loop's connection. */
  flushOut(): void {
    const lib = openssl();
    const inner = this.inner;
    if (inner instanceof ConnImpl && !inner.datagram) {
      // Straight into the connection's outbound buffer: no copy through a buffer of our own.
      const n = lib.BIO_ctrl_pending(this.wbio);
      if (n === 0 || inner.closed) return;
      const out = inner.reserveOutbound(n);
      const at = inner.outLen;
      const got = lib.BIO_read(this.wbio, at === 0 ? out : out.subarray(at, at + n), n);
      inner.commitOutbound(got);
      return;
    }
    for (;;) {
      const n = lib.BIO_read(this.wbio, scratch, scratch.length);
      if (n <= 0) return;
      this.inner.write(scratch.subarray(0, n));
      // A memory BIO hands over all it holds up to the length asked: a short read emptied it.
      if (n < scratch.length) return;
    }
  }

  /** Room for `n` more plaintext bytes at `end`. */
  private reserve(n: number): void {
    if (this.buf.length - this.end >= n) return;
    const live = this.end - this.start;
    if (this.start > 0 && this.buf.length - live >= n && live < this.buf.length / 2) {
      this.buf.copyWithin(0, this.start, this.end);
    } else {
      const grown = new Uint8Array(Math.max(live + n, this.buf.length * 2, 16 * 1024));
      grown.set(this.buf.subarray(this.start, this.end));
      this.buf = grown;
    }
    this.start = 0;
    this.end = live;
  }

  /** Closes this connection for a TLS failure, counted. */
  fail(error: Error, handshake: boolean): void {
    if (handshake) stats.handshakeErrors++;
    else stats.recordErrors++;
    this.error = error;
    this.flushOut(); // the alert, if OpenSSL wrote one
    this.inner.close();
  }

  /**
   * Feeds ciphertext, advances the handshake, reads plaintext and runs the user's callbacks.
   *
   * @returns The action a user callback asked for.
   */
  input(bytes: Uint8Array): HandlerResult {
    if (this.ssl === null) return; // ended: its window may be another connection's now
    if (this.start === this.end) {
      this.buf = shared;
      this.start = this.end = 0;
    }
    const source = this.feed(bytes);
    try {
      return this.advance();
    } finally {
      this.keepLeftover();
      if (this.ssl !== null && this.unread !== 0) this.keepInput(source);
    }
  }

  /** Ciphertext OpenSSL has not read yet. */
  private get unread(): number {
    return this.words[this.at]!;
  }

  /** Points the input window at `bytes` (after what OpenSSL left); returns what it points at. */
  private feed(bytes: Uint8Array): Uint8Array {
    const left = this.unread;
    if (left > 0) {
      // OpenSSL left some of the last input (held): the window covers it and `bytes` together.
      const joined = offHeap(left + bytes.length);
      joined.set(this.held!.subarray(this.held!.length - left));
      joined.set(bytes, left);
      pointWindow(this.words, this.at, addressOf(joined), joined.length);
      this.held = joined;
      return joined;
    }
    this.held = undefined;
    if (bytes.length <= STAGE_MAX) {
      if (stageAddress < 0) stageAddress = addressOf(stage);
      stage.set(bytes);
      pointWindow(this.words, this.at, stageAddress, bytes.length);
      return stage.subarray(0, bytes.length);
    }
    const buffer = bytes.buffer;
    let base = bases.get(buffer);
    if (base === undefined) {
      base = addressOf(buffer as ArrayBuffer);
      bases.set(buffer, base);
    }
    pointWindow(this.words, this.at, base + bytes.byteOffset, bytes.length);
    return bytes;
  }

  /** After `input`: what OpenSSL left unread is copied out of memory the loop reuses. */
  private keepInput(source: Uint8Array): void {
    if (this.held === source) return;
    const kept = offHeap(this.unread);
    kept.set(source.subarray(source.length - kept.length));
    pointWindow(this.words, this.at, addressOf(kept), kept.length);
    this.held = kept;
  }

  /** After `input`: copy what the handler left out of the shared buffer; drop an empty big one. */
  private keepLeftover(): void {
    if (this.start === this.end) {
      if (this.buf === shared || this.buf.length > 64 * 1024) this.buf = EMPTY;
      this.start = this.end = 0;
    } else if (this.buf === shared) {
      this.buf = shared.slice(this.start, this.end);
      this.end -= this.start;
      this.start = 0;
    }
  }

  private advance(): HandlerResult {
    const lib = openssl();
    if (this.ssl === null) return;
    let result: HandlerResult = undefined;
    // SSL_get_error needs an empty queue. Failures take their errors, so it nearly always is;
    // a peek costs ~0.1 µs, ERR_clear_error ~0.5 µs (of a 64 B echo's ~20 µs of server CPU).
    if (lib.ERR_peek_error() !== 0n) lib.ERR_clear_error();
    if (this.readingEarly) {
      const early = this.readEarly();
      if (early === "failed") return;
      if (this.end > this.start) {
        result = this.deliver();
        if (result === Action.Shutdown || this.closed) return result;
      }
      if (early === "more") return result;
    }
    if (!this.established) {
      const r = lib.SSL_do_handshake(this.ssl);
      if (r !== 1) {
        const e = lib.SSL_get_error(this.ssl, r);
        if (e === SSL.ERROR_WANT_READ || e === SSL.ERROR_WANT_WRITE) {
          this.flushOut();
          return result;
        }
        this.fail(this.handshakeError(lib), true);
        return result;
      }
      const opened = this.completed();
      if (opened === Action.Shutdown || this.closed) return opened;
      result ??= opened;
    }
    const read = this.readPlain();
    this.drained = false;
    if (read && this.end > this.start) {
      const r = this.deliver();
      result = r === Action.Shutdown ? r : result ?? r;
    }
    // What SSL_read wrote (a KeyUpdate's answer, say) left with the handler's first write, if any.
    if (!this.drained) this.flushOut();
    if (this.peerClosed && !this.closed) {
      this.shutdown = true;
      lib.SSL_shutdown(this.ssl);
      this.flushOut();
      this.inner.close();
    }
    return result;
  }

  private handshakeError(lib: OpenSsl): NetloopError {
    const reasons = takeErrors(lib) || "the peer closed or sent something that is not TLS";
    let message = `TLS handshake with ${addressText(this.inner)} failed: ${reasons}`;
    if (this.client && this.ssl !== null) {
      const verify = Number(lib.SSL_get_verify_result(this.ssl));
      if (verify !== 0) {
        message += ` (certificate: ${cString(lib.X509_verify_cert_error_string(BigInt(verify)))})`;
      }
    }
    return tlsError(message, "tls_handshake");
  }

  /** Reads 0-RTT early data (server). Returns "more" while the client may still send some. */
  private readEarly(): "more" | "done" | "failed" {
    const lib = openssl();
    for (;;) {
      this.reserve(16 * 1024 + 256);
      const space = this.buf.subarray(this.end);
      const r = lib.SSL_read_early_data(this.ssl!, space, BigInt(space.length), sizeOutBytes);
      if (r === SSL.READ_EARLY_DATA_SUCCESS) {
        const n = Number(sizeOut[0]);
        this.end += n;
        this.early = this.end - this.start;
        if (!this.announced && n > 0) stats.earlyData++;
        continue;
      }
      if (r === SSL.READ_EARLY_DATA_FINISH) {
        this.readingEarly = false;
        this.flushOut();
        return "done";
      }
      const e = lib.SSL_get_error(this.ssl!, r);
      this.flushOut();
      if (e === SSL.ERROR_WANT_READ || e === SSL.ERROR_WANT_WRITE) return "more";
      this.fail(this.handshakeError(lib), true);
      return "failed";
    }
  }

  /** The handshake finished: count it, open the connection to the user, send what waited. */
  private completed(): HandlerResult {
    const lib = openssl();
    this.established = true;
    handshaking.delete(this);
    stats.handshakes++;
    if (lib.SSL_session_reused(this.ssl!) === 1) stats.resumed++;
    this.flushOut(); // the server's session tickets
    let result: HandlerResult = undefined;
    if (!this.announced) {
      this.announced = true;
      result = this.handler.onOpen?.(this);
    }
    const pending = this.pending;
    this.pending = [];
    for (const p of pending) this.write(p);
    return result;
  }

  /** Runs `SSL_read` until it wants more input. Returns whether any plaintext arrived. */
  private readPlain(): boolean {
    const lib = openssl();
    let any = false;
    for (;;) {
      this.reserve(16 * 1024 + 256);
      const space = this.end === 0 ? this.buf : this.buf.subarray(this.end);
      const n = lib.SSL_read(this.ssl!, space, space.length);
      if (n > 0) {
        this.end += n;
        any = true;
        // One SSL_read takes one whole record (the space holds the largest), reading no further
        // than its end: with no ciphertext left in the input BIO the next one would only want
        // more (that SSL_read and SSL_get_error are two FFI calls).
        if (this.unread === 0) return true;
        continue;
      }
      const e = lib.SSL_get_error(this.ssl!, n);
      if (e === SSL.ERROR_WANT_READ || e === SSL.ERROR_WANT_WRITE) return any;
      if (e === SSL.ERROR_ZERO_RETURN) {
        this.peerClosed = true;
        return any;
      }
      this.fail(
        tlsError(
          `TLS record from ${addressText(this.inner)} refused: ${takeErrors(lib) || "error " + e}`,
          "tls_record",
        ),
        false,
      );
      return any;
    }
  }

  /** Hands the plaintext to the user's onTraffic (after its onOpen, once). */
  private deliver(): HandlerResult {
    let result: HandlerResult = undefined;
    if (!this.announced) {
      this.announced = true;
      result = this.handler.onOpen?.(this);
      if (result === Action.Shutdown) return result;
      if (result === Action.Close) this.close();
      if (this.closed) return undefined;
    }
    const r = this.handler.onTraffic === undefined
      ? (this.discard(), undefined)
      : this.handler.onTraffic(this);
    if (this.start === this.end) {
      this.start = this.end = 0;
      this.early = 0;
    }
    if (r === Action.Close) {
      this.close();
      return result;
    }
    return r === Action.Shutdown ? r : result;
  }

  /** The loop's connection is gone: free OpenSSL's state and tell the user. */
  ended(error: Error | undefined): HandlerResult {
    const lib = openssl();
    handshaking.delete(this);
    if (this.ssl === null) return;
    const partial = lib.SSL_has_pending(this.ssl) === 1 || this.unread > 0;
    if (this.error === undefined && !this.shutdown && !this.peerClosed && partial) {
      stats.truncated++;
      this.error = error ?? tlsError(
        `Connection from ${addressText(this.inner)} ended in the middle of a TLS record`,
        "tls_truncated",
      );
    }
    if (this.client) rememberSession(this);
    lib.SSL_free(this.ssl);
    this.ssl = null;
    pointWindow(this.words, this.at, 0, 0);
    freeWindows.push(this.window);
    this.held = undefined;
    stats.live--;
    const reason = this.error ?? error;
    if (!this.announced && reason === undefined) return;
    if (!this.announced && !this.client) return; // never opened to the user: nothing to tell
    return reason === undefined
      ? this.handler.onClose?.(this)
      : this.handler.onClose?.(this, reason);
  }
}

function addressText(conn: Conn): string {
  try {
    const a = conn.remoteAddress;
    return a.family === 6 ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
  } catch {
    return "the peer";
  }
}

function tlsOf(conn: Conn): TlsConn | undefined {
  const t = conn.context;
  return t instanceof TlsConn ? t : undefined;
}

/** The inner handler of every TLS connection (server and client): routes to its TlsConn. */
const inner: ConnHandler = {
  onTraffic(conn: Conn): HandlerResult {
    const t = tlsOf(conn);
    if (t === undefined) return conn.discard(), undefined;
    return t.input(conn.next());
  },
  onClose(conn: Conn, error?: Error): HandlerResult {
    const t = tlsOf(conn);
    return t?.ended(error);
  },
};

/** Client side of `inner`: the TCP connection is up, start the handshake. */
const dialInner: ConnHandler = {
  onOpen(conn: Conn): HandlerResult {
    const t = tlsOf(conn);
    return t?.input(new Uint8Array(0));
  },
  onTraffic: inner.onTraffic!,
  onClose: inner.onClose!,
};

/** A timer for the portable backend, whose loop does not call {@linkcode expireHandshakes}. */
let portableTimer: ReturnType<typeof setTimeout> | undefined;

/** Starts timing a handshake. */
function watch(t: TlsConn, loop: Loop, ms: number): void {
  handshaking.add(t);
  if (loop.backend !== "portable" || portableTimer !== undefined) return;
  const fire = () => {
    portableTimer = undefined;
    const next = expire(performance.now());
    if (next !== Infinity) arm(next);
  };
  const arm = (after: number) => {
    portableTimer = setTimeout(fire, after);
    Deno.unrefTimer(portableTimer as unknown as number);
  };
  arm(ms);
}

/**
 * Closes handshakes past their deadline (each loop turn, from `LoopCore.timers`).
 *
 * @param now The turn's clock.
 * @returns Milliseconds until the next deadline (Infinity when no handshake runs).
 */
export function expireHandshakes(now: number): number {
  return handshaking.size === 0 ? Infinity : expire(now);
}

/** Closes handshakes past their deadline; returns ms until the next deadline. */
function expire(now: number): number {
  let next = Infinity;
  for (const t of handshaking) {
    if (t.deadline <= now) {
      handshaking.delete(t);
      stats.handshakeTimeouts++;
      t.error = tlsError(
        `TLS handshake with ${addressText(t.inner)} did not finish in time`,
        "tls_handshake_timeout",
      );
      t.inner.close();
    } else next = Math.min(next, t.deadline - now);
  }
  return next;
}

/**
 * Wraps a handler so that its accepted connections speak TLS.
 *
 * @param user The handler module's handler.
 * @param config The Worker's TLS configuration.
 * @returns The handler the loop runs.
 */
export function tlsServerHandler(user: EventHandler, config: LoopTlsConfig): EventHandler {
  const lib = openssl();
  let alpn: Uint8Array<ArrayBuffer> | undefined;
  let callback: Deno.UnsafeCallback<typeof ALPN_CALLBACK> | undefined;
  if (config.alpn.length > 0) {
    const wire = alpnWire(config.alpn);
    alpn = wire;
    // Runs synchronously inside SSL_do_handshake/SSL_read_early_data, on this Worker's thread.
    callback = new Deno.UnsafeCallback(
      ALPN_CALLBACK,
      (_ssl, out, outlen, input, inlen) => {
        const r = lib.SSL_select_next_proto(out, outlen, wire, wire.length, input, inlen);
        return r === SSL.OPENSSL_NPN_NEGOTIATED ? SSL.TLSEXT_ERR_OK : SSL.TLSEXT_ERR_ALERT_FATAL;
      },
    );
  }
  server = {
    config,
    ctx: serverContext(config, callback?.pointer ?? null),
    alpn,
    callback,
  };
  const s = server;
  const wrapped: EventHandler = {
    onOpen(conn: Conn): HandlerResult {
      const t = new TlsConn(
        conn.loop,
        s.ctx,
        user,
        false,
        config.earlyData > 0,
        config.handshakeTimeoutMs,
      );
      t.inner = conn;
      conn.context = t;
      watch(t, conn.loop, config.handshakeTimeoutMs);
      return undefined;
    },
    onTraffic: inner.onTraffic!,
    onClose: inner.onClose!,
    onShutdown(l: Loop): void {
      try {
        user.onShutdown?.(l);
      } finally {
        freeAll();
      }
    },
  };
  if (user.onBoot) wrapped.onBoot = user.onBoot.bind(user);
  if (user.onMessage) wrapped.onMessage = user.onMessage.bind(user);
  if (user.onTick) wrapped.onTick = user.onTick.bind(user);
  return wrapped;
}

/**
 * Swaps in a new certificate and key: new handshakes use them, running connections keep theirs.
 *
 * @throws {NetloopError} `bad_tls` (the old pair stays).
 */
export function reloadServer(cert: string, key: string, certName: string, keyName: string): void {
  if (server === undefined) throw tlsError("This engine does not serve TLS", "bad_option");
  const config = { ...server.config, cert, key, certName, keyName };
  const ctx = serverContext(config, server.callback?.pointer ?? null);
  openssl().SSL_CTX_free(server.ctx); // connections hold their own reference
  server.ctx = ctx;
  server.config = config;
}

/** Client contexts by trusted CA text ("" for the system's store). */
const clientContexts = new Map<string, Ptr>();
/** Resumable client sessions by server name and address. */
const sessions = new Map<string, Ptr>();
const MAX_SESSIONS = 256;

function clientContext(ca: string | undefined): Ptr {
  let ctx = clientContexts.get(ca ?? "");
  if (ctx !== undefined) return ctx;
  const lib = openssl();
  lib.ERR_clear_error();
  const made = lib.SSL_CTX_new(lib.TLS_client_method());
  if (made === null) throw tlsError(`SSL_CTX_new failed: ${takeErrors(lib)}`, "tls");
  ctx = made;
  lib.SSL_CTX_set_verify(ctx, SSL.VERIFY_PEER, null);
  lib.SSL_CTX_ctrl(ctx, SSL.CTRL_SET_MIN_PROTO_VERSION, BigInt(SSL.TLS1_2_VERSION), null);
  if (ca === undefined) lib.SSL_CTX_set_default_verify_paths(ctx);
  else {
    const store = lib.SSL_CTX_get_cert_store(ctx);
    const certs = readPem<Ptr>(lib, ca, (b) => lib.PEM_read_bio_X509(b, null, null, null));
    if (certs.length === 0) {
      lib.SSL_CTX_free(ctx);
      throw tlsError("Option tls.ca holds no PEM certificate", "bad_option");
    }
    for (const c of certs) {
      lib.X509_STORE_add_cert(store, c);
      lib.X509_free(c);
    }
    lib.ERR_clear_error();
  }
  clientContexts.set(ca ?? "", ctx);
  return ctx;
}

const sessionKeys = new WeakMap<TlsConn, string>();

function rememberSession(t: TlsConn): void {
  const key = sessionKeys.get(t);
  if (key === undefined || t.ssl === null || !t.established) return;
  const lib = openssl();
  const session = lib.SSL_get1_session(t.ssl);
  if (session === null) return;
  if (lib.SSL_SESSION_is_resumable(session) !== 1) {
    lib.SSL_SESSION_free(session);
    return;
  }
  const old = sessions.get(key);
  if (old !== undefined) lib.SSL_SESSION_free(old);
  sessions.delete(key);
  if (sessions.size >= MAX_SESSIONS) {
    const [first, ptr] = sessions.entries().next().value!;
    lib.SSL_SESSION_free(ptr);
    sessions.delete(first);
  }
  sessions.set(key, session);
}

const IP = /^(\d{1,3}(\.\d{1,3}){3}|[0-9a-f:]*:[0-9a-f:.]*)$/i;

/**
 * Dials a TLS client connection on a loop.
 *
 * @param loop The loop.
 * @param options The dial options (TCP only).
 * @param handler The user's callbacks for this connection (merged with the loop's).
 * @param dialPlain Dials the TCP connection.
 */
export function dialTls(
  loop: Loop,
  options: DialOptions & { tls: DialTlsOptions },
  handler: ConnHandler,
  dialPlain: (options: DialOptions) => Conn,
): Conn {
  if (options.network !== "tcp") {
    throw tlsError(`TLS needs network "tcp", got "${options.network}"`, "bad_option");
  }
  const address = typeof options.address === "string" ? options.address : (
    options.address.family === 6
      ? `[${options.address.address}]:${options.address.port}`
      : `${options.address.address}:${options.address.port}`
  );
  const host = address.startsWith("[")
    ? address.slice(1, address.indexOf("]"))
    : address.slice(0, address.lastIndexOf(":"));
  const name = options.tls.serverName ?? host;
  const lib = openssl();
  const timeout = options.tls.handshakeTimeout ?? 10_000;
  const t = new TlsConn(loop, clientContext(options.tls.ca), handler, true, false, timeout);
  const ssl = t.ssl!;
  if (IP.test(name)) {
    lib.X509_VERIFY_PARAM_set1_ip_asc(lib.SSL_get0_param(ssl), cBytes(name));
  } else {
    lib.SSL_ctrl_buffer(
      ssl,
      SSL.CTRL_SET_TLSEXT_HOSTNAME,
      BigInt(SSL.TLSEXT_NAMETYPE_HOST_NAME),
      cBytes(name),
    );
    lib.SSL_set1_host(ssl, cBytes(name));
  }
  if (options.tls.alpn !== undefined && options.tls.alpn.length > 0) {
    const wire = alpnWire(options.tls.alpn);
    lib.SSL_set_alpn_protos(ssl, wire, wire.length);
  }
  const key = `${name}|${address}|${options.tls.ca ?? ""}`;
  sessionKeys.set(t, key);
  const session = sessions.get(key);
  if (session !== undefined) lib.SSL_set_session(ssl, session);
  if (options.context !== undefined) t.context = options.context;
  const plain: DialOptions = {
    network: "tcp",
    address: options.address,
    handler: dialInner,
    context: t,
  };
  t.inner = dialPlain(plain);
  watch(t, loop, timeout);
  return t;
}

/** Frees the server and client contexts and the remembered sessions (the loop is stopping). */
function freeAll(): void {
  clearTimeout(portableTimer);
  portableTimer = undefined;
  if (server === undefined && clientContexts.size === 0 && sessions.size === 0) return;
  const lib = openssl();
  if (server !== undefined) {
    lib.SSL_CTX_free(server.ctx);
    server.callback?.close();
    server = undefined;
  }
  for (const ctx of clientContexts.values()) lib.SSL_CTX_free(ctx);
  clientContexts.clear();
  for (const s of sessions.values()) lib.SSL_SESSION_free(s);
  sessions.clear();
}
