/**
 * DNS over HTTPS (RFC 8484) on a byte stream: the HTTP/2 (RFC 9113) and HTTP/1.1 server side
 * the netloop DoH engine runs over its TLS connections. Only what DoH needs: one request and one
 * response per stream, HPACK decoding (`_hpack.ts`), responses encoded without the dynamic table,
 * flow control, PING, SETTINGS, GOAWAY. Transport-agnostic: bytes in through `traffic`, bytes out
 * through a {@linkcode DohOutput} (a netloop `Conn` is one).
 *
 * @module
 */
import { parseMessage } from "../wire/message.ts";
import { concat } from "../_bytes.ts";
import type { ProxyAnswer } from "../proxy.ts";
import { HpackDecoder, HpackError } from "./_hpack.ts";

/** Where a connection writes (netloop's `Conn` fits). */
export interface DohOutput {
  /** Queues bytes (copied). */
  write(bytes: Uint8Array): unknown;
  /** Closes after sending what is queued. */
  close(): void;
  /** Whether it is closed. */
  readonly closed: boolean;
}

/**
 * Answers a DNS query: the answer now (a view that may be reused after the call: written at
 * once), `null` for none, or `undefined` when `respond` will be called later with `context`.
 */
export type DohAsk = (
  message: Uint8Array,
  respond: (answer: ProxyAnswer, context: DohRequest) => void,
  context: DohRequest,
) => ProxyAnswer | undefined;

const MAX_MESSAGE = 65_535;
const MAX_GET_PARAMETER = Math.ceil(MAX_MESSAGE * 4 / 3);
const encoder = new TextEncoder();
const latin1 = new TextDecoder("latin1");
const PREFACE = encoder.encode("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
const DNS_MESSAGE = encoder.encode("application/dns-message");

const enum Method {
  None,
  Get,
  Post,
  Head,
  Other,
}

/** One request: what its headers and body said, filled as they are decoded. */
export class DohRequest {
  method = Method.None;
  /** 0 while fine, else the status the path gives (404 another path, 400/413 a bad `dns`). */
  pathStatus = -1;
  /** The `dns` parameter, decoded (GET). */
  message: Uint8Array | undefined;
  /** Whether Content-Type is application/dns-message (`undefined`: absent). */
  typeOk: boolean | undefined;
  /** Declared Content-Length, -1 when absent. */
  contentLength = -1;
  /** The body (POST): chunks until it ends. */
  body: Uint8Array[] = [];
  bodyLength = 0;
  /** HTTP/2: the stream's send window. HTTP/1.1: the response slot. */
  window = 0;
  /** Answered, reset, or its connection gone: a late answer is dropped. */
  done = false;

  constructor(readonly conn: DohConnectionBase, readonly id: number) {}
}

/**
 * Parses a request target (`/dns-query?dns=...`) against the configured path: sets `pathStatus`
 * and, for a good `dns` parameter, `message`.
 */
function parseTarget(request: DohRequest, target: Uint8Array, path: Uint8Array): void {
  let query = target.indexOf(0x3f); // ?
  if (query < 0) query = target.length;
  if (query !== path.length) {
    request.pathStatus = 404;
    return;
  }
  for (let i = 0; i < query; i++) {
    if (target[i] !== path[i]) {
      request.pathStatus = 404;
      return;
    }
  }
  request.pathStatus = 0;
  // Find dns= among the parameters.
  let at = query + 1;
  while (at < target.length) {
    let end = target.indexOf(0x26, at); // &
    if (end < 0) end = target.length;
    if (
      end - at >= 4 && target[at] === 0x64 && target[at + 1] === 0x6e &&
      target[at + 2] === 0x73 && target[at + 3] === 0x3d
    ) {
      if (end - at - 4 > MAX_GET_PARAMETER) {
        request.pathStatus = 413;
        return;
      }
      request.message = decodeBase64UrlBytes(target.subarray(at + 4, end));
      if (request.message === undefined) request.pathStatus = 400;
      return;
    }
    at = end + 1;
  }
}

/** base64url digit values; 255 for anything else. */
const DIGITS = new Uint8Array(256).fill(255);
for (
  const [i, c] of [..."ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"].entries()
) {
  DIGITS[c.charCodeAt(0)] = i;
}

/** Decodes base64url without padding from bytes, or `undefined` (padding or another byte). */
export function decodeBase64UrlBytes(text: Uint8Array): Uint8Array | undefined {
  const n = text.length;
  if (n % 4 === 1) return undefined;
  const out = new Uint8Array((n * 3) >> 2);
  let o = 0;
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const a = DIGITS[text[i]!]!, b = DIGITS[text[i + 1]!]!;
    const c = DIGITS[text[i + 2]!]!, d = DIGITS[text[i + 3]!]!;
    if ((a | b | c | d) === 255) return undefined;
    const v = (a << 18) | (b << 12) | (c << 6) | d;
    out[o++] = v >> 16;
    out[o++] = (v >> 8) & 255;
    out[o++] = v & 255;
  }
  const rest = n - i;
  if (rest >= 2) {
    const a = DIGITS[text[i]!]!, b = DIGITS[text[i + 1]!]!;
    const c = rest === 3 ? DIGITS[text[i + 2]!]! : 0;
    if ((a | b | c) === 255) return undefined;
    const v = (a << 18) | (b << 12) | (c << 6);
    out[o++] = v >> 16;
    if (rest === 3) out[o++] = (v >> 8) & 255;
  }
  return out;
}

