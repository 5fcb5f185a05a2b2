import assert from "node:assert/strict";
import { BTF } from "./btf.ts";
import {
  Bytes,
  CString,
  Int32,
  Int64,
  readCString,
  structCodec,
  Uint16,
  Uint32,
  Uint64,
  Uint8,
} from "./codec.ts";
import { BtfBuilder } from "./testdata/btf_builder.ts";

function roundTrip<T>(
  codec: {
    size: number;
    encode(v: T, d: DataView, o: number): void;
    decode(d: DataView, o: number): T;
  },
  value: T,
): T {
  const view = new DataView(new ArrayBuffer(codec.size + 3));
  codec.encode(value, view, 3);
  return codec.decode(view, 3);
}

Deno.test("integer codecs round-trip and check ranges", () => {
  assert.equal(roundTrip(Uint8, 255), 255);
  assert.equal(roundTrip(Uint16, 65535), 65535);
  assert.equal(roundTrip(Uint32, 0xffffffff), 0xffffffff);
  assert.equal(roundTrip(Int32, -5), -5);
  assert.equal(roundTrip(Uint64, 2n ** 64n - 1n), 2n ** 64n - 1n);
  assert.equal(roundTrip(Int64, -(2n ** 63n)), -(2n ** 63n));
  assert.throws(
    () => roundTrip(Uint32, -1),
    /does not fit a unsigned 32-bit integer|does not fit an? unsigned 32-bit/,
  );
  assert.throws(() => roundTrip(Uint8, 1.5), /does not fit/);
  const bytes = new Uint8Array(4);
  Uint32.encode(0x01020304, new DataView(bytes.buffer), 0);
  assert.deepEqual([...bytes], [4, 3, 2, 1]);
});

Deno.test("64-bit integer codecs ask for a bigint, smaller ones for a number", () => {
  const view = new DataView(new ArrayBuffer(8));
  assert.throws(
    () => Uint64.encode(0 as unknown as bigint, view, 0),
    { message: "Expected a bigint for a 64-bit integer, got the number 0: use a bigint (0n)" },
  );
  assert.throws(() => Int64.encode(-3 as unknown as bigint, view, 0), /use a bigint \(-3n\)/);
  assert.throws(
    () => Uint64.encode("7" as unknown as bigint, view, 0),
    /got the string "7": use a bigint \(such as 7n\)/,
  );
  assert.throws(
    () => Uint32.encode(5n as unknown as number, view, 0),
    /Expected a number for a unsigned 32-bit integer, got the bigint 5n: use a number \(5\)/,
  );
});

Deno.test("Bytes() and CString() keep fixed sizes", () => {
  assert.deepEqual(roundTrip(Bytes(3), new Uint8Array([1, 2, 3])), new Uint8Array([1, 2, 3]));
  assert.throws(() => roundTrip(Bytes(3), new Uint8Array(2)), /Expected 3 bytes, got 2/);
  assert.equal(roundTrip(CString(8), "deno"), "deno");
  assert.throws(() => roundTrip(CString(4), "toolong"), /does not fit char\[4\]/);
  const full = new DataView(new TextEncoder().encode("abcd").buffer);
  assert.equal(readCString(full, 0, 4), "abcd");
});

Deno.test("structCodec() follows BTF: ints, bit-fields, strings, enums, nested structs", () => {
  const b = new BtfBuilder();
  const u32 = b.int("unsigned int", 4);
  const u8 = b.int("unsigned char", 1);
  const char = b.int("char", 1, true);
  const u64 = b.int("unsigned long long", 8);
  const bool = b.int("_Bool", 1, false, true);
  const inner = b.struct("inner", 8, [{ name: "value", type: u64, bitOffset: 0 }]);
  const comm = b.array(char, u32, 8);
  const raw = b.array(u8, u32, 2);
  const ports = b.array(u32, u32, 2);
  b.struct("outer", 40, [
    { name: "pid", type: u32, bitOffset: 0 },
    { name: "low", type: u8, bitOffset: 32, bits: 4 },
    { name: "high", type: u8, bitOffset: 36, bits: 4 },
    { name: "ok", type: bool, bitOffset: 40 },
    { name: "raw", type: raw, bitOffset: 48 },
    { name: "comm", type: comm, bitOffset: 64 },
    { name: "inner", type: inner, bitOffset: 128 },
    { name: "ports", type: ports, bitOffset: 192 },
  ]);
  const btf = BTF.parse(b.build());
  const codec = structCodec(btf, "outer");
  assert.equal(codec.size, 40);
  const value = {
    pid: 7,
    low: 5,
    high: 10,
    ok: true,
    raw: new Uint8Array([9, 8]),
    comm: "sshd",
    inner: { value: 2n ** 40n },
    ports: [80, 443],
  };
  const view = new DataView(new ArrayBuffer(40));
  codec.encode(value, view, 0);
  assert.equal(view.getUint8(4), 0xa5); // two nibbles in one byte
  assert.deepEqual(codec.decode(view, 0), value);
});
