/**
 * One strict pass over a DNS message: header, question, every resource record, EDNS0. It collects
 * what the proxy needs to forward and cache raw bytes (question, TTL offsets, OPT, SOA minimum)
 * without building objects per record.
 *
 * @module
 */
import { RrType } from "./constants.ts";
import { skipName } from "./name.ts";
import { readTtl } from "./_ttl.ts";
import { WireError } from "./wire_error.ts";

/** The EDNS0 OPT pseudo-record of a message (RFC 6891). */
export interface EdnsInfo {
  /** Offset of the OPT record's first byte (its owner name). */
  readonly offset: number;
  /** Offset just after the OPT record. */
  readonly end: number;
  /** The requestor's UDP payload size (the CLASS field). */
  readonly udpSize: number;
  /** The upper 8 bits of the extended RCODE. */
  readonly extendedRcode: number;
  /** The EDNS version. */
  readonly version: number;
  /** The DNSSEC OK bit. */
  readonly dnssecOk: boolean;
}

/** The one question of a message. */
export interface QuestionInfo {
  /** Offset of the name (12). */
  readonly nameOffset: number;
  /** Offset just after QTYPE and QCLASS. */
  readonly end: number;
  /** The name, lower-cased, as length-prefixed labels in a string (a cache key part). */
  readonly key: string;
  /** QTYPE. */
  readonly type: number;
  /** QCLASS. */
  readonly class: number;
}

/** What {@linkcode parseMessage} learned about a message. */
export interface MessageInfo {
  /** The ID. */
  readonly id: number;
  /** The 16-bit flags word (QR, opcode, AA, TC, RD, RA, Z, AD, CD, RCODE). */
  readonly flags: number;
  /** The opcode. */
  readonly opcode: number;
  /** The full response code, extended bits from OPT included. */
  readonly rcode: number;
  /** The question, when QDCOUNT is 1. */
  readonly question: QuestionInfo | undefined;
  /** Section counts: question, answer, authority, additional. */
  readonly counts: readonly [number, number, number, number];
  /** Offsets of the TTL field of every record except OPT, for rewriting in place. */
  readonly ttlOffsets: readonly number[];
  /** Smallest TTL in the answer section, -1 when it is empty. */
  readonly minAnswerTtl: number;
  /** RFC 2308 negative TTL: min(SOA TTL, SOA MINIMUM) of the first authority SOA, -1 without. */
  readonly negativeTtl: number;
  /** The OPT record, if any. */
  readonly edns: EdnsInfo | undefined;
}

/**
 * Section counts of up to two records each, shared (frozen) tuples by `((q * 3 + an) * 3 + ns) * 3
 * + ar`: a query's parsed form is kept while its miss is in flight, and a tuple each was 80 heap
 * bytes a message (a query's counts are [1, 0, 0, 1] or [1, 0, 0, 0], a reply's mostly small).
 */
const SMALL_COUNTS: readonly (readonly [number, number, number, number])[] = Array.from(
  { length: 81 },
  (_, i) =>
    Object.freeze([Math.floor(i / 27), Math.floor(i / 9) % 3, Math.floor(i / 3) % 3, i % 3]),
) as unknown as readonly (readonly [number, number, number, number])[];

/** The counts tuple of a message: a shared one when every count is at most 2. */
function countsOf(
  qd: number,
  an: number,
  ns: number,
  ar: number,
): readonly [number, number, number, number] {
  if (qd <= 2 && an <= 2 && ns <= 2 && ar <= 2) {
    return SMALL_COUNTS[((qd * 3 + an) * 3 + ns) * 3 + ar]!;
  }
  // Frozen as the shared ones are, so that readers see one kind of array.
  return Object.freeze([qd, an, ns, ar] as const);
}

/** The TTL offsets of a message without records that have one (shared: never written to). */
const NO_TTLS: readonly number[] = Object.freeze([]);

/** Types whose RDATA is or holds names that may be compressed (RFC 3597 §4). */
const COMPRESSED_RDATA: ReadonlyMap<number, number> = new Map([
  [RrType.NS, 0],
  [RrType.CNAME, 0],
  [RrType.PTR, 0],
  [RrType.DNAME, 0],
  [RrType.MX, 2],
  [RrType.SOA, -1],
]);