function methodOf(value: Uint8Array): Method {
  if (value.length === 3 && value[0] === 0x47 && value[1] === 0x45 && value[2] === 0x54) {
    return Method.Get;
  }
  if (value.length === 4 && value[0] === 0x50 && value[1] === 0x4f && value[3] === 0x54) {
    return value[2] === 0x53 ? Method.Post : Method.Other;
  }
  if (
    value.length === 4 && value[0] === 0x48 && value[1] === 0x45 && value[2] === 0x41 &&
    value[3] === 0x44
  ) return Method.Head;
  return Method.Other;
}

/** Whether a Content-Type value is application/dns-message (parameters allowed, any case). */
function isDnsMessage(value: Uint8Array): boolean {
  let start = 0;
  while (start < value.length && value[start] === 0x20) start++;
  if (value.length - start < DNS_MESSAGE.length) return false;
  for (let i = 0; i < DNS_MESSAGE.length; i++) {
    if ((value[start + i]! | 0x20) !== DNS_MESSAGE[i]) return false;
  }
  const after = value[start + DNS_MESSAGE.length];
  return after === undefined || after === 0x3b || after === 0x20; // ; or space
}

function parseLength(value: Uint8Array): number {
  if (value.length === 0 || value.length > 15) return Number.MAX_SAFE_INTEGER;
  let n = 0;
  for (const byte of value) {
    if (byte < 0x30 || byte > 0x39) return Number.MAX_SAFE_INTEGER;
    n = n * 10 + byte - 0x30;
  }
  return n;
}

/** An error response: status and text. */
interface Problem {
  status: number;
  text: string;
}

const PROBLEMS: Record<number, Problem> = {
  404: { status: 404, text: "Not found" },
  400: {
    status: 400,
    text: "The dns parameter is not base64url without padding (RFC 8484 §4.1)",
  },
  413: { status: 413, text: "Message over 64 KiB" },
};

/** The DNS message a complete request carries, or the problem with it (RFC 8484 §4). */
function messageOf(request: DohRequest, path: string): Uint8Array | Problem {
  if (request.method === Method.None || request.pathStatus === -1) {
    return { status: 400, text: "Missing :method or :path" };
  }
  if (request.pathStatus === 404) return { status: 404, text: `Not found: queries go to ${path}` };
  let message: Uint8Array;
  if (request.method === Method.Get || request.method === Method.Head) {
    if (request.pathStatus !== 0) return PROBLEMS[request.pathStatus]!;
    if (request.message === undefined) return { status: 400, text: "Missing the dns parameter" };
    message = request.message;
  } else if (request.method === Method.Post) {
    if (request.typeOk !== true) {
      return { status: 415, text: "Content-Type must be application/dns-message" };
    }
    if (request.contentLength > MAX_MESSAGE || request.bodyLength > MAX_MESSAGE) {
      return PROBLEMS[413]!;
    }
    message = request.body.length === 1
      ? request.body[0]!
      : concat(request.body, request.bodyLength);
  } else {
    return { status: 405, text: "Use GET or POST" };
  }
  if (message.length < 12) {
    return { status: 400, text: "Not a DNS message: shorter than its header" };
  }
  return message;
}

/**
 * The lowest TTL of the answer section, else the negative TTL (RFC 2308), else 0: the
 * `Cache-Control: max-age` of a DoH answer (RFC 8484 §5.1).
 *
 * @param answer A DNS message.
 * @returns Seconds.
 */
export function maxAge(answer: Uint8Array): number {
  try {
    const info = parseMessage(answer);
    if (info.minAnswerTtl >= 0) return info.minAnswerTtl;
    if (info.negativeTtl >= 0) return info.negativeTtl;
  } catch { /* our own answer: parses */ }
  return 0;
}

