import assert from "node:assert/strict";
import { HpackDecoder, HpackError, huffmanDecode } from "./_hpack.ts";

const hex = (text: string) =>
  new Uint8Array(text.replace(/\s/g, "").match(/../g)!.map((h) => parseInt(h, 16)));

function decodeAll(decoder: HpackDecoder, block: Uint8Array): string[] {
  const out: string[] = [];
  decoder.decode(block, (name, value) => {
    out.push(`${name}: ${new TextDecoder().decode(value)}`);
  }, undefined);
  return out;
}

Deno.test("HPACK: RFC 7541 C.3 and C.4 request sequences (plain and Huffman, one table)", () => {
  for (
    const blocks of [
      [
        "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
        "8286 84be 5808 6e6f 2d63 6163 6865",
        "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
      ],
      [
        "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
        "8286 84be 5886 a8eb 1064 9cbf",
        "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
      ],
    ]
  ) {
    const decoder = new HpackDecoder();
    assert.deepEqual(decodeAll(decoder, hex(blocks[0]!)), [
      ":method: GET",
      ":scheme: http",
      ":path: /",
      ":authority: www.example.com",
    ]);
    // The second request refers to the first one's :authority in the dynamic table (index 62).
    assert.deepEqual(decodeAll(decoder, hex(blocks[1]!)), [
      ":method: GET",
      ":scheme: http",
      ":path: /",
      ":authority: www.example.com",
      "cache-control: no-cache",
    ]);
    assert.deepEqual(decodeAll(decoder, hex(blocks[2]!)), [
      ":method: GET",
      ":scheme: https",
      ":path: /index.html",
      ":authority: www.example.com",
      "custom-key: custom-value",
    ]);
  }
});

Deno.test("HPACK: RFC 7541 C.6 responses evict from a 256-byte table", () => {
  const decoder = new HpackDecoder(256);
  // A table size update to 256 first (the peer's side of SETTINGS_HEADER_TABLE_SIZE 256).
  decodeAll(decoder, new Uint8Array([0x3f, 0xe1, 0x01]));
  decodeAll(
    decoder,
    hex(
      "4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6 2d1b ff6e" +
        "919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3",
    ),
  );
  // The second response's :status 307 pushes out the oldest entry.
  assert.deepEqual(decodeAll(decoder, hex("4883 640e ff c1 c0 bf")), [
    ":status: 307",
    "cache-control: private",
    "date: Mon, 21 Oct 2013 20:13:21 GMT",
    "location: https://www.example.com",
  ]);
});

Deno.test("HPACK: malformed blocks throw with the offset", () => {
  const cases: [string, Uint8Array, RegExp][] = [
    ["index 0", new Uint8Array([0x80]), /index 0 at offset 1/],
    ["an index past the tables", new Uint8Array([0xbe]), /no entry 62/],
    ["a string cut off", new Uint8Array([0x04, 0x05, 0x2f]), /string cut off at offset 2/],
    ["an integer cut off", new Uint8Array([0xff]), /integer cut off/],
    ["a table size over ours", new Uint8Array([0x3f, 0xe2, 0x1f]), /table size 4097 over 256/],
    // :path with a Huffman string of EOS (30 ones) then padding.
    ["EOS in a string", new Uint8Array([0x04, 0x84, 0xff, 0xff, 0xff, 0xff]), /bad Huffman/],
  ];
  for (const [what, block, message] of cases) {
    assert.throws(() => decodeAll(new HpackDecoder(256), block), (error: Error) => {
      assert.ok(error instanceof HpackError, what);
      assert.match(error.message, message, what);
      return true;
    });
  }
});

Deno.test("Huffman: padding longer than 7 bits or not all ones is refused", () => {
  const out = new Uint8Array(16);
  // "a" is 00011 (5 bits): padded with 111 it is one byte 0x1f.
  assert.equal(huffmanDecode(new Uint8Array([0x1f]), out), 1);
  assert.equal(out[0], 0x61);
  assert.equal(huffmanDecode(new Uint8Array([0x18]), out), -1); // padding 000
  assert.equal(huffmanDecode(new Uint8Array([0x1f, 0xff]), out), -1); // 11 bits of padding
});
