/**
 * Messages the proxy writes itself: queries (health probes, tests), error answers, truncated
 * answers, RFC 8482 answers to ANY, and the OPT edits made when answering.
 *
 * @module
 */
import type { BytePool } from "@triad/core";
import { CLASS_IN, EDNS_UDP_SIZE, Flag, Rcode, RrType } from "./constants.ts";
import type { MessageInfo } from "./message.ts";
import { encodeName } from "./name.ts";

/** What {@linkcode buildQuery} puts in a query. */
export interface QueryOptions {
  /** The ID. */
  id: number;
  /** The name, dotted (`"example.com"`). */
  name: string;
  /** QTYPE. */
  type: number;
  /** QCLASS. @default {1} */
  class?: number;
  /** Set RD. @default {true} */
  recursionDesired?: boolean;
  /** Add an OPT record. @default {true} */
  edns?: boolean;
  /** The UDP payload size advertised in OPT. @default {1232} */
  udpSize?: number;
  /** Set the DO bit in OPT. @default {false} */
  dnssecOk?: boolean;
}

/**
 * Builds a query with one question and, by default, an OPT record.
 *
 * @param options The ID, name, type and flags.
 * @returns The query in wire form.
 *
 * @example
 * ```ts
 * import { buildQuery } from "@triad/dnsproxy";
 * import assert from "node:assert/strict";
 *
 * const query = buildQuery({ id: 1, name: "a.", type: 1, edns: false });
 * assert.deepEqual([...query], [0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 97, 0, 0, 1, 0, 1]);
 * ```
 */
export function buildQuery(options: QueryOptions): Uint8Array {
  const name = encodeName(options.name);
  const edns = options.edns ?? true;
  const out = new Uint8Array(12 + name.length + 4 + (edns ? 11 : 0));
  const view = new DataView(out.buffer);
  view.setUint16(0, options.id);
  view.setUint16(2, (options.recursionDesired ?? true) ? Flag.RD : 0);
  view.setUint16(4, 1);
  view.setUint16(10, edns ? 1 : 0);
  out.set(name, 12);
  let pos = 12 + name.length;
  view.setUint16(pos, options.type);
  view.setUint16(pos + 2, options.class ?? CLASS_IN);
  pos += 4;
  if (edns) writeOpt(view, pos, options.udpSize ?? EDNS_UDP_SIZE, 0, options.dnssecOk ?? false);
  return out;
}

function writeOpt(
  view: DataView,
  pos: number,
  udpSize: number,
  extendedRcode: number,
  dnssecOk: boolean,
): void {
  view.setUint8(pos, 0);
  view.setUint16(pos + 1, RrType.OPT);
  view.setUint16(pos + 3, udpSize);
  view.setUint8(pos + 5, extendedRcode);
  view.setUint8(pos + 6, 0);
  view.setUint16(pos + 7, dnssecOk ? 0x8000 : 0);
  view.setUint16(pos + 9, 0);
}

/**
 * Builds the flags of an answer to `query`: same opcode, RD and CD; QR set; RA set for a QUERY
 * only (for other opcodes it is not defined: for UPDATE it is a Z bit, zero, RFC 2136 §2.2).
 */
function answerFlags(query: Uint8Array, rcode: number): number {
  const flags = ((query[2] ?? 0) << 8) | (query[3] ?? 0);
  const ra = (flags & 0x7800) === 0 ? Flag.RA : 0;
  return Flag.QR | (flags & (0x7800 | Flag.RD | Flag.CD)) | ra | (rcode & 0xf);
}

/**
 * Builds an error answer (FORMERR, SERVFAIL, REFUSED, NOTIMP, BADVERS) to a query whose header
 * could be read: the ID, opcode, RD and CD are echoed, RA is set for opcode QUERY only; the
 * question is echoed when `info` has one; an OPT record advertising 1232 bytes, version 0, with
 * the query's DO bit (RFC 3225 §3), is added when the query had one (and always for BADVERS).
 *
 * @param query The query (at least its 12-byte header).
 * @param rcode The response code (extended codes above 15 go into OPT).
 * @param info The parsed query, when it parsed.
 * @returns The answer.
 *
 * @example
 * ```ts
 * import { buildQuery, parseMessage, Rcode } from "@triad/dnsproxy";
 * import { buildErrorResponse } from "./builders.ts";
 * import assert from "node:assert/strict";
 *
 * const query = buildQuery({ id: 9, name: "x.", type: 1 });
 * const answer = parseMessage(buildErrorResponse(query, Rcode.REFUSED, parseMessage(query)));
 * assert.equal(answer.id, 9);
 * assert.equal(answer.rcode, Rcode.REFUSED);
 * assert.equal(answer.question?.key, "\x01x\x00");
 * ```
 */
export function buildErrorResponse(
  query: Uint8Array,
  rcode: number,
  info?: MessageInfo,
): Uint8Array {
  const question = info?.question;
  const questionBytes = question === undefined
    ? new Uint8Array(0)
    : query.subarray(12, question.end);
  const withOpt = info?.edns !== undefined || rcode > 15;
  const out = new Uint8Array(12 + questionBytes.length + (withOpt ? 11 : 0));
  const view = new DataView(out.buffer);
  out[0] = query[0] ?? 0;
  out[1] = query[1] ?? 0;
  view.setUint16(2, answerFlags(query, rcode));
  view.setUint16(4, question === undefined ? 0 : 1);
  view.setUint16(10, withOpt ? 1 : 0);
  out.set(questionBytes, 12);
  if (withOpt) {
    const dnssecOk = info?.edns?.dnssecOk ?? false;
    writeOpt(view, 12 + questionBytes.length, EDNS_UDP_SIZE, rcode >> 4, dnssecOk);
  }
  return out;
}

