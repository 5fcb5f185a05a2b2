import assert from "node:assert/strict";
import { buildErrorResponse, buildQuery, removeOpt, truncateResponse } from "./builders.ts";
import { Rcode } from "./constants.ts";
import { parseMessage } from "./message.ts";
import { WireError } from "./wire_error.ts";

/** An answer for a.test. A with two records, compressed, an SOA in authority and an OPT. */
function sampleAnswer(): Uint8Array {
  return new Uint8Array([
    ...[0x12, 0x34, 0x81, 0x80, 0, 1, 0, 2, 0, 1, 0, 1],
    ...[1, 97, 4, 116, 101, 115, 116, 0, 0, 1, 0, 1],
    ...[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 100, 0, 4, 10, 0, 0, 1],
    ...[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 50, 0, 4, 10, 0, 0, 2],
    // test. SOA ns.test. admin.test. 1 3600 600 86400 60, TTL 300
    ...[0xc0, 14, 0, 6, 0, 1, 0, 0, 1, 44, 0, 33],
    ...[2, 110, 115, 0xc0, 14, 5, 97, 100, 109, 105, 110, 0xc0, 14],
    ...[0, 0, 0, 1, 0, 0, 14, 16, 0, 0, 2, 88, 0, 1, 81, 128, 0, 0, 0, 60],
    ...[0, 0, 41, 16, 0, 0, 0, 0x80, 0, 0, 0],
  ]);
}

Deno.test("parseMessage() reads an answer", async (t) => {
  const info = parseMessage(sampleAnswer());
  await t.step("header, question and counts", () => {
    assert.equal(info.id, 0x1234);
    assert.deepEqual(info.counts, [1, 2, 1, 1]);
    assert.equal(info.question?.key, "\x01a\x04test\x00");
    assert.equal(info.question?.end, 24);
  });
  await t.step("TTL offsets skip OPT; min answer TTL; RFC 2308 negative TTL", () => {
    assert.deepEqual(info.ttlOffsets, [30, 46, 62]);
    assert.equal(info.minAnswerTtl, 50);
    assert.equal(info.negativeTtl, 60); // min(SOA TTL 300, MINIMUM 60)
  });
  await t.step("EDNS: size, DO bit, version", () => {
    assert.equal(info.edns?.udpSize, 4096);
    assert.equal(info.edns?.dnssecOk, true);
    assert.equal(info.edns?.version, 0);
  });
});

Deno.test("parseMessage() rejects RFC 9267 faults naming the offset", () => {
  const head = [0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
  for (
    const [bytes, pattern] of [
      [[1, 2, 3], /offset 0: truncated header/],
      [[...head, 0xc0, 12, 0, 1, 0, 1], /offset 12: pointer loop/],
      [[...head, 1, 97, 0xc0, 12, 0, 1, 0, 1], /offset 14: pointer loop/],
      [[...head, 0xc0, 18, 0, 1, 0, 1, 0], /offset 12: forward compression pointer/],
      [[...head, 0xc0, 99, 0, 1, 0, 1], /offset 12: pointer to 99 past the end/],
      [[...head, 0x40, 0, 0, 1, 0, 1], /offset 12: reserved label type 0x40/],
      [[...head, 0x80, 0, 0, 1, 0, 1], /offset 12: reserved label type 0x80/],
      [[...head, 1, 97, 0], /offset 15: question 1 of 1 runs past the end/],
      [[...head, 0, 0, 1, 0, 1, 7], /offset 17: 1 bytes after the last record/],
    ] as const
  ) {
    assert.throws(() => parseMessage(new Uint8Array(bytes)), (error: unknown) => {
      assert.ok(error instanceof WireError, String(error));
      assert.match(error.message, pattern);
      return true;
    });
  }
  const long: number[] = [...head];
  for (let i = 0; i < 5; i++) long.push(60, ...new Array(60).fill(97));
  long.push(0, 0, 1, 0, 1);
  assert.throws(() => parseMessage(new Uint8Array(long)), /name longer than 255 bytes/);
});

Deno.test("parseMessage() rejects section counts that do not match", () => {
  const answer = sampleAnswer();
  answer[7] = 3; // ANCOUNT 3, only 2 answers: the OPT lands in the authority section
  assert.throws(() => parseMessage(answer), WireError);
  const fewer = sampleAnswer();
  fewer[11] = 0; // ARCOUNT 0: the OPT becomes trailing bytes
  assert.throws(() => parseMessage(fewer), /bytes after the last record/);
});

Deno.test("truncateResponse() and removeOpt() keep the message valid", () => {
  const answer = sampleAnswer();
  const info = parseMessage(answer);
  const truncated = parseMessage(truncateResponse(answer, info));
  assert.deepEqual(truncated.counts, [1, 0, 0, 1]);
  assert.equal(truncated.flags & 0x0200, 0x0200);
  const plain = parseMessage(removeOpt(answer, info));
  assert.equal(plain.edns, undefined);
  assert.deepEqual(plain.counts, [1, 2, 1, 0]);
  assert.deepEqual(plain.ttlOffsets, info.ttlOffsets);
});

Deno.test("buildQuery() round-trips through parseMessage()", () => {
  const info = parseMessage(buildQuery({ id: 65535, name: "xn--bcher-kva.example", type: 65 }));
  assert.equal(info.id, 65535);
  assert.equal(info.question?.type, 65);
  assert.equal(info.flags, 0x0100);
});

Deno.test("buildErrorResponse() keeps DO (RFC 3225 §3) and sets RA for QUERY only", () => {
  for (const dnssecOk of [false, true]) {
    for (const opcode of [0, 1, 2, 4, 5]) {
      const query = buildQuery({ id: 3, name: "e.", type: 1, dnssecOk });
      query[2] = (opcode << 3) | 1;
      for (const rcode of [Rcode.FORMERR, Rcode.NOTIMP, Rcode.REFUSED, Rcode.BADVERS]) {
        const answer = buildErrorResponse(query, rcode, parseMessage(query));
        const info = parseMessage(answer);
        const label = `DO ${dnssecOk}, opcode ${opcode}, rcode ${rcode}`;
        assert.equal(info.rcode, rcode, label);
        assert.equal(info.edns?.dnssecOk, dnssecOk, label);
        assert.equal(info.opcode, opcode, label);
        assert.equal(info.flags & 0x0080, opcode === 0 ? 0x0080 : 0, `${label}: RA`);
        assert.equal(info.flags & 0x0100, 0x0100, `${label}: RD echoed`);
      }
    }
  }
});
