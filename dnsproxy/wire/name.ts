/**
 * Domain names in wire form (RFC 1035 §3.1, §4.1.4), read strictly per RFC 9267.
 *
 * @module
 */
import { WireError } from "./wire_error.ts";

/** Longest name in wire form, length bytes and root included (RFC 1035 §2.3.4). */
const MAX_NAME_LENGTH = 255;
/** Longest label (RFC 1035 §2.3.4). */
const MAX_LABEL_LENGTH = 63;

/**
 * Skips over a possibly compressed name, checking it strictly (RFC 9267): every compression
 * pointer must point strictly before the start of the label run that holds it (so no loops and no
 * forward pointers), inside the packet; labels are at most 63 bytes; the whole name at most 255
 * bytes; the reserved label types 0b01 and 0b10 are rejected.
 *
 * @param packet The whole message.
 * @param start Where the name starts.
 * @param end Where the region holding the name ends (the packet end, or an RDATA end).
 * @returns The offset just after the name as it sits at `start` (after its first pointer, if any).
 * @throws {WireError} Naming the offset of the bad label or pointer.
 *
 * @example
 * ```ts
 * import { skipName } from "./name.ts";
 * import assert from "node:assert/strict";
 *
 * // A header, then "com." at 12 and "a" + a pointer back to 12 at 17.
 * const packet = new Uint8Array([...new Array(12).fill(0), 3, 99, 111, 109, 0, 1, 97, 0xc0, 12]);
 * assert.equal(skipName(packet, 12, packet.length), 17);
 * assert.equal(skipName(packet, 17, packet.length), 21);
 * // A pointer to itself loops: rejected.
 * const loop = new Uint8Array([...new Array(12).fill(0), 0xc0, 12]);
 * assert.throws(() => skipName(loop, 12, loop.length), /offset 12: pointer loop/);
 * ```
 */
export function skipName(packet: Uint8Array, start: number, end: number): number {
  let pos = start;
  let segmentStart = start;
  let after = -1;
  let length = 1;
  for (;;) {
    if (pos >= end) throw new WireError(pos, "name runs past the end");
    const byte = packet[pos]!;
    const kind = byte & 0xc0;
    if (kind === 0) {
      if (byte === 0) return after === -1 ? pos + 1 : after;
      length += byte + 1;
      if (length > MAX_NAME_LENGTH) throw new WireError(pos, "name longer than 255 bytes");
      pos += byte + 1;
      continue;
    }
    if (kind !== 0xc0) throw new WireError(pos, `reserved label type 0x${byte.toString(16)}`);
    if (pos + 1 >= end) throw new WireError(pos, "compression pointer runs past the end");
    const target = ((byte & 0x3f) << 8) | packet[pos + 1]!;
    if (after === -1) after = pos + 2;
    if (target >= packet.length) throw new WireError(pos, `pointer to ${target} past the end`);
    if (target < 12) throw new WireError(pos, `pointer to ${target} inside the header`);
    if (target >= segmentStart) {
      throw new WireError(
        pos,
        target <= pos ? "pointer loop" : "forward compression pointer",
      );
    }
    pos = target;
    segmentStart = target;
  }
}

/**
 * Reads a name as dotted text (lower case kept as sent; bytes outside `[!-~]` and `.` `\\` are
 * escaped as `\DDD`), for logs. The name must already have passed {@linkcode skipName}.
 *
 * @param packet The whole message.
 * @param start Where the name starts.
 * @returns The name, `"."` for the root.
 *
 * @example
 * ```ts
 * import { nameToText } from "@triad/dnsproxy";
 * import assert from "node:assert/strict";
 *
 * assert.equal(nameToText(new Uint8Array([3, 119, 119, 119, 0]), 0), "www.");
 * ```
 */
export function nameToText(packet: Uint8Array, start: number): string {
  let out = "";
  let pos = start;
  for (let jumps = 0; jumps < 128 && pos < packet.length; jumps++) {
    const byte = packet[pos]!;
    if (byte === 0) break;
    if ((byte & 0xc0) === 0xc0) {
      pos = ((byte & 0x3f) << 8) | (packet[pos + 1] ?? 0);
      continue;
    }
    for (let i = pos + 1; i <= pos + byte && i < packet.length; i++) {
      const c = packet[i]!;
      if (c === 0x2e || c === 0x5c) out += "\\" + String.fromCharCode(c);
      else if (c > 0x20 && c < 0x7f) out += String.fromCharCode(c);
      else out += "\\" + String(c).padStart(3, "0");
    }
    out += ".";
    pos += byte + 1;
  }
  return out === "" ? "." : out;
}

/**
 * Encodes dotted text (`"www.example.com"`, trailing dot optional) as an uncompressed wire name.
 *
 * @param text The name.
 * @returns The name in wire form.
 * @throws {WireError} When a label is empty or longer than 63 bytes or the name longer than 255.
 *
 * @example
 * ```ts
 * import { encodeName } from "@triad/dnsproxy";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(encodeName("a.b."), new Uint8Array([1, 97, 1, 98, 0]));
 * assert.deepEqual(encodeName("."), new Uint8Array([0]));
 * ```
 */
export function encodeName(text: string): Uint8Array {
  const trimmed = text.endsWith(".") ? text.slice(0, -1) : text;
  const labels = trimmed === "" ? [] : trimmed.split(".");
  const bytes: number[] = [];
  for (const label of labels) {
    const encoded = new TextEncoder().encode(label);
    if (encoded.length === 0 || encoded.length > MAX_LABEL_LENGTH) {
      throw new WireError(bytes.length, `label "${label}" must be 1 to 63 bytes`);
    }
    bytes.push(encoded.length, ...encoded);
  }
  bytes.push(0);
  if (bytes.length > MAX_NAME_LENGTH) throw new WireError(0, "name longer than 255 bytes");
  return new Uint8Array(bytes);
}
