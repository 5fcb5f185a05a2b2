/**
 * The TTL field of a resource record, as the parser and the cache read it.
 *
 * @module
 */

/**
 * Reads the 32-bit TTL at `at`; a TTL with the top bit set is read as zero (RFC 2181 §8).
 *
 * @param bytes The message.
 * @param at Offset of the TTL field (4 bytes, checked by the caller).
 * @returns The TTL in seconds.
 */
export function readTtl(bytes: Uint8Array, at: number): number {
  const ttl = ((bytes[at]! << 24) | (bytes[at + 1]! << 16) | (bytes[at + 2]! << 8) |
    bytes[at + 3]!) >>> 0;
  return ttl > 0x7fffffff ? 0 : ttl;
}
