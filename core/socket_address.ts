/**
 * IPv4/IPv6 socket addresses: parse `1.2.3.4:53` and `[::1]:53`, format them back, and convert IP
 * addresses to and from their network-order bytes (as kernels and wire formats carry them).
 *
 * @module
 */
import { TriadError } from "./error.ts";

/** An IP address family: 4 or 6. */
export type IpFamily = 4 | 6;

/** An IP address and port. `address` is in canonical text form (RFC 5952 for IPv6). */
export interface SocketAddress {
  /** 4 for IPv4, 6 for IPv6. */
  readonly family: IpFamily;
  /** The address in canonical text form, without brackets (`"::1"`, `"10.0.0.1"`). */
  readonly address: string;
  /** The port, 0 to 65535. */
  readonly port: number;
}

/** Options for {@linkcode parseSocketAddress}. */
export interface ParseSocketAddressOptions {
  /** The port to use when the text has none (`"10.0.0.1"`, `"::1"`). Without it a port is required. */
  defaultPort?: number;
}

function fail(text: string, why: string): never {
  throw new TriadError(`Invalid socket address "${text}": ${why}`, { code: "bad_address" });
}

function parseIpv4(text: string): Uint8Array | undefined {
  const parts = text.split(".");
  if (parts.length !== 4) return undefined;
  const bytes = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    const part = parts[i]!;
    if (!/^\d{1,3}$/.test(part) || (part.length > 1 && part[0] === "0")) return undefined;
    const value = Number(part);
    if (value > 255) return undefined;
    bytes[i] = value;
  }
  return bytes;
}

function parseIpv6(text: string): Uint8Array | undefined {
  const zoneAt = text.indexOf("%");
  const body = zoneAt === -1 ? text : text.slice(0, zoneAt);
  if (zoneAt !== -1 && !/^[\w.-]+$/.test(text.slice(zoneAt + 1))) return undefined;
  const halves = body.split("::");
  if (halves.length > 2) return undefined;
  const groups = (half: string): number[] | undefined => {
    if (half === "") return [];
    const out: number[] = [];
    const pieces = half.split(":");
    for (let i = 0; i < pieces.length; i++) {
      const piece = pieces[i]!;
      if (i === pieces.length - 1 && piece.includes(".")) {
        const v4 = parseIpv4(piece);
        if (v4 === undefined) return undefined;
        out.push((v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!);
      } else if (/^[0-9a-fA-F]{1,4}$/.test(piece)) {
        out.push(parseInt(piece, 16));
      } else {
        return undefined;
      }
    }
    return out;
  };
  const head = groups(halves[0]!);
  const tail = halves.length === 2 ? groups(halves[1]!) : [];
  if (head === undefined || tail === undefined) return undefined;
  const missing = 8 - head.length - tail.length;
  if (halves.length === 1 ? missing !== 0 : missing < 1) return undefined;
  const all = [...head, ...new Array<number>(halves.length === 2 ? missing : 0).fill(0), ...tail];
  const bytes = new Uint8Array(16);
  all.forEach((group, i) => {
    bytes[i * 2] = group >> 8;
    bytes[i * 2 + 1] = group & 0xff;
  });
  return bytes;
}

/**
 * Converts an IP address in text form to its network-order bytes (4 for IPv4, 16 for IPv6).
 *
 * @param address An IPv4 or IPv6 address, without brackets or port.
 * @returns The address bytes, in network order.
 * @throws {TriadError} With code `bad_address` when the text is not an IP address.
 *
 * @example
 * ```ts
 * import { ipToBytes } from "@triad/core";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(ipToBytes("127.0.0.1"), new Uint8Array([127, 0, 0, 1]));
 * assert.equal(ipToBytes("::1").length, 16);
 * ```
 */
export function ipToBytes(address: string): Uint8Array {
  const bytes = address.includes(":") ? parseIpv6(address) : parseIpv4(address);
  if (bytes === undefined) {
    throw new TriadError(`Invalid IP address "${address}"`, { code: "bad_address" });
  }
  return bytes;
}

/**
 * Formats network-order address bytes as text: dotted quad for 4 bytes, RFC 5952 for 16 bytes
 * (lower case, the longest run of two or more zero groups compressed, IPv4-mapped as `::ffff:a.b.c.d`).
 *
 * @param bytes 4 or 16 bytes in network order.
 * @returns The canonical text form.
 *
 * @example
 * ```ts
 * import { ipFromBytes } from "@triad/core";
 * import assert from "node:assert/strict";
 *
 * assert.equal(ipFromBytes(new Uint8Array([10, 0, 0, 1])), "10.0.0.1");
 * assert.equal(ipFromBytes(new Uint8Array(16).fill(0, 0, 15).fill(1, 15)), "::1");
 * ```
 */
export function ipFromBytes(bytes: Uint8Array): string {
  if (bytes.length === 4) return `${bytes[0]}.${bytes[1]}.${bytes[2]}.${bytes[3]}`;
  if (bytes.length !== 16) {
    throw new TriadError(`Cannot format an IP address of ${bytes.length} bytes: expected 4 or 16`, {
      code: "bad_address",
    });
  }
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((bytes[i]! << 8) | bytes[i + 1]!);
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) {
    return `::ffff:${bytes[12]}.${bytes[13]}.${bytes[14]}.${bytes[15]}`;
  }
  let bestAt = -1;
  let bestLength = 1;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let end = i;
    while (end < 8 && groups[end] === 0) end++;
    if (end - i > bestLength) {
      bestAt = i;
      bestLength = end - i;
    }
    i = end;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestAt === -1) return hex.join(":");
  return `${hex.slice(0, bestAt).join(":")}::${hex.slice(bestAt + bestLength).join(":")}`;
}