function respondLater(answer: ProxyAnswer, request: DohRequest): void {
  request.conn.answerLater(request, answer);
}

/** Options shared by both protocols. */
export interface DohWireOptions {
  /** The URL path of queries. */
  path: string;
  /** Answers queries. */
  ask: DohAsk;
}

/** A growable output buffer, written to the connection once per batch. */
class Writer {
  buffer = new Uint8Array(2048);
  length = 0;

  room(n: number): void {
    if (this.length + n <= this.buffer.length) return;
    const bigger = new Uint8Array(Math.max(this.buffer.length * 2, this.length + n));
    bigger.set(this.buffer.subarray(0, this.length));
    this.buffer = bigger;
  }

  bytes(bytes: Uint8Array): void {
    this.room(bytes.length);
    this.buffer.set(bytes, this.length);
    this.length += bytes.length;
  }

  ascii(text: string): void {
    this.room(text.length);
    for (let i = 0; i < text.length; i++) this.buffer[this.length++] = text.charCodeAt(i);
  }

  flush(out: DohOutput): void {
    if (this.length === 0) return;
    if (!out.closed) out.write(this.buffer.subarray(0, this.length));
    this.length = 0;
  }
}

// HTTP/2 frame types, flags and error codes (RFC 9113 §6, §7).
const DATA = 0, HEADERS = 1, PRIORITY = 2, RST_STREAM = 3, SETTINGS = 4, PUSH_PROMISE = 5;
const PING = 6, GOAWAY = 7, WINDOW_UPDATE = 8, CONTINUATION = 9;
const END_STREAM = 1, ACK = 1, END_HEADERS = 4, PADDED = 8, PRIORITY_FLAG = 0x20;
const NO_ERROR = 0,
  PROTOCOL_ERROR = 1,
  FLOW_CONTROL_ERROR = 3,
  FRAME_SIZE_ERROR = 6,
  REFUSED_STREAM = 7;
const COMPRESSION_ERROR = 9, ENHANCE_YOUR_CALM = 11;
/** Streams a client may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS). */
const MAX_STREAMS = 100;
/** A header block (HEADERS and CONTINUATIONs) larger than this closes the connection. */
const MAX_HEADER_BLOCK = 128 * 1024;
const MAX_WINDOW = 2 ** 31 - 1;

/** Our SETTINGS: MAX_CONCURRENT_STREAMS 100, the rest at their defaults. */
const OUR_SETTINGS = new Uint8Array([0, 0, 6, SETTINGS, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, MAX_STREAMS]);
const SETTINGS_ACK = new Uint8Array([0, 0, 0, SETTINGS, ACK, 0, 0, 0, 0]);

/** HPACK of the response headers: `content-type: application/dns-message`, never indexed. */
const CONTENT_TYPE_FIELD = new Uint8Array([0x0f, 31 - 15, DNS_MESSAGE.length, ...DNS_MESSAGE]);

/** Records each decoded header into the request. */
function header(name: string, value: Uint8Array, request: DohRequest): void {
  switch (name) {
    case ":method":
      request.method = methodOf(value);
      break;
    case ":path":
      parseTarget(request, value, request.conn.pathBytes);
      break;
    case "content-type":
      request.typeOk = isDnsMessage(value);
      break;
    case "content-length":
      request.contentLength = parseLength(value);
      break;
  }
}

function ignoreHeader(): void {}

/** What both protocols' connections hold. */
abstract class DohConnectionBase {
  readonly pathBytes: Uint8Array;
  protected readonly out: DohOutput;
  protected readonly options: DohWireOptions;
  protected readonly w = new Writer();

  constructor(out: DohOutput, options: DohWireOptions) {
    this.out = out;
    this.options = options;
    this.pathBytes = encoder.encode(options.path);
  }

  /**
   * Handles what arrived.
   *
   * @param input The unconsumed bytes.
   * @returns How many were consumed (the rest waits for more).
   */
  abstract traffic(input: Uint8Array): number;

  /** A later answer (a cache miss). */
  abstract answerLater(request: DohRequest, answer: ProxyAnswer): void;

  /** The connection is gone: answers still coming are dropped. */
  abstract release(): void;
}