/**
 * Builds the RFC 8482 answer to a query for ANY: one synthesized HINFO record (`"RFC8482"`, `""`)
 * for the queried name, instead of everything the name owns.
 *
 * @param query The ANY query.
 * @param info The parsed query (must have a question).
 * @returns The answer.
 *
 * @example
 * ```ts
 * import { buildQuery, parseMessage, RrType } from "@triad/dnsproxy";
 * import { buildAnyResponse } from "./builders.ts";
 * import assert from "node:assert/strict";
 *
 * const query = buildQuery({ id: 3, name: "example.com", type: RrType.ANY });
 * const answer = parseMessage(buildAnyResponse(query, parseMessage(query)));
 * assert.deepEqual(answer.counts, [1, 1, 0, 1]);
 * ```
 */
export function buildAnyResponse(query: Uint8Array, info: MessageInfo): Uint8Array {
  const question = info.question!;
  const questionBytes = query.subarray(12, question.end);
  const rdata = [7, ...new TextEncoder().encode("RFC8482"), 0];
  const withOpt = info.edns !== undefined;
  const out = new Uint8Array(12 + questionBytes.length + 12 + rdata.length + (withOpt ? 11 : 0));
  const view = new DataView(out.buffer);
  out[0] = query[0]!;
  out[1] = query[1]!;
  view.setUint16(2, answerFlags(query, Rcode.NOERROR));
  view.setUint16(4, 1);
  view.setUint16(6, 1);
  view.setUint16(10, withOpt ? 1 : 0);
  out.set(questionBytes, 12);
  let pos = 12 + questionBytes.length;
  view.setUint16(pos, 0xc000 | question.nameOffset);
  view.setUint16(pos + 2, RrType.HINFO);
  view.setUint16(pos + 4, question.class);
  view.setUint32(pos + 6, 3600);
  view.setUint16(pos + 10, rdata.length);
  out.set(rdata, pos + 12);
  pos += 12 + rdata.length;
  if (withOpt) writeOpt(view, pos, EDNS_UDP_SIZE, 0, info.edns!.dnssecOk);
  return out;
}

/**
 * Builds a truncated copy of an answer (RFC 1035 §4.1.1, RFC 7766 §3): header with TC set,
 * the question, and the OPT record if the answer had one; no records. The client retries over TCP.
 *
 * @param response The full answer.
 * @param info The parsed answer.
 * @returns The truncated answer.
 *
 * @example
 * ```ts
 * import { buildQuery, parseMessage } from "@triad/dnsproxy";
 * import { truncateResponse } from "./builders.ts";
 * import assert from "node:assert/strict";
 *
 * const message = buildQuery({ id: 5, name: "t.", type: 1 });
 * const truncated = parseMessage(truncateResponse(message, parseMessage(message)));
 * assert.equal(truncated.flags & 0x0200, 0x0200);
 * ```
 */
export function truncateResponse(response: Uint8Array, info: MessageInfo): Uint8Array {
  const questionEnd = info.question?.end ?? 12;
  const opt = info.edns === undefined
    ? new Uint8Array(0)
    : response.subarray(info.edns.offset, info.edns.end);
  const out = new Uint8Array(questionEnd + opt.length);
  out.set(response.subarray(0, questionEnd));
  out.set(opt, questionEnd);
  out[2] = out[2]! | (Flag.TC >> 8);
  out.fill(0, 6, 10);
  out[10] = 0;
  out[11] = opt.length > 0 ? 1 : 0;
  return out;
}

/**
 * Removes the OPT record from an answer, for a client that sent no OPT (RFC 6891 §7).
 *
 * @param response The answer.
 * @param info The parsed answer; must have `edns`.
 * @param pool Where the new answer is allocated (for answers that are sent and dropped at once).
 * @returns A new answer without the OPT record.
 *
 * @example
 * ```ts
 * import { buildQuery, parseMessage } from "@triad/dnsproxy";
 * import { removeOpt } from "./builders.ts";
 * import assert from "node:assert/strict";
 *
 * const message = buildQuery({ id: 5, name: "t.", type: 1 });
 * assert.equal(parseMessage(removeOpt(message, parseMessage(message))).edns, undefined);
 * ```
 */
export function removeOpt(response: Uint8Array, info: MessageInfo, pool?: BytePool): Uint8Array {
  const edns = info.edns!;
  const length = response.length - (edns.end - edns.offset);
  const out = pool === undefined ? new Uint8Array(length) : pool.alloc(length);
  if (length < 512) {
    // Short answers byte by byte: two views to copy with would cost more than the copy.
    for (let i = 0; i < edns.offset; i++) out[i] = response[i]!;
    for (let i = edns.end, at = edns.offset; i < response.length; i++, at++) out[at] = response[i]!;
  } else {
    out.set(response.subarray(0, edns.offset));
    out.set(response.subarray(edns.end), edns.offset);
  }
  const arcount = ((out[10]! << 8) | out[11]!) - 1;
  out[10] = arcount >> 8;
  out[11] = arcount & 0xff;
  return out;
}