/**
 * Tells whether text is an IPv4 or IPv6 address.
 *
 * @param text The text to test.
 * @returns 4, 6, or `undefined` when it is neither.
 *
 * @example
 * ```ts
 * import { ipFamily } from "@triad/core";
 * import assert from "node:assert/strict";
 *
 * assert.equal(ipFamily("::1"), 6);
 * assert.equal(ipFamily("example.org"), undefined);
 * ```
 */
export function ipFamily(text: string): IpFamily | undefined {
  if (text.includes(":")) return parseIpv6(text) === undefined ? undefined : 6;
  return parseIpv4(text) === undefined ? undefined : 4;
}

function canonical(address: string, family: IpFamily): string {
  const zoneAt = address.indexOf("%");
  const zone = family === 6 && zoneAt !== -1 ? address.slice(zoneAt) : "";
  return ipFromBytes(ipToBytes(address)) + zone;
}

/**
 * Parses `1.2.3.4:53` or `[::1]:53` (or a bare address with `defaultPort`) into a
 * {@linkcode SocketAddress} with the address in canonical form.
 *
 * @param text The address and port.
 * @param options A default port for text without one.
 * @returns The parsed address.
 * @throws {TriadError} With code `bad_address`, naming the input and what is wrong with it.
 *
 * @example
 * ```ts
 * import { parseSocketAddress } from "@triad/core";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(parseSocketAddress("[::1]:53"), { family: 6, address: "::1", port: 53 });
 * assert.deepEqual(parseSocketAddress("127.0.0.1", { defaultPort: 53 }), {
 *   family: 4,
 *   address: "127.0.0.1",
 *   port: 53,
 * });
 * ```
 */
export function parseSocketAddress(
  text: string,
  options: ParseSocketAddressOptions = {},
): SocketAddress {
  let host: string;
  let portText: string | undefined;
  if (text.startsWith("[")) {
    const close = text.indexOf("]");
    if (close === -1) fail(text, 'missing "]" after the IPv6 address');
    host = text.slice(1, close);
    const rest = text.slice(close + 1);
    if (rest !== "") {
      if (!rest.startsWith(":")) fail(text, `unexpected "${rest}" after "]"`);
      portText = rest.slice(1);
    }
    if (ipFamily(host) !== 6) fail(text, `"${host}" is not an IPv6 address`);
  } else {
    const colons = text.split(":").length - 1;
    if (colons > 1) {
      host = text; // a bare IPv6 address; a port needs brackets
      if (ipFamily(host) !== 6) {
        fail(text, 'not an IPv6 address (write an IPv6 address with a port as "[::1]:53")');
      }
    } else {
      host = colons === 1 ? text.slice(0, text.indexOf(":")) : text;
      portText = colons === 1 ? text.slice(text.indexOf(":") + 1) : undefined;
      if (host === "") fail(text, "the address is missing");
      if (ipFamily(host) !== 4) fail(text, `"${host}" is not an IPv4 address`);
    }
  }
  let port: number;
  if (portText === undefined) {
    if (options.defaultPort === undefined) fail(text, "the port is missing");
    port = options.defaultPort;
  } else {
    if (!/^\d{1,5}$/.test(portText)) fail(text, `port "${portText}" is not a number`);
    port = Number(portText);
    if (port > 65535) fail(text, `port ${port} is out of range (0 to 65535)`);
  }
  const family: IpFamily = host.includes(":") ? 6 : 4;
  return { family, address: canonical(host, family), port };
}

/**
 * Formats a socket address as `1.2.3.4:53` or `[::1]:53`.
 *
 * @param address The address to format.
 * @returns The address and port as text.
 *
 * @example
 * ```ts
 * import { formatSocketAddress } from "@triad/core";
 * import assert from "node:assert/strict";
 *
 * assert.equal(formatSocketAddress({ family: 6, address: "::1", port: 53 }), "[::1]:53");
 * ```
 */
export function formatSocketAddress(address: SocketAddress): string {
  return address.family === 6
    ? `[${address.address}]:${address.port}`
    : `${address.address}:${address.port}`;
}