/** The server side of one HTTP/2 connection (after the client's preface was recognised). */
export class Http2Connection extends DohConnectionBase {
  #hpack = new HpackDecoder();
  #streams = new Map<number, DohRequest>();
  #lastStream = 0;
  #prefaceSeen = false;
  #peerWindow = 65_535;
  #connWindow = 65_535;
  #peerMaxFrame = 16_384;
  #credit = 0;
  #continuation: { id: number; parts: Uint8Array[]; size: number; endStream: boolean } | undefined;
  /** Responses waiting for flow-control window: the stream and what is left to send. */
  #blocked: { request: DohRequest; body: Uint8Array; at: number }[] = [];
  #goingAway = false;
  #closed = false;

  traffic(input: Uint8Array): number {
    let at = 0;
    if (!this.#prefaceSeen) {
      const n = Math.min(input.length, PREFACE.length);
      for (let i = 0; i < n; i++) {
        if (input[i] !== PREFACE[i]) return this.#fail(PROTOCOL_ERROR, input.length);
      }
      if (input.length < PREFACE.length) return 0;
      this.#prefaceSeen = true;
      this.w.bytes(OUR_SETTINGS);
      at = PREFACE.length;
    }
    while (!this.#closed && input.length - at >= 9) {
      const length = (input[at]! << 16) | (input[at + 1]! << 8) | input[at + 2]!;
      if (length > 16_384) return this.#fail(FRAME_SIZE_ERROR, input.length);
      if (input.length - at - 9 < length) break;
      const type = input[at + 3]!;
      const flags = input[at + 4]!;
      const id = ((input[at + 5]! & 0x7f) << 24 | input[at + 6]! << 16 | input[at + 7]! << 8 |
        input[at + 8]!) >>> 0;
      const payload = input.subarray(at + 9, at + 9 + length);
      at += 9 + length;
      if (
        this.#continuation !== undefined &&
        (type !== CONTINUATION || id !== this.#continuation.id)
      ) return this.#fail(PROTOCOL_ERROR, input.length);
      this.#frame(type, flags, id, payload);
    }
    if (this.#credit > 0 && !this.#closed) {
      this.#windowUpdate(0, this.#credit);
      this.#credit = 0;
    }
    this.w.flush(this.out);
    return this.#closed ? input.length : at;
  }

  #frame(type: number, flags: number, id: number, payload: Uint8Array): void {
    switch (type) {
      case DATA:
        return this.#data(flags, id, payload);
      case HEADERS: {
        if (id === 0 || (id & 1) === 0) return void this.#fail(PROTOCOL_ERROR);
        const block = this.#unpad(flags, payload, (flags & PRIORITY_FLAG) !== 0 ? 5 : 0);
        if (block === undefined) return;
        const endStream = (flags & END_STREAM) !== 0;
        if ((flags & END_HEADERS) === 0) {
          this.#continuation = { id, parts: [block.slice()], size: block.length, endStream };
          return;
        }
        return this.#headers(id, block, endStream);
      }
      case CONTINUATION: {
        const pending = this.#continuation;
        if (pending === undefined) return void this.#fail(PROTOCOL_ERROR);
        pending.size += payload.length;
        if (pending.size > MAX_HEADER_BLOCK) return void this.#fail(ENHANCE_YOUR_CALM);
        pending.parts.push(payload.slice());
        if ((flags & END_HEADERS) === 0) return;
        this.#continuation = undefined;
        return this.#headers(id, concat(pending.parts, pending.size), pending.endStream);
      }
      case PRIORITY:
        if (payload.length !== 5) this.#fail(FRAME_SIZE_ERROR);
        return;
      case RST_STREAM: {
        if (payload.length !== 4) return void this.#fail(FRAME_SIZE_ERROR);
        const request = this.#streams.get(id);
        if (request !== undefined) this.#forget(request);
        return;
      }
      case SETTINGS:
        return this.#settings(flags, id, payload);
      case PUSH_PROMISE:
        return void this.#fail(PROTOCOL_ERROR);
      case PING:
        if (payload.length !== 8) return void this.#fail(FRAME_SIZE_ERROR);
        if ((flags & ACK) === 0) {
          this.#frameHeader(8, PING, ACK, 0);
          this.w.bytes(payload);
        }
        return;
      case GOAWAY:
        this.#goingAway = true;
        if (this.#streams.size === 0) this.#close();
        return;
      case WINDOW_UPDATE: {
        if (payload.length !== 4) return void this.#fail(FRAME_SIZE_ERROR);
        const increment = ((payload[0]! & 0x7f) << 24 | payload[1]! << 16 | payload[2]! << 8 |
          payload[3]!) >>> 0;
        if (increment === 0) return void this.#fail(PROTOCOL_ERROR);
        if (id === 0) {
          this.#connWindow += increment;
          if (this.#connWindow > MAX_WINDOW) return void this.#fail(FLOW_CONTROL_ERROR);
        } else {
          const request = this.#streams.get(id);
          if (request !== undefined) request.window += increment;
        }
        return this.#unblock();
      }
      default:
        return; // Unknown frame types are ignored (RFC 9113 §4.1).
    }
  }

  /** The payload without its padding (and priority fields), or undefined after a failure. */
  #unpad(flags: number, payload: Uint8Array, skip: number): Uint8Array | undefined {
    let pad = 0;
    let start = skip;
    if ((flags & PADDED) !== 0) {
      if (payload.length < 1) return void this.#fail(FRAME_SIZE_ERROR);
      pad = payload[0]!;
      start++;
    }
    if (start + pad > payload.length) return void this.#fail(PROTOCOL_ERROR);
    return payload.subarray(start, payload.length - pad);
  }

  #settings(flags: number, id: number, payload: Uint8Array): void {
    if (id !== 0) return void this.#fail(PROTOCOL_ERROR);
    if ((flags & ACK) !== 0) {
      if (payload.length !== 0) this.#fail(FRAME_SIZE_ERROR);
      return;
    }
    if (payload.length % 6 !== 0) return void this.#fail(FRAME_SIZE_ERROR);
    for (let at = 0; at < payload.length; at += 6) {
      const key = (payload[at]! << 8) | payload[at + 1]!;
      const value = (payload[at + 2]! << 24 | payload[at + 3]! << 16 | payload[at + 4]! << 8 |
        payload[at + 5]!) >>> 0;
      if (key === 4) {
        if (value > MAX_WINDOW) return void this.#fail(FLOW_CONTROL_ERROR);
        const delta = value - this.#peerWindow;
        this.#peerWindow = value;
        for (const request of this.#streams.values()) request.window += delta;
      } else if (key === 5) {
        if (value < 16_384 || value > 16_777_215) return void this.#fail(PROTOCOL_ERROR);
        this.#peerMaxFrame = Math.min(value, 65_536);
      } else if (key === 2 && value > 1) {
        return void this.#fail(PROTOCOL_ERROR);
      }
    }
    this.w.bytes(SETTINGS_ACK);
    this.#unblock();
  }

  #headers(id: number, block: Uint8Array, endStream: boolean): void {
    const existing = this.#streams.get(id);
    if (existing !== undefined || id <= this.#lastStream) {
      // Trailers of a stream in progress (or of one answered early): keep HPACK in step.
      try {
        this.#hpack.decode(block, ignoreHeader, undefined);
      } catch {
        return void this.#fail(COMPRESSION_ERROR);
      }
      if (existing === undefined) return;
      if (!endStream) return void this.#fail(PROTOCOL_ERROR);
      return this.#complete(existing);
    }
    this.#lastStream = id;
    const request = new DohRequest(this, id);
    request.window = this.#peerWindow;
    try {
      this.#hpack.decode(block, header, request);
    } catch (error) {
      if (error instanceof HpackError) return void this.#fail(COMPRESSION_ERROR);
      throw error;
    }
    if (this.#goingAway) return;
    if (this.#streams.size >= MAX_STREAMS) {
      this.#rst(id, REFUSED_STREAM);
      return;
    }
    if (endStream) this.#complete(request);
    else this.#streams.set(id, request);
  }

  #data(flags: number, id: number, payload: Uint8Array): void {
    if (id === 0) return void this.#fail(PROTOCOL_ERROR);
    this.#credit += payload.length;
    const data = this.#unpad(flags, payload, 0);
    if (data === undefined) return;
    const request = this.#streams.get(id);
    if (request === undefined || request.done) return;
    request.bodyLength += data.length;
    if (request.bodyLength > MAX_MESSAGE) {
      // Answer at once and stop the upload (RFC 9113 §8.1: a complete response, then NO_ERROR).
      this.#problem(request, PROBLEMS[413]!);
      this.#rst(id, NO_ERROR);
      return;
    }
    request.body.push(data.slice());
    if ((flags & END_STREAM) !== 0) this.#complete(request);
    else if (payload.length > 0) this.#windowUpdate(id, payload.length);
  }

