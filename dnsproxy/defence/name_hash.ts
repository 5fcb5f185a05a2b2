/**
 * The hash the kernel filter matches blocked names by: FNV-1a (64-bit) of each wire-format label
 * (its length byte, then its bytes lower-cased), folded from the rightmost label, so that
 * `example.com` matches `example.com` and every name under it (`a.example.com`) — a suffix match
 * on label boundaries (`badexample.com` does not match). `dnsfilter.bpf.c` computes the same.
 *
 * @module
 */

const FNV_OFFSET = 0xcbf29ce484222325n;
const FNV_PRIME = 0x100000001b3n;
const MASK = (1n << 64n) - 1n;

/**
 * Splits a name given as text into lower-cased labels, checking the limits of RFC 1035.
 *
 * @param name Such as `example.com` or `example.com.`.
 * @returns The labels, leftmost first.
 * @throws {RangeError} Naming the name when a label is empty or longer than 63 bytes, or the
 *   name longer than 255 bytes.
 */
export function nameLabels(name: string): string[] {
  const trimmed = name.endsWith(".") ? name.slice(0, -1) : name;
  if (trimmed === "") return [];
  const labels = trimmed.toLowerCase().split(".");
  let length = 1;
  for (const label of labels) {
    const bytes = new TextEncoder().encode(label).length;
    if (bytes === 0 || bytes > 63) {
      throw new RangeError(`Blocked name "${name}": each label must be 1 to 63 bytes`);
    }
    length += bytes + 1;
  }
  if (length > 255) throw new RangeError(`Blocked name "${name}" is longer than 255 bytes`);
  return labels;
}

function labelHash(label: Uint8Array): bigint {
  let hash = ((FNV_OFFSET ^ BigInt(label.length)) * FNV_PRIME) & MASK;
  for (const byte of label) {
    const c = byte >= 0x41 && byte <= 0x5a ? byte + 32 : byte;
    hash = ((hash ^ BigInt(c)) * FNV_PRIME) & MASK;
  }
  return hash;
}

/**
 * The kernel filter's key for a blocked name (and every name under it).
 *
 * @param name The name as text.
 * @returns The 64-bit hash.
 *
 * @example
 * ```ts
 * import { nameHash } from "./name_hash.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(nameHash("Example.COM."), nameHash("example.com"));
 * assert.notEqual(nameHash("example.com"), nameHash("example.org"));
 * ```
 */
export function nameHash(name: string): bigint {
  let hash = FNV_OFFSET;
  for (const label of nameLabels(name).reverse()) {
    hash = ((hash ^ labelHash(new TextEncoder().encode(label))) * FNV_PRIME) & MASK;
  }
  return hash;
}
