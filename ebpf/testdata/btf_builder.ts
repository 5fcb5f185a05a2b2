/**
 * Builds small raw BTF blobs for unit tests (not published).
 *
 * @module
 */

/** Accumulates types and strings, then encodes raw BTF. */
export class BtfBuilder {
  #strings: number[];
  #types: number[] = [];
  #count: number;
  readonly #stringBase: number;

  /**
   * Starts BTF, or split BTF on top of a base with `baseTypes` types (void excluded) and
   * `baseStrings` bytes of strings.
   */
  constructor(split?: { baseTypes: number; baseStrings: number }) {
    this.#count = split?.baseTypes ?? 0;
    this.#stringBase = split?.baseStrings ?? 0;
    this.#strings = split === undefined ? [0] : [];
  }

  /** Adds a string, returning its offset. */
  str(text: string): number {
    if (text === "") return 0;
    const offset = this.#stringBase + this.#strings.length;
    this.#strings.push(...new TextEncoder().encode(text), 0);
    return offset;
  }

  #type(
    name: string,
    kind: number,
    vlen: number,
    kindFlag: boolean,
    sizeOrType: number,
    extra: number[],
  ): number {
    this.#types.push(
      this.str(name),
      (kindFlag ? 1 << 31 : 0) | (kind << 24) | vlen,
      sizeOrType,
      ...extra,
    );
    return ++this.#count;
  }

  /** Adds an integer type. */
  int(name: string, size: number, signed = false, bool = false): number {
    const encoding = (signed ? 1 : 0) | (bool ? 4 : 0);
    return this.#type(name, 1, 0, false, size, [(encoding << 24) | (size * 8)]);
  }

  /** Adds a pointer. */
  ptr(type: number): number {
    return this.#type("", 2, 0, false, type, []);
  }

  /** Adds an array. */
  array(type: number, indexType: number, length: number): number {
    return this.#type("", 3, 0, false, 0, [type, indexType, length]);
  }

  /** Adds a struct; members with `bits` make it a bit-field struct (kind_flag). */
  struct(
    name: string,
    size: number,
    members: { name: string; type: number; bitOffset: number; bits?: number }[],
    union = false,
  ): number {
    const kindFlag = members.some((m) => m.bits !== undefined);
    const extra = members.flatMap((m) => [
      this.str(m.name),
      m.type,
      kindFlag ? ((m.bits ?? 0) << 24) | m.bitOffset : m.bitOffset,
    ]);
    return this.#type(name, union ? 5 : 4, members.length, kindFlag, size, extra);
  }

  /** Adds an enum. */
  enum(name: string, values: [string, number][], signed = false): number {
    return this.#type(
      name,
      6,
      values.length,
      signed,
      4,
      values.flatMap(([n, v]) => [this.str(n), v >>> 0]),
    );
  }

  /** Adds a typedef. */
  typedef(name: string, type: number): number {
    return this.#type(name, 8, 0, false, type, []);
  }

  /** Adds a const modifier. */
  const(type: number): number {
    return this.#type("", 10, 0, false, type, []);
  }

  /** Encodes the BTF. */
  build(): Uint8Array {
    const types = new Uint8Array(new Uint32Array(this.#types).buffer);
    const strings = Uint8Array.from(this.#strings);
    const out = new Uint8Array(24 + types.length + strings.length);
    const view = new DataView(out.buffer);
    view.setUint16(0, 0xeb9f, true);
    out[2] = 1;
    view.setUint32(4, 24, true);
    view.setUint32(8, 0, true);
    view.setUint32(12, types.length, true);
    view.setUint32(16, types.length, true);
    view.setUint32(20, strings.length, true);
    out.set(types, 24);
    out.set(strings, 24 + types.length);
    return out;
  }
}