  /** The request has ended: answer it now, or when the proxy calls back. */
  #complete(request: DohRequest): void {
    const message = messageOf(request, this.options.path);
    if (!(message instanceof Uint8Array)) return this.#problem(request, message);
    const answer = this.options.ask(message, respondLater, request);
    if (answer === undefined) {
      this.#streams.set(request.id, request);
      return;
    }
    this.#respond(request, answer);
  }

  answerLater(request: DohRequest, answer: ProxyAnswer): void {
    if (request.done || this.#closed) return;
    this.#respond(request, answer);
    this.w.flush(this.out);
  }

  #respond(request: DohRequest, answer: ProxyAnswer): void {
    if (answer === null) return this.#problem(request, { status: 400, text: "Not a DNS query" });
    const length = String(answer.length);
    const cache = `max-age=${maxAge(answer)}`;
    const head = request.method === Method.Head;
    const blockLength = 1 + CONTENT_TYPE_FIELD.length + 3 + length.length + 3 + cache.length;
    this.#frameHeader(blockLength, HEADERS, END_HEADERS | (head ? END_STREAM : 0), request.id);
    const w = this.w;
    w.room(blockLength);
    w.buffer[w.length++] = 0x88; // :status 200, static index 8
    w.bytes(CONTENT_TYPE_FIELD);
    this.#literal(28, length); // content-length
    this.#literal(24, cache); // cache-control
    if (head) return this.#forget(request);
    this.#body(request, answer, 0);
  }

  #problem(request: DohRequest, problem: Problem): void {
    const text = `${problem.text}\n`;
    const body = encoder.encode(text);
    const status = String(problem.status);
    const allow = problem.status === 405;
    const blockLength = 2 + status.length + 3 + "text/plain".length + 3 +
      String(body.length).length + (allow ? 3 + "GET, POST".length : 0);
    this.#frameHeader(blockLength, HEADERS, END_HEADERS, request.id);
    this.#literal(8, status);
    this.#literal(31, "text/plain");
    this.#literal(28, String(body.length));
    if (allow) this.#literal(22, "GET, POST");
    this.#body(request, body, 0);
  }

  /** A header field without indexing, its name from the static table (`value` short ASCII). */
  #literal(index: number, value: string): void {
    const w = this.w;
    w.room(3 + value.length);
    if (index < 15) w.buffer[w.length++] = index;
    else {
      w.buffer[w.length++] = 0x0f;
      w.buffer[w.length++] = index - 15;
    }
    w.buffer[w.length++] = value.length;
    w.ascii(value);
  }

  /**
   * Sends as much of the body as the windows allow; the rest waits for WINDOW_UPDATE, in a copy
   * unless `own` (the proxy's answers are valid only during the call that hands them over, even
   * once part of one is sent).
   */
  #body(request: DohRequest, body: Uint8Array, at: number, own = false): boolean {
    while (at < body.length) {
      const n = Math.min(body.length - at, this.#peerMaxFrame, this.#connWindow, request.window);
      if (n <= 0) {
        this.#blocked.push({ request, body: own ? body : body.slice(), at });
        this.#streams.set(request.id, request);
        return false;
      }
      const last = at + n === body.length;
      this.#frameHeader(n, DATA, last ? END_STREAM : 0, request.id);
      this.w.bytes(body.subarray(at, at + n));
      this.#connWindow -= n;
      request.window -= n;
      at += n;
    }
    if (body.length === 0) this.#frameHeader(0, DATA, END_STREAM, request.id);
    this.#forget(request);
    return true;
  }

  #unblock(): void {
    if (this.#blocked.length === 0) return;
    const blocked = this.#blocked;
    this.#blocked = [];
    for (const { request, body, at } of blocked) {
      if (!request.done) this.#body(request, body, at, true);
    }
  }

  /** The stream is over (answered, reset): a late answer is dropped. */
  #forget(request: DohRequest): void {
    request.done = true;
    this.#streams.delete(request.id);
    if (this.#goingAway && this.#streams.size === 0) this.#close();
  }

  #frameHeader(length: number, type: number, flags: number, id: number): void {
    const w = this.w;
    w.room(9);
    const b = w.buffer;
    let i = w.length;
    b[i++] = length >> 16;
    b[i++] = (length >> 8) & 255;
    b[i++] = length & 255;
    b[i++] = type;
    b[i++] = flags;
    b[i++] = (id >>> 24) & 0x7f;
    b[i++] = (id >> 16) & 255;
    b[i++] = (id >> 8) & 255;
    b[i++] = id & 255;
    w.length = i;
  }

  #windowUpdate(id: number, increment: number): void {
    this.#frameHeader(4, WINDOW_UPDATE, 0, id);
    const w = this.w;
    w.room(4);
    w.buffer[w.length++] = (increment >>> 24) & 0x7f;
    w.buffer[w.length++] = (increment >> 16) & 255;
    w.buffer[w.length++] = (increment >> 8) & 255;
    w.buffer[w.length++] = increment & 255;
  }

  #rst(id: number, code: number): void {
    this.#frameHeader(4, RST_STREAM, 0, id);
    this.w.bytes(new Uint8Array([0, 0, 0, code]));
  }

  /** A connection error: GOAWAY with the code, then close. Returns `consumed` for `traffic`. */
  #fail(code: number, consumed = 0): number {
    if (this.#closed) return consumed;
    this.#frameHeader(8, GOAWAY, 0, 0);
    const id = this.#lastStream;
    this.w.bytes(
      new Uint8Array([id >>> 24, (id >> 16) & 255, (id >> 8) & 255, id & 255, 0, 0, 0, code]),
    );
    this.#close();
    return consumed;
  }

  #close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.w.flush(this.out);
    this.out.close();
    this.release();
  }

  release(): void {
    this.#closed = true;
    for (const request of this.#streams.values()) request.done = true;
    this.#streams.clear();
    this.#blocked = [];
  }
}