/**
 * Parses and checks a whole DNS message (RFC 1035, RFC 9267, RFC 6891): a truncated header, a
 * section count that does not match the records, an RDLENGTH that overruns the packet or does not
 * match a name-bearing RDATA, trailing bytes, an OPT record outside the additional section, not
 * owned by the root or repeated, and every name fault {@linkcode skipName} knows all throw.
 *
 * @param packet The message.
 * @returns What the proxy needs to know about it.
 * @throws {WireError} Naming the offset and the fault.
 *
 * @example
 * ```ts
 * import { buildQuery, parseMessage } from "@triad/dnsproxy";
 * import assert from "node:assert/strict";
 *
 * const query = buildQuery({ id: 7, name: "Example.COM", type: 1, dnssecOk: true });
 * const info = parseMessage(query);
 * assert.equal(info.id, 7);
 * assert.equal(info.question?.type, 1);
 * assert.equal(info.question?.key, "\x07example\x03com\x00");
 * assert.equal(info.edns?.udpSize, 1232);
 * assert.equal(info.edns?.dnssecOk, true);
 * ```
 */
export function parseMessage(packet: Uint8Array): MessageInfo {
  const length = packet.length;
  if (length < 12) throw new WireError(0, "truncated header");
  const id = (packet[0]! << 8) | packet[1]!;
  const flags = (packet[2]! << 8) | packet[3]!;
  const qdcount = (packet[4]! << 8) | packet[5]!;
  const ancount = (packet[6]! << 8) | packet[7]!;
  const nscount = (packet[8]! << 8) | packet[9]!;
  const arcount = (packet[10]! << 8) | packet[11]!;
  let pos = 12;
  let question: QuestionInfo | undefined;
  for (let i = 0; i < qdcount; i++) {
    const nameEnd = skipName(packet, pos, length);
    if (nameEnd + 4 > length) {
      throw new WireError(nameEnd, `question ${i + 1} of ${qdcount} runs past the end`);
    }
    if (i === 0) {
      question = {
        nameOffset: pos,
        end: nameEnd + 4,
        key: nameKey(packet, pos),
        type: (packet[nameEnd]! << 8) | packet[nameEnd + 1]!,
        class: (packet[nameEnd + 2]! << 8) | packet[nameEnd + 3]!,
      };
    }
    pos = nameEnd + 4;
  }
  if (qdcount !== 1) question = undefined;
  // Made at the first record with a TTL (a query's OPT record has none: a query in flight keeps
  // its parsed form, and an empty array each was 56 heap bytes), sized up front for the records
  // left (a pushed array grows to 16 slots, and a cached answer keeps this one), but never past
  // what the bytes left can hold (a record takes 11 at least): counts are not trusted.
  let ttlOffsets: number[] | undefined;
  let ttlCount = 0;
  let minAnswerTtl = -1;
  let negativeTtl = -1;
  let edns: EdnsInfo | undefined;
  const total = ancount + nscount + arcount;
  for (let i = 0; i < total; i++) {
    const start = pos;
    if (pos >= length) {
      throw new WireError(pos, `section counts say ${total} records, found ${i}`);
    }
    const nameEnd = skipName(packet, pos, length);
    if (nameEnd + 10 > length) throw new WireError(nameEnd, "record header runs past the end");
    const type = (packet[nameEnd]! << 8) | packet[nameEnd + 1]!;
    const ttlAt = nameEnd + 4;
    const rdlength = (packet[nameEnd + 8]! << 8) | packet[nameEnd + 9]!;
    const rdStart = nameEnd + 10;
    const rdEnd = rdStart + rdlength;
    if (rdEnd > length) {
      throw new WireError(nameEnd + 8, `RDLENGTH ${rdlength} runs past the end (${length})`);
    }
    if (type === RrType.OPT) {
      if (i < ancount + nscount) throw new WireError(start, "OPT record outside additional");
      if (edns !== undefined) throw new WireError(start, "second OPT record");
      if (nameEnd !== start + 1 || packet[start] !== 0) {
        throw new WireError(start, "OPT record not owned by the root");
      }
      checkOptions(packet, rdStart, rdEnd);
      edns = {
        offset: start,
        end: rdEnd,
        udpSize: (packet[nameEnd + 2]! << 8) | packet[nameEnd + 3]!,
        extendedRcode: packet[ttlAt]!,
        version: packet[ttlAt + 1]!,
        dnssecOk: (packet[ttlAt + 2]! & 0x80) !== 0,
      };
    } else {
      const effective = readTtl(packet, ttlAt);
      ttlOffsets ??= new Array(Math.min(total - i, Math.floor((length - start) / 11)));
      ttlOffsets[ttlCount++] = ttlAt;
      if (i < ancount && (minAnswerTtl === -1 || effective < minAnswerTtl)) {
        minAnswerTtl = effective;
      }
      const skip = COMPRESSED_RDATA.get(type);
      if (skip !== undefined) {
        if (type === RrType.SOA) {
          const minimum = checkSoa(packet, rdStart, rdEnd);
          if (i >= ancount && i < ancount + nscount && negativeTtl === -1) {
            negativeTtl = Math.min(effective, minimum);
          }
        } else {
          if (rdStart + skip > rdEnd) throw new WireError(rdStart, "RDATA shorter than its type");
          const after = skipName(packet, rdStart + skip, rdEnd);
          if (after !== rdEnd) {
            throw new WireError(rdStart, `RDLENGTH ${rdlength} does not match the RDATA`);
          }
        }
      }
    }
    pos = rdEnd;
  }
  if (pos !== length) {
    throw new WireError(pos, `${length - pos} bytes after the last record`);
  }
  if (ttlOffsets !== undefined) ttlOffsets.length = ttlCount; // the OPT record has no TTL offset
  const rcode = (flags & 0xf) | ((edns?.extendedRcode ?? 0) << 4);
  return {
    id,
    flags,
    opcode: (flags >> 11) & 0xf,
    rcode,
    question,
    counts: countsOf(qdcount, ancount, nscount, arcount),
    ttlOffsets: ttlOffsets ?? NO_TTLS,
    minAnswerTtl,
    negativeTtl,
    edns,
  };
}

