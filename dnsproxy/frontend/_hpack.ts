/**
 * HPACK (RFC 7541) header block decoding for the netloop DoH server: the static table, the
 * dynamic table, and Huffman decoding by a nibble-at-a-time state machine built at load from the
 * canonical code lengths of Appendix B. Names come out as strings, values as bytes (a view valid
 * only during the callback): the DoH server parses `:path` without making a string of it.
 *
 * @module
 */

/** A header block that cannot be decoded (an HTTP/2 COMPRESSION_ERROR). */
export class HpackError extends Error {
  /**
   * @param message What is wrong.
   * @param offset Where in the header block.
   */
  constructor(message: string, readonly offset: number) {
    super(`HPACK: ${message} at offset ${offset}`);
    this.name = "HpackError";
  }
}

const encoder = new TextEncoder();
const latin1 = new TextDecoder("latin1");
const bytes = (text: string) => encoder.encode(text);

/** RFC 7541 Appendix A: the static table (index 1 to 61). */
const STATIC: readonly (readonly [string, Uint8Array])[] = ([
  [":authority", ""],
  [":method", "GET"],
  [":method", "POST"],
  [":path", "/"],
  [":path", "/index.html"],
  [":scheme", "http"],
  [":scheme", "https"],
  [":status", "200"],
  [":status", "204"],
  [":status", "206"],
  [":status", "304"],
  [":status", "400"],
  [":status", "404"],
  [":status", "500"],
  ["accept-charset", ""],
  ["accept-encoding", "gzip, deflate"],
  ["accept-language", ""],
  ["accept-ranges", ""],
  ["accept", ""],
  ["access-control-allow-origin", ""],
  ["age", ""],
  ["allow", ""],
  ["authorization", ""],
  ["cache-control", ""],
  ["content-disposition", ""],
  ["content-encoding", ""],
  ["content-language", ""],
  ["content-length", ""],
  ["content-location", ""],
  ["content-range", ""],
  ["content-type", ""],
  ["cookie", ""],
  ["date", ""],
  ["etag", ""],
  ["expect", ""],
  ["expires", ""],
  ["from", ""],
  ["host", ""],
  ["if-match", ""],
  ["if-modified-since", ""],
  ["if-none-match", ""],
  ["if-range", ""],
  ["if-unmodified-since", ""],
  ["last-modified", ""],
  ["link", ""],
  ["location", ""],
  ["max-forwards", ""],
  ["proxy-authenticate", ""],
  ["proxy-authorization", ""],
  ["range", ""],
  ["referer", ""],
  ["refresh", ""],
  ["retry-after", ""],
  ["server", ""],
  ["set-cookie", ""],
  ["strict-transport-security", ""],
  ["transfer-encoding", ""],
  ["user-agent", ""],
  ["vary", ""],
  ["via", ""],
  ["www-authenticate", ""],
] as const).map(([name, value]) => [name, bytes(value)] as const);

/**
 * RFC 7541 Appendix B: the Huffman code length of each symbol 0-256 (256 is EOS). The code is
 * canonical (codes assigned in order of length, then symbol), so the lengths are the whole code.
 */
const HUFFMAN_LENGTHS = [
  "13 23 28 28 28 28 28 28 28 24 30 28 28 30 28 28 28 28 28 28 28 28 30 28 28 28 28 28 28 28 28 28",
  "6 10 10 12 13 6 8 11 10 10 8 11 8 6 6 6 5 5 5 6 6 6 6 6 6 6 7 8 15 6 12 10",
  "13 6 7 7 7 7 7 7 7 7 7 7 7 7 7 7 7 7 7 7 7 7 7 7 8 7 8 13 19 13 14 6",
  "15 5 6 5 6 5 6 6 6 5 7 7 6 6 6 5 6 7 6 5 5 6 7 7 7 7 7 15 11 14 13 28",
  "20 22 20 20 22 22 22 23 22 23 23 23 23 23 24 23 24 24 22 23 24 23 23 23 23 21 22 23 22 23 23 24",
  "22 21 20 22 22 23 23 21 23 22 22 24 21 22 23 23 21 21 22 21 23 22 23 23 20 22 22 22 23 22 22 23",
  "26 26 20 19 22 23 22 25 26 26 26 27 27 26 24 25 19 21 26 27 27 26 27 24 21 21 26 26 28 27 27 27",
  "20 24 20 21 22 21 21 23 22 22 25 25 24 24 26 23 26 27 26 26 27 27 27 27 27 28 27 27 27 27 27 26",
  "30",
].join(" ").split(" ").map(Number);