const STATUS_TEXT: Record<number, string> = {
  200: "OK",
  400: "Bad Request",
  404: "Not Found",
  405: "Method Not Allowed",
  413: "Content Too Large",
  415: "Unsupported Media Type",
  431: "Request Header Fields Too Large",
  501: "Not Implemented",
};

/** Request head larger than this gets 431 and a close. */
const MAX_HEAD = 16 * 1024;

/**
 * The server side of one HTTP/1.1 connection: keep-alive, pipelined requests answered in order,
 * bodies by Content-Length (a chunked body gets 501 and a close).
 */
export class Http1Connection extends DohConnectionBase {
  /** Responses by slot; written in order as the front ones are ready. */
  #ready = new Map<number, Uint8Array>();
  #next = 0;
  #written = 0;
  #closeAfter = -1;
  #closed = false;

  traffic(input: Uint8Array): number {
    let at = 0;
    while (!this.#closed && this.#closeAfter < 0 && at < input.length) {
      const end = headEnd(input, at);
      if (end < 0) {
        if (input.length - at > MAX_HEAD) this.#final(431, "Request head over 16 KiB");
        break;
      }
      const consumed = this.#request(input, at, end);
      if (consumed < 0) break;
      at = consumed;
    }
    this.#flushReady();
    // After a request that ends the connection, whatever follows is dropped.
    return this.#closed || this.#closeAfter >= 0 ? input.length : at;
  }

