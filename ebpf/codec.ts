/**
 * Codecs turn map keys and values into bytes and back: fixed-size integers, raw bytes, and
 * structs described by BTF.
 *
 * @example
 * ```ts
 * import { Uint32, Uint64, structCodec } from "@triad/ebpf";
 * import assert from "node:assert/strict";
 *
 * const bytes = new Uint8Array(4);
 * Uint32.encode(7, new DataView(bytes.buffer), 0);
 * assert.deepEqual([...bytes], [7, 0, 0, 0]);
 * assert.equal(Uint64.decode(new DataView(new ArrayBuffer(8)), 0), 0n);
 * assert.equal(typeof structCodec, "function");
 * ```
 *
 * @module
 */
import { TriadError } from "@triad/core";
import type { BTF, BtfType } from "./btf.ts";

/** Encodes and decodes one fixed-size value. */
export interface Codec<T> {
  /** Size in bytes. */
  readonly size: number;
  /**
   * Writes a value.
   *
   * @param value The value.
   * @param view Where to write.
   * @param offset Byte offset in `view`.
   */
  encode(value: T, view: DataView, offset: number): void;
  /**
   * Reads a value.
   *
   * @param view Where to read.
   * @param offset Byte offset in `view`.
   * @returns The value.
   */
  decode(view: DataView, offset: number): T;
}

/** A value a codec handles. */
export type CodecValue<C> = C extends Codec<infer T> ? T : never;

function intCodec(size: 1 | 2 | 4, signed: boolean): Codec<number> {
  const min = signed ? -(2 ** (size * 8 - 1)) : 0;
  const max = signed ? 2 ** (size * 8 - 1) - 1 : 2 ** (size * 8) - 1;
  const check = (value: number) => {
    if (typeof value === "bigint") {
      throw new TriadError(
        `Expected a number for a ${signed ? "signed" : "unsigned"} ${size * 8}-bit integer, ` +
          `got the bigint ${value}n: use a number (${value})`,
        { code: "bad_value" },
      );
    }
    if (!Number.isInteger(value) || value < min || value > max) {
      throw new TriadError(
        `Value ${value} does not fit a ${signed ? "signed" : "unsigned"} ${size * 8}-bit integer`,
        { code: "bad_value" },
      );
    }
  };
  switch (size) {
    case 1:
      return signed
        ? { size, encode: (v, d, o) => (check(v), d.setInt8(o, v)), decode: (d, o) => d.getInt8(o) }
        : {
          size,
          encode: (v, d, o) => (check(v), d.setUint8(o, v)),
          decode: (d, o) => d.getUint8(o),
        };
    case 2:
      return signed
        ? {
          size,
          encode: (v, d, o) => (check(v), d.setInt16(o, v, true)),
          decode: (d, o) => d.getInt16(o, true),
        }
        : {
          size,
          encode: (v, d, o) => (check(v), d.setUint16(o, v, true)),
          decode: (d, o) => d.getUint16(o, true),
        };
    case 4:
      return signed
        ? {
          size,
          encode: (v, d, o) => (check(v), d.setInt32(o, v, true)),
          decode: (d, o) => d.getInt32(o, true),
        }
        : {
          size,
          encode: (v, d, o) => (check(v), d.setUint32(o, v, true)),
          decode: (d, o) => d.getUint32(o, true),
        };
  }
}

/** An unsigned 8-bit integer. */
export const Uint8: Codec<number> = intCodec(1, false);
/** An unsigned 16-bit integer (host byte order, little-endian). */
export const Uint16: Codec<number> = intCodec(2, false);
/** An unsigned 32-bit integer (host byte order, little-endian). */
export const Uint32: Codec<number> = intCodec(4, false);
/** A signed 32-bit integer. */
export const Int32: Codec<number> = intCodec(4, true);
/** Throws unless a 64-bit integer's value is a bigint, saying which bigint was probably meant. */
function checkBigInt(value: unknown): asserts value is bigint {
  if (typeof value === "bigint") return;
  let got = value === null ? "null" : typeof value;
  let meant = "such as 0n";
  if (typeof value === "number" || typeof value === "boolean") got = `the ${typeof value} ${value}`;
  if (typeof value === "string") got = `the string ${JSON.stringify(value)}`;
  if (typeof value === "number" && Number.isSafeInteger(value)) meant = `${value}n`;
  if (typeof value === "string" && /^-?\d+$/.test(value)) meant = `such as ${value}n`;
  throw new TriadError(
    `Expected a bigint for a 64-bit integer, got ${got}: use a bigint (${meant})`,
    { code: "bad_value" },
  );
}