/** Per (state, nibble): the next state. */
const HUFF_NEXT = new Uint16Array(256 * 16);
/** Per (state, nibble): the symbol emitted, -1 for none, -2 for an error (EOS in the string). */
const HUFF_EMIT = new Int16Array(256 * 16);
/** Per state: whether a string may end there (at most 7 bits of EOS's leading ones). */
const HUFF_ACCEPT = new Uint8Array(256);

/** Builds the tree from the canonical code, then the state machine over its internal nodes. */
function buildHuffman(): void {
  // children[2 * node + bit]: an internal node (>= 0) or a symbol leaf (-1 - symbol).
  const children: number[] = [-0x10000, -0x10000];
  const symbols = [...HUFFMAN_LENGTHS.keys()].sort((a, b) =>
    HUFFMAN_LENGTHS[a]! - HUFFMAN_LENGTHS[b]! || a - b
  );
  let code = 0;
  let previous = HUFFMAN_LENGTHS[symbols[0]!]!;
  for (const [i, symbol] of symbols.entries()) {
    const length = HUFFMAN_LENGTHS[symbol]!;
    if (i > 0) code = (code + 1) * 2 ** (length - previous);
    previous = length;
    let node = 0;
    for (let bit = length - 1; bit >= 0; bit--) {
      const b = Math.floor(code / 2 ** bit) & 1;
      if (bit === 0) {
        children[2 * node + b] = -1 - symbol;
      } else {
        let next = children[2 * node + b]!;
        if (next === -0x10000) {
          next = children.length / 2;
          children.push(-0x10000, -0x10000);
          children[2 * node + b] = next;
        }
        node = next;
      }
    }
  }
  // Accepting states: reached from the root by ones only, at most 7 deep.
  HUFF_ACCEPT[0] = 1;
  for (let node = 0, depth = 0; depth < 7; depth++) {
    node = children[2 * node + 1]!;
    HUFF_ACCEPT[node] = 1;
  }
  for (let state = 0; state < 256; state++) {
    for (let nibble = 0; nibble < 16; nibble++) {
      let node = state;
      let emit = -1;
      for (let bit = 3; bit >= 0; bit--) {
        const next = children[2 * node + ((nibble >> bit) & 1)]!;
        if (next >= 0) {
          node = next;
        } else {
          const symbol = -1 - next;
          emit = symbol === 256 ? -2 : symbol;
          node = 0;
          if (emit === -2) break;
        }
      }
      HUFF_NEXT[state * 16 + nibble] = node;
      HUFF_EMIT[state * 16 + nibble] = emit;
    }
  }
}
buildHuffman();

/**
 * Decodes a Huffman-coded string (RFC 7541 §5.2).
 *
 * @param input The bytes.
 * @param out Where to write; at least `input.length * 8 / 5` long.
 * @returns The decoded length, or -1 for a bad string (EOS inside, or bad padding).
 */
export function huffmanDecode(input: Uint8Array, out: Uint8Array): number {
  let state = 0;
  let n = 0;
  for (let i = 0; i < input.length; i++) {
    const byte = input[i]!;
    let index = state * 16 + (byte >> 4);
    let emit = HUFF_EMIT[index]!;
    if (emit !== -1) {
      if (emit === -2) return -1;
      out[n++] = emit;
    }
    state = HUFF_NEXT[index]!;
    index = state * 16 + (byte & 15);
    emit = HUFF_EMIT[index]!;
    if (emit !== -1) {
      if (emit === -2) return -1;
      out[n++] = emit;
    }
    state = HUFF_NEXT[index]!;
  }
  return HUFF_ACCEPT[state] === 1 ? n : -1;
}

/** Receives each decoded header; `value` is valid only during the call. */
export type HeaderSink<C> = (name: string, value: Uint8Array, context: C) => void;

/** The HPACK decoding state of one connection (its dynamic table). */
export class HpackDecoder {
  /** Dynamic table, newest first. */
  #names: string[] = [];
  #values: Uint8Array[] = [];
  #size = 0;
  #maxSize: number;
  #limit: number;
  #scratch = new Uint8Array(4096);
  #pos = 0;