  /** Parses one request whose head ends at `end`; returns where the next starts, -1 to wait. */
  #request(input: Uint8Array, start: number, end: number): number {
    const head = input.subarray(start, end);
    const request = new DohRequest(this, this.#next);
    const line = head.indexOf(0x0d);
    const sp1 = head.indexOf(0x20);
    const sp2 = sp1 < 0 ? -1 : head.indexOf(0x20, sp1 + 1);
    if (sp1 < 0 || sp2 < 0 || sp2 > line) {
      this.#final(400, "Bad request line");
      return -1;
    }
    const version = head.subarray(sp2 + 1, line);
    const http10 = version.length === 8 && version[7] === 0x30;
    request.method = methodOf(head.subarray(0, sp1));
    parseTarget(request, head.subarray(sp1 + 1, sp2), this.pathBytes);
    let keepAlive = !http10;
    let chunked = false;
    let at = line + 2;
    while (at < head.length - 2) {
      const eol = head.indexOf(0x0d, at);
      const colon = head.indexOf(0x3a, at);
      if (colon < 0 || colon > eol) {
        this.#final(400, "Bad header line");
        return -1;
      }
      let v = colon + 1;
      while (head[v] === 0x20 || head[v] === 0x09) v++;
      const value = head.subarray(v, eol);
      const name = head.subarray(at, colon);
      if (nameIs(name, "content-type")) request.typeOk = isDnsMessage(value);
      else if (nameIs(name, "content-length")) request.contentLength = parseLength(value);
      else if (nameIs(name, "transfer-encoding")) chunked = true;
      else if (nameIs(name, "connection")) {
        const token = latin1.decode(value).toLowerCase();
        if (token.includes("close")) keepAlive = false;
        else if (token.includes("keep-alive")) keepAlive = true;
      }
      at = eol + 2;
    }
    if (chunked) {
      this.#final(501, "Chunked request bodies are not supported: send Content-Length");
      return -1;
    }
    let bodyEnd = end;
    if (request.contentLength > 0) {
      if (request.contentLength > MAX_MESSAGE) {
        this.#final(413, "Message over 64 KiB");
        return -1;
      }
      if (input.length - end < request.contentLength) return -1;
      bodyEnd = end + request.contentLength;
      const body = input.slice(end, bodyEnd);
      request.body.push(body);
      request.bodyLength = body.length;
    } else if (request.contentLength < -1 || request.contentLength === Number.MAX_SAFE_INTEGER) {
      this.#final(400, "Bad Content-Length");
      return -1;
    }
    this.#next++;
    if (!keepAlive) this.#closeAfter = request.id;
    const message = messageOf(request, this.options.path);
    if (!(message instanceof Uint8Array)) {
      this.#ready.set(request.id, this.#problem(message));
    } else {
      const answer = this.options.ask(message, respondLater, request);
      if (answer !== undefined) this.#ready.set(request.id, this.#answer(request, answer));
    }
    return bodyEnd;
  }