function checkSoa(packet: Uint8Array, start: number, end: number): number {
  const afterMname = skipName(packet, start, end);
  const afterRname = skipName(packet, afterMname, end);
  if (afterRname + 20 !== end) throw new WireError(start, "SOA RDATA length does not match");
  const m = afterRname + 16;
  return ((packet[m]! << 24) | (packet[m + 1]! << 16) | (packet[m + 2]! << 8) | packet[m + 3]!) >>>
    0;
}

function checkOptions(packet: Uint8Array, start: number, end: number): void {
  let pos = start;
  while (pos < end) {
    if (pos + 4 > end) throw new WireError(pos, "EDNS option header runs past the OPT RDATA");
    const optionLength = (packet[pos + 2]! << 8) | packet[pos + 3]!;
    pos += 4 + optionLength;
    if (pos > end) throw new WireError(pos - optionLength, "EDNS option runs past the OPT RDATA");
  }
}

/** Character codes of the name being keyed (one string made at the end, not one per byte). */
const keyCodes: number[] = [];

/** The name at `start`, lower-cased, labels length-prefixed, pointers followed (already checked). */
function nameKey(packet: Uint8Array, start: number): string {
  let n = 0;
  let pos = start;
  for (;;) {
    const byte = packet[pos]!;
    if ((byte & 0xc0) === 0xc0) {
      pos = ((byte & 0x3f) << 8) | packet[pos + 1]!;
      continue;
    }
    keyCodes[n++] = byte;
    if (byte === 0) break;
    for (let i = pos + 1; i <= pos + byte; i++) {
      const c = packet[i]!;
      keyCodes[n++] = c >= 0x41 && c <= 0x5a ? c | 0x20 : c;
    }
    pos += byte + 1;
  }
  keyCodes.length = n;
  return String.fromCharCode.apply(null, keyCodes);
}