/** An unsigned 64-bit integer, as a bigint. */
export const Uint64: Codec<bigint> = {
  size: 8,
  encode: (v, d, o) => (checkBigInt(v), d.setBigUint64(o, BigInt.asUintN(64, v), true)),
  decode: (d, o) => d.getBigUint64(o, true),
};
/** A signed 64-bit integer, as a bigint. */
export const Int64: Codec<bigint> = {
  size: 8,
  encode: (v, d, o) => (checkBigInt(v), d.setBigInt64(o, BigInt.asIntN(64, v), true)),
  decode: (d, o) => d.getBigInt64(o, true),
};

/**
 * Raw bytes of a fixed size. Decoding copies; encoding requires exactly `size` bytes.
 *
 * @param size The size in bytes.
 * @returns The codec.
 */
export function Bytes(size: number): Codec<Uint8Array> {
  return {
    size,
    encode(value, view, offset) {
      if (value.length !== size) {
        throw new TriadError(`Expected ${size} bytes, got ${value.length}`, { code: "bad_value" });
      }
      new Uint8Array(view.buffer, view.byteOffset + offset, size).set(value);
    },
    decode: (view, offset) => new Uint8Array(view.buffer, view.byteOffset + offset, size).slice(),
  };
}

/**
 * A NUL-padded fixed-size string (`char name[16]`).
 *
 * @param size The size in bytes including the NUL.
 * @returns The codec.
 */
export function CString(size: number): Codec<string> {
  const encoder = new TextEncoder();
  const decoder = new TextDecoder();
  return {
    size,
    encode(value, view, offset) {
      const bytes = encoder.encode(value);
      if (bytes.length >= size) {
        throw new TriadError(`String of ${bytes.length} bytes does not fit char[${size}]`, {
          code: "bad_value",
        });
      }
      const target = new Uint8Array(view.buffer, view.byteOffset + offset, size);
      target.fill(0);
      target.set(bytes);
    },
    decode(view, offset) {
      const bytes = new Uint8Array(view.buffer, view.byteOffset + offset, size);
      const end = bytes.indexOf(0);
      return decoder.decode(bytes.subarray(0, end === -1 ? size : end));
    },
  };
}

/**
 * Builds a codec from a BTF type: integers (64-bit as bigint), bools, enums, floats, pointers
 * (bigint), `char[N]` as strings, other arrays as arrays (`u8[N]` as `Uint8Array`), structs and
 * unions as objects keyed by member name, bit-fields included.
 *
 * @param btf The BTF holding the type.
 * @param type The type id, or a struct/union/typedef name.
 * @returns The codec.
 */
// deno-lint-ignore no-explicit-any
export function structCodec<T = any>(btf: BTF, type: number | string): Codec<T> {
  const id = typeof type === "number" ? type : btf.typeByName(type).id;
  return btfCodec(btf, id) as Codec<T>;
}