  answerLater(request: DohRequest, answer: ProxyAnswer): void {
    if (this.#closed) return;
    this.#ready.set(request.id, this.#answer(request, answer));
    this.#flushReady();
  }

  #answer(request: DohRequest, answer: ProxyAnswer): Uint8Array {
    if (answer === null) return this.#problem({ status: 400, text: "Not a DNS query" });
    const head = request.method === Method.Head;
    const text = `HTTP/1.1 200 OK\r\ncontent-type: application/dns-message\r\n` +
      `content-length: ${answer.length}\r\ncache-control: max-age=${maxAge(answer)}\r\n\r\n`;
    const out = new Uint8Array(text.length + (head ? 0 : answer.length));
    encoder.encodeInto(text, out);
    if (!head) out.set(answer, text.length);
    return out;
  }

  #problem(problem: Problem): Uint8Array {
    const body = `${problem.text}\n`;
    const bytes = encoder.encode(body);
    return encoder.encode(
      `HTTP/1.1 ${problem.status} ${STATUS_TEXT[problem.status]}\r\n` +
        `content-type: text/plain\r\ncontent-length: ${bytes.length}\r\n` +
        (problem.status === 405 ? "allow: GET, POST\r\n" : "") + `\r\n${body}`,
    );
  }

  /** A response after which the connection closes (a request it cannot read past). */
  #final(status: number, text: string): void {
    const id = this.#next++;
    this.#ready.set(id, this.#problem({ status, text }));
    this.#closeAfter = id;
  }

  #flushReady(): void {
    for (;;) {
      const response = this.#ready.get(this.#written);
      if (response === undefined) break;
      this.#ready.delete(this.#written);
      this.w.bytes(response);
      if (this.#written++ === this.#closeAfter) {
        this.w.flush(this.out);
        this.#closed = true;
        this.out.close();
        return;
      }
    }
    this.w.flush(this.out);
  }

  release(): void {
    this.#closed = true;
    this.#ready.clear();
  }
}

function nameIs(name: Uint8Array, lower: string): boolean {
  if (name.length !== lower.length) return false;
  for (let i = 0; i < name.length; i++) {
    if ((name[i]! | 0x20) !== lower.charCodeAt(i)) return false;
  }
  return true;
}

/** Where the request head starting at `from` ends (after CRLF CRLF), or -1. */
function headEnd(input: Uint8Array, from: number): number {
  let i = input.indexOf(0x0a, from);
  while (i >= 0) {
    if (input[i - 1] === 0x0d && input[i - 2] === 0x0a && input[i - 3] === 0x0d) return i + 1;
    i = input.indexOf(0x0a, i + 1);
  }
  return -1;
}

/**
 * Picks the protocol of a new connection from its ALPN and first bytes: HTTP/2 for ALPN `h2` or a
 * cleartext client starting with the HTTP/2 preface, else HTTP/1.1.
 *
 * @param alpn The ALPN protocol agreed, if any.
 * @param input The first bytes.
 * @param out Where responses go.
 * @param options Path and query answering.
 * @returns The connection, or `undefined` while too few bytes arrived to tell.
 */
export function dohConnection(
  alpn: string | undefined,
  input: Uint8Array,
  out: DohOutput,
  options: DohWireOptions,
): Http2Connection | Http1Connection | undefined {
  if (alpn === "h2") return new Http2Connection(out, options);
  if (alpn === undefined) {
    const n = Math.min(input.length, 4);
    let preface = true;
    for (let i = 0; i < n; i++) if (input[i] !== PREFACE[i]) preface = false;
    if (preface && n < 4) return undefined;
    if (preface) return new Http2Connection(out, options);
  }
  return new Http1Connection(out, options);
}
