/**
 * DNS numbers the proxy uses: header flags, response codes, record types and classes.
 *
 * @module
 */

/** Response codes (RFC 1035 §4.1.1, RFC 6891 for the extended ones). */
export const Rcode = {
  NOERROR: 0,
  FORMERR: 1,
  SERVFAIL: 2,
  NXDOMAIN: 3,
  NOTIMP: 4,
  REFUSED: 5,
  BADVERS: 16,
} as const;

/** Record types the proxy treats specially, plus the common ones named in metrics. */
export const RrType = {
  A: 1,
  NS: 2,
  CNAME: 5,
  SOA: 6,
  PTR: 12,
  HINFO: 13,
  MX: 15,
  TXT: 16,
  AAAA: 28,
  SRV: 33,
  DNAME: 39,
  OPT: 41,
  DS: 43,
  RRSIG: 46,
  NSEC: 47,
  DNSKEY: 48,
  SVCB: 64,
  HTTPS: 65,
  ANY: 255,
} as const;

/** The Internet class. */
export const CLASS_IN = 1;

/** The UDP payload size advertised and clamped to (DNS flag day 2020). */
export const EDNS_UDP_SIZE = 1232;

/** The largest answer a client without EDNS accepts over UDP (RFC 1035 §4.2.1). */
export const CLASSIC_UDP_SIZE = 512;

/** Header flag bits in the 16-bit flags word. */
export const Flag = {
  QR: 0x8000,
  AA: 0x0400,
  TC: 0x0200,
  RD: 0x0100,
  RA: 0x0080,
  AD: 0x0020,
  CD: 0x0010,
} as const;

const TYPE_NAMES = new Map<number, string>(
  Object.entries(RrType).map(([name, value]) => [value, name]),
);

/**
 * Names a record type for metrics and logs: its mnemonic when known, `TYPE<n>` otherwise.
 *
 * @param type The record type number.
 * @returns The mnemonic, such as `"AAAA"`.
 *
 * @example
 * ```ts
 * import { typeName } from "@triad/dnsproxy";
 * import assert from "node:assert/strict";
 *
 * assert.equal(typeName(28), "AAAA");
 * assert.equal(typeName(999), "TYPE999");
 * ```
 */
export function typeName(type: number): string {
  return TYPE_NAMES.get(type) ?? `TYPE${type}`;
}

const RCODE_NAMES = new Map<number, string>(
  Object.entries(Rcode).map(([name, value]) => [value, name]),
);

/**
 * Names a response code: `NOERROR`, `SERVFAIL`, ... or `RCODE<n>`.
 *
 * @param rcode The response code.
 * @returns The mnemonic.
 *
 * @example
 * ```ts
 * import { rcodeName } from "@triad/dnsproxy";
 * import assert from "node:assert/strict";
 *
 * assert.equal(rcodeName(3), "NXDOMAIN");
 * ```
 */
export function rcodeName(rcode: number): string {
  return RCODE_NAMES.get(rcode) ?? `RCODE${rcode}`;
}
