/**
 * `struct sockaddr_in` / `sockaddr_in6` encoding for the FFI backends.
 *
 * @module
 */
import { ipFromBytes, ipToBytes, type SocketAddress } from "@triad/core";

/** AF_INET. */
export const AF_INET = 2;
/** AF_INET6. */
export const AF_INET6 = 10;
/** The size of the largest sockaddr netloop handles (sockaddr_in6). */
export const SOCKADDR_MAX = 28;

/**
 * Writes a socket address as a sockaddr into `into` (at least 28 bytes).
 *
 * @param address The address.
 * @param into Where to write it.
 * @returns The sockaddr length (16 or 28).
 */
export function encodeSockaddr(address: SocketAddress, into: Uint8Array): number {
  const ip = ipToBytes(address.address.replace(/%.*$/, ""));
  into.fill(0, 0, SOCKADDR_MAX);
  const view = new DataView(into.buffer, into.byteOffset, into.byteLength);
  if (ip.length === 4) {
    view.setUint16(0, AF_INET, true);
    view.setUint16(2, address.port, false);
    into.set(ip, 4);
    return 16;
  }
  view.setUint16(0, AF_INET6, true);
  view.setUint16(2, address.port, false);
  into.set(ip, 8);
  return 28;
}

/**
 * Reads a sockaddr.
 *
 * @param bytes The sockaddr bytes.
 * @returns The address (an unknown family reads as `0.0.0.0:0`).
 */
export function decodeSockaddr(bytes: Uint8Array): SocketAddress {
  const family = bytes[0]! | (bytes[1]! << 8);
  const port = (bytes[2]! << 8) | bytes[3]!;
  if (family === AF_INET6) {
    return { family: 6, address: ipFromBytes(bytes.slice(8, 24)), port };
  }
  if (family === AF_INET) return { family: 4, address: ipFromBytes(bytes.slice(4, 8)), port };
  return { family: 4, address: "0.0.0.0", port: 0 };
}