  /** @param limit The dynamic table size this side advertised (SETTINGS_HEADER_TABLE_SIZE). */
  constructor(limit = 4096) {
    this.#limit = limit;
    this.#maxSize = limit;
  }

  /**
   * Decodes one complete header block.
   *
   * @param block The block (HEADERS and CONTINUATION fragments joined).
   * @param sink Receives every header, in order.
   * @param context Passed to the sink.
   * @throws {HpackError} When the block is malformed.
   */
  decode<C>(block: Uint8Array, sink: HeaderSink<C>, context: C): void {
    this.#pos = 0;
    while (this.#pos < block.length) {
      const first = block[this.#pos]!;
      if (first & 0x80) {
        const index = this.#integer(block, 7);
        if (index === 0) throw new HpackError("index 0", this.#pos);
        if (index <= 61) {
          const entry = STATIC[index - 1]!;
          sink(entry[0], entry[1], context);
        } else {
          const at = index - 62;
          if (at >= this.#names.length) throw new HpackError(`no entry ${index}`, this.#pos);
          sink(this.#names[at]!, this.#values[at]!, context);
        }
      } else if ((first & 0xe0) === 0x20) {
        const size = this.#integer(block, 5);
        if (size > this.#limit) {
          throw new HpackError(`table size ${size} over ${this.#limit}`, this.#pos);
        }
        this.#maxSize = size;
        this.#evict(0);
      } else {
        const indexing = (first & 0xc0) === 0x40;
        const index = this.#integer(block, indexing ? 6 : 4);
        let name: string;
        if (index === 0) {
          name = latin1.decode(this.#string(block));
        } else if (index <= 61) {
          name = STATIC[index - 1]![0];
        } else {
          const at = index - 62;
          if (at >= this.#names.length) throw new HpackError(`no entry ${index}`, this.#pos);
          name = this.#names[at]!;
        }
        const value = this.#string(block);
        if (indexing) {
          const kept = value.slice();
          sink(name, kept, context);
          this.#insert(name, kept);
        } else {
          sink(name, value, context);
        }
      }
    }
  }

  #insert(name: string, value: Uint8Array): void {
    const size = name.length + value.length + 32;
    if (size > this.#maxSize) {
      this.#names.length = 0;
      this.#values.length = 0;
      this.#size = 0;
      return;
    }
    this.#evict(size);
    this.#names.unshift(name);
    this.#values.unshift(value);
    this.#size += size;
  }

  /** Drops the oldest entries until `room` more fits. */
  #evict(room: number): void {
    while (this.#size + room > this.#maxSize && this.#names.length > 0) {
      const name = this.#names.pop()!;
      const value = this.#values.pop()!;
      this.#size -= name.length + value.length + 32;
    }
  }

  /** An integer with an N-bit prefix (RFC 7541 §5.1). */
  #integer(block: Uint8Array, bits: number): number {
    const mask = (1 << bits) - 1;
    let value = block[this.#pos++]! & mask;
    if (value < mask) return value;
    for (let shift = 0; shift < 28; shift += 7) {
      if (this.#pos >= block.length) throw new HpackError("integer cut off", this.#pos);
      const byte = block[this.#pos++]!;
      value += (byte & 0x7f) * 2 ** shift;
      if ((byte & 0x80) === 0) return value;
    }
    throw new HpackError("integer too long", this.#pos);
  }

  /** A string literal (§5.2): a view into the block, or into the scratch buffer when Huffman. */
  #string(block: Uint8Array): Uint8Array {
    if (this.#pos >= block.length) throw new HpackError("string cut off", this.#pos);
    const huffman = (block[this.#pos]! & 0x80) !== 0;
    const length = this.#integer(block, 7);
    const start = this.#pos;
    if (start + length > block.length) throw new HpackError("string cut off", start);
    this.#pos += length;
    const raw = block.subarray(start, start + length);
    if (!huffman) return raw;
    const need = Math.ceil(length * 8 / 5);
    if (this.#scratch.length < need) this.#scratch = new Uint8Array(need * 2);
    const n = huffmanDecode(raw, this.#scratch);
    if (n < 0) throw new HpackError("bad Huffman string", start);
    return this.#scratch.subarray(0, n);
  }
}
