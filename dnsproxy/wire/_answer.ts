/**
 * What makes an answer the asker's own: its header bits (ID, RD, RA) and an OPT record of the
 * proxy's (RFC 6891) instead of the upstream's, whose options belong to the upstream exchange.
 *
 * @module
 */
import { EDNS_UDP_SIZE, RrType } from "./constants.ts";
import type { MessageInfo } from "./message.ts";

/** Bytes of the OPT record the proxy writes: root owner, fixed fields, no options. */
export const OWN_OPT_LENGTH = 11;

/**
 * Writes the proxy's OPT record at `at`: UDP payload size 1232, version 0, the given DO bit and
 * upper rcode bits, and no options (the proxy produces none: RFC 5001 §2.2, RFC 7873 §5.2).
 */
export function writeOwnOpt(out: Uint8Array, at: number, dnssecOk: boolean, extendedRcode = 0) {
  out[at] = 0;
  out[at + 1] = 0;
  out[at + 2] = RrType.OPT;
  out[at + 3] = EDNS_UDP_SIZE >> 8;
  out[at + 4] = EDNS_UDP_SIZE & 0xff;
  out[at + 5] = extendedRcode;
  out[at + 6] = 0;
  out[at + 7] = dnssecOk ? 0x80 : 0;
  out[at + 8] = 0;
  out[at + 9] = 0;
  out[at + 10] = 0;
}

/**
 * Makes a response to a QUERY the asker's: its ID, its RD bit (RFC 1035 §4.1.1: copied from the
 * query), RA set (the proxy offers recursion through its upstreams), Z clear, and AD kept only
 * for a query with AD or DO set (RFC 6840 §5.7; the upstream is always asked with AD).
 */
export function setAnswerHeader(out: Uint8Array, query: Uint8Array, dnssecOk: boolean): void {
  out[0] = query[0]!;
  out[1] = query[1]!;
  out[2] = (out[2]! & 0xfe) | (query[2]! & 0x01);
  const ad = dnssecOk ? 0x20 : query[3]! & 0x20;
  out[3] = (out[3]! | 0x80) & (0x9f | ad);
}

/**
 * A copy of a message without its OPT record and, when `dnssecOk` is given, with the proxy's
 * own OPT appended (see {@linkcode writeOwnOpt}; the upper rcode bits are kept).
 *
 * @param message The message (a reply from upstream, or a query sent there).
 * @param info Its parsed form.
 * @param dnssecOk The DO bit of the OPT to write, or `undefined` for none.
 * @param pool Where the copy is allocated (every byte of it is written).
 */
export function copyWithOwnOpt(
  message: Uint8Array,
  info: MessageInfo,
  dnssecOk: boolean | undefined,
  pool: { alloc(length: number): Uint8Array },
): Uint8Array {
  const edns = info.edns;
  const from = edns?.offset ?? message.length;
  const to = edns?.end ?? message.length;
  const kept = message.length - (to - from);
  const out = pool.alloc(kept + (dnssecOk === undefined ? 0 : OWN_OPT_LENGTH));
  if (message.length < 512) {
    // Short messages byte by byte: two views to copy with would cost more than the copy.
    for (let i = 0; i < from; i++) out[i] = message[i]!;
    for (let i = to, at = from; i < message.length; i++, at++) out[at] = message[i]!;
  } else {
    out.set(message.subarray(0, from));
    out.set(message.subarray(to), from);
  }
  let arcount = ((out[10]! << 8) | out[11]!) - (edns === undefined ? 0 : 1);
  if (dnssecOk !== undefined) {
    writeOwnOpt(out, kept, dnssecOk, edns?.extendedRcode ?? 0);
    arcount++;
  }
  out[10] = arcount >> 8;
  out[11] = arcount & 0xff;
  return out;
}
