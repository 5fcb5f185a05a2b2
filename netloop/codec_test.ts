import assert from "node:assert/strict";
import { type Conn, DelimiterCodec, FixedLengthCodec, LengthFieldCodec, type Loop } from "./mod.ts";
import { CodecError } from "./codec_error.ts";

/** Just the read side of a Conn, over a growing byte array (codecs need nothing else). */
class BytesConn {
  private bytes = new Uint8Array(0);
  private start = 0;
  feed(chunk: Uint8Array): void {
    const next = new Uint8Array(this.bytes.length - this.start + chunk.length);
    next.set(this.bytes.subarray(this.start));
    next.set(chunk, this.bytes.length - this.start);
    this.bytes = next;
    this.start = 0;
  }
  get inboundBuffered(): number {
    return this.bytes.length - this.start;
  }
  peek(n?: number): Uint8Array {
    const k = n === undefined || n > this.inboundBuffered ? this.inboundBuffered : n;
    return this.bytes.subarray(this.start, this.start + k);
  }
  next(n?: number): Uint8Array {
    const view = this.peek(n);
    this.start += view.length;
    return view;
  }
  discard(n?: number): number {
    return this.next(n).length;
  }
  asConn(): Conn {
    return this as unknown as Conn & { loop: Loop };
  }
}

function decodeAll(codec: { decode(c: Conn): Uint8Array | undefined }, conn: BytesConn) {
  const out: number[][] = [];
  for (let f = codec.decode(conn.asConn()); f; f = codec.decode(conn.asConn())) out.push([...f]);
  return out;
}

Deno.test("LengthFieldCodec decodes DNS-over-TCP frames split at every byte", async (t) => {
  const codec = new LengthFieldCodec();
  const frames = [[1, 2, 3], [], [9], Array.from({ length: 300 }, (_, i) => i & 0xff)];
  const wire = frames.flatMap((f) => [...codec.encode(new Uint8Array(f))]);
  await t.step("split anywhere", () => {
    for (let cut = 0; cut <= wire.length; cut++) {
      const conn = new BytesConn();
      conn.feed(new Uint8Array(wire.slice(0, cut)));
      const got = decodeAll(codec, conn);
      conn.feed(new Uint8Array(wire.slice(cut)));
      got.push(...decodeAll(codec, conn));
      assert.deepEqual(got, frames, `cut at ${cut}`);
    }
  });
  await t.step("one byte at a time", () => {
    const conn = new BytesConn();
    const got: number[][] = [];
    for (const byte of wire) {
      conn.feed(new Uint8Array([byte]));
      got.push(...decodeAll(codec, conn));
    }
    assert.deepEqual(got, frames);
  });
});

Deno.test("LengthFieldCodec honours offset, adjustment, width and limit", () => {
  const codec = new LengthFieldCodec({
    lengthFieldLength: 4,
    lengthFieldOffset: 1,
    lengthAdjustment: -5,
    initialBytesToStrip: 0,
    littleEndian: true,
    maxFrameLength: 64,
  });
  const conn = new BytesConn();
  // type byte, length 8 (little-endian, counts itself + type), 3 payload bytes
  conn.feed(new Uint8Array([7, 8, 0, 0, 0, 0xa, 0xb, 0xc]));
  assert.deepEqual([...codec.decode(conn.asConn())!], [7, 8, 0, 0, 0, 0xa, 0xb, 0xc]);
  conn.feed(new Uint8Array([7, 200, 0, 0, 0]));
  assert.throws(() => codec.decode(conn.asConn()), CodecError);
  assert.throws(() => new LengthFieldCodec().encode(new Uint8Array(70000)), /does not fit/);
});

Deno.test("DelimiterCodec splits lines and refuses an endless one", () => {
  const codec = new DelimiterCodec({ delimiter: "\r\n", maxFrameLength: 8 });
  const conn = new BytesConn();
  conn.feed(new TextEncoder().encode("ab\r"));
  assert.equal(codec.decode(conn.asConn()), undefined);
  conn.feed(new TextEncoder().encode("\ncd\r\nxy"));
  assert.deepEqual(decodeAll(codec, conn), [[97, 98], [99, 100]]);
  assert.equal(conn.inboundBuffered, 2);
  conn.feed(new Uint8Array(20).fill(65));
  assert.throws(() => codec.decode(conn.asConn()), /No delimiter within 8 bytes/);
});

Deno.test("FixedLengthCodec waits for whole frames", () => {
  const codec = new FixedLengthCodec(3);
  const conn = new BytesConn();
  conn.feed(new Uint8Array([1, 2, 3, 4, 5]));
  assert.deepEqual(decodeAll(codec, conn), [[1, 2, 3]]);
  conn.feed(new Uint8Array([6]));
  assert.deepEqual(decodeAll(codec, conn), [[4, 5, 6]]);
  assert.throws(() => new FixedLengthCodec(0), /positive integer/);
  assert.throws(() => codec.encode(new Uint8Array(2)), /not 3 bytes/);
});