function btfCodec(btf: BTF, id: number): Codec<unknown> {
  const type: BtfType = btf.resolve(id);
  const where = `BTF type ${id} (${btf.typeName(id)})`;
  switch (type.kind) {
    case "int": {
      if (type.bool) {
        return {
          size: type.size,
          encode: (v, d, o) => d.setUint8(o, v ? 1 : 0),
          decode: (d, o) => d.getUint8(o) !== 0,
        };
      }
      return intOfSize(type.size, type.signed, where);
    }
    case "enum":
    case "enum64":
      return intOfSize(type.size, type.signed, where);
    case "ptr":
      return Uint64 as Codec<unknown>;
    case "float":
      if (type.size === 4) {
        return {
          size: 4,
          encode: (v, d, o) => d.setFloat32(o, v as number, true),
          decode: (d, o) => d.getFloat32(o, true),
        };
      }
      if (type.size === 8) {
        return {
          size: 8,
          encode: (v, d, o) => d.setFloat64(o, v as number, true),
          decode: (d, o) => d.getFloat64(o, true),
        };
      }
      break;
    case "array": {
      const element = btf.resolve(type.type);
      if (element.kind === "int" && element.size === 1) {
        return (isCharType(element) ? CString(type.length) : Bytes(type.length)) as Codec<unknown>;
      }
      const inner = btfCodec(btf, type.type);
      const stride = inner.size;
      return {
        size: stride * type.length,
        encode(value, view, offset) {
          const values = value as unknown[];
          for (let i = 0; i < type.length; i++) {
            inner.encode(values[i] ?? 0, view, offset + i * stride);
          }
        },
        decode(view, offset) {
          const out = new Array(type.length);
          for (let i = 0; i < type.length; i++) out[i] = inner.decode(view, offset + i * stride);
          return out;
        },
      };
    }
    case "struct":
    case "union": {
      const members = type.members.map((member) => {
        if (member.bitSize !== 0) {
          return { member, codec: undefined, bitSize: member.bitSize };
        }
        if (member.bitOffset % 8 !== 0) {
          throw new TriadError(`${where}: member ${member.name} is not byte-aligned`, {
            code: "unsupported_type",
          });
        }
        return { member, codec: btfCodec(btf, member.type), bitSize: 0 };
      });
      return {
        size: type.size,
        encode(value, view, offset) {
          const object = (value ?? {}) as Record<string, unknown>;
          if (type.kind === "struct") {
            new Uint8Array(view.buffer, view.byteOffset + offset, type.size).fill(0);
          }
          for (const { member, codec, bitSize } of members) {
            const field = member.name === "" ? object : object[member.name];
            if (field === undefined) continue;
            if (codec !== undefined) codec.encode(field, view, offset + member.bitOffset / 8);
            else writeBits(view, offset, member.bitOffset, bitSize, Number(field));
          }
        },
        decode(view, offset) {
          const object: Record<string, unknown> = {};
          for (const { member, codec, bitSize } of members) {
            const value = codec !== undefined
              ? codec.decode(view, offset + member.bitOffset / 8)
              : readBits(view, offset, member.bitOffset, bitSize);
            if (member.name === "" && typeof value === "object" && value !== null) {
              Object.assign(object, value);
            } else object[member.name] = value;
          }
          return object;
        },
      };
    }
    default:
      break;
  }
  throw new TriadError(`${where}: no codec for BTF kind ${type.kind}`, {
    code: "unsupported_type",
  });
}

function intOfSize(size: number, signed: boolean, where: string): Codec<unknown> {
  switch (size) {
    case 1:
    case 2:
    case 4:
      return intCodec(size, signed) as Codec<unknown>;
    case 8:
      return (signed ? Int64 : Uint64) as Codec<unknown>;
    default:
      throw new TriadError(`${where}: no codec for a ${size}-byte integer`, {
        code: "unsupported_type",
      });
  }
}

/**
 * Returns whether a BTF integer is a C `char` (clang marks `char` by name, not by encoding).
 *
 * @param type The integer type.
 * @returns Whether strings should decode from arrays of it.
 */
export function isCharType(type: { name: string; char: boolean; size: number }): boolean {
  return type.size === 1 && (type.char || type.name === "char" || type.name === "signed char");
}

/**
 * Reads a NUL-terminated string from a fixed-size `char[length]` field.
 *
 * @param view The record.
 * @param offset The field's byte offset.
 * @param length The field's size.
 * @returns The string (up to the first NUL).
 */
export function readCString(view: DataView, offset: number, length: number): string {
  const bytes = new Uint8Array(view.buffer, view.byteOffset + offset, length);
  const end = bytes.indexOf(0);
  return textDecoder.decode(bytes.subarray(0, end === -1 ? length : end));
}

const textDecoder = new TextDecoder();

/**
 * Reads a bit-field.
 *
 * @param view The record.
 * @param offset The struct's byte offset.
 * @param bitOffset The field's bit offset in the struct.
 * @param bits The field's width.
 * @returns The unsigned value.
 */
export function readBits(view: DataView, offset: number, bitOffset: number, bits: number): number {
  let value = 0n;
  const firstByte = Math.floor(bitOffset / 8);
  const lastByte = Math.floor((bitOffset + bits - 1) / 8);
  for (let i = lastByte; i >= firstByte; i--) {
    value = (value << 8n) | BigInt(view.getUint8(offset + i));
  }
  value >>= BigInt(bitOffset - firstByte * 8);
  return Number(value & ((1n << BigInt(bits)) - 1n));
}

function writeBits(view: DataView, offset: number, bitOffset: number, bits: number, value: number) {
  for (let i = 0; i < bits; i++) {
    const bit = bitOffset + i;
    const at = offset + Math.floor(bit / 8);
    const mask = 1 << (bit % 8);
    const set = (BigInt(value) >> BigInt(i)) & 1n;
    view.setUint8(at, set ? view.getUint8(at) | mask : view.getUint8(at) & ~mask);
  }
}
