/**
 * Client access control by address prefix.
 *
 * @module
 */
import { ipToBytes, TriadError } from "@triad/core";

/** Loopback and private ranges: the default, so the proxy is never an open resolver. */
export const DEFAULT_ALLOW: readonly string[] = [
  "127.0.0.0/8",
  "10.0.0.0/8",
  "172.16.0.0/12",
  "192.168.0.0/16",
  "169.254.0.0/16",
  "100.64.0.0/10",
  "::1/128",
  "fc00::/7",
  "fe80::/10",
];

interface Prefix {
  bytes: Uint8Array;
  bits: number;
}

function parsePrefix(text: string): Prefix {
  const [address = "", bitsText] = text.trim().split("/");
  let bytes: Uint8Array;
  try {
    bytes = ipToBytes(address);
  } catch (cause) {
    throw new TriadError(`Invalid ACL entry "${text}": "${address}" is not an IP address`, {
      code: "bad_acl",
      cause,
    });
  }
  const max = bytes.length * 8;
  const bits = bitsText === undefined ? max : Number(bitsText);
  if (!Number.isInteger(bits) || bits < 0 || bits > max || !/^\d*$/.test(bitsText ?? "")) {
    throw new TriadError(`Invalid ACL entry "${text}": prefix length must be 0 to ${max}`, {
      code: "bad_acl",
    });
  }
  return { bytes, bits };
}

function contains(prefix: Prefix, address: Uint8Array): boolean {
  if (prefix.bytes.length !== address.length) return false;
  let bits = prefix.bits;
  for (let i = 0; bits > 0; i++, bits -= 8) {
    const mask = bits >= 8 ? 0xff : (0xff << (8 - bits)) & 0xff;
    if ((prefix.bytes[i]! & mask) !== (address[i]! & mask)) return false;
  }
  return true;
}

/**
 * An allow/deny list of CIDR prefixes. A client is allowed when it matches an `allow` prefix and no
 * `deny` prefix. IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`) are checked as IPv4. Decisions are
 * cached per address.
 *
 * @example
 * ```ts
 * import { Acl } from "@triad/dnsproxy";
 * import assert from "node:assert/strict";
 *
 * const acl = new Acl();
 * assert.equal(acl.allows("127.0.0.1"), true);
 * assert.equal(acl.allows("192.168.1.20"), true);
 * assert.equal(acl.allows("8.8.8.8"), false);
 * assert.equal(new Acl({ allow: ["0.0.0.0/0"], deny: ["10.1.0.0/16"] }).allows("10.1.2.3"), false);
 * ```
 */
export class Acl {
  #allow: Prefix[];
  #deny: Prefix[];
  #decisions = new Map<string, boolean>();

  /**
   * Creates the list.
   *
   * @param options `allow` (default: loopback and private ranges) and `deny` prefixes.
   * @throws {TriadError} With code `bad_acl` naming a bad entry.
   */
  constructor(options: { allow?: readonly string[]; deny?: readonly string[] } = {}) {
    this.#allow = (options.allow ?? DEFAULT_ALLOW).map(parsePrefix);
    this.#deny = (options.deny ?? []).map(parsePrefix);
  }

  /**
   * Tells whether a client may query.
   *
   * @param address The client's IP address as text.
   * @returns `true` when allowed.
   */
  allows(address: string): boolean {
    const known = this.#decisions.get(address);
    if (known !== undefined) return known;
    let decision = false;
    try {
      let bytes = ipToBytes(address);
      if (
        bytes.length === 16 && bytes.subarray(0, 10).every((b) => b === 0) &&
        bytes[10] === 0xff && bytes[11] === 0xff
      ) {
        bytes = bytes.slice(12);
      }
      decision = this.#allow.some((p) => contains(p, bytes)) &&
        !this.#deny.some((p) => contains(p, bytes));
    } catch {
      decision = false;
    }
    if (this.#decisions.size > 65_536) this.#decisions.clear();
    this.#decisions.set(address, decision);
    return decision;
  }
}
