import assert from "node:assert/strict";
import { decodeEvent, EVENT_RECORD_SIZE } from "./decode_event.ts";
import { KernelClock } from "./kernel_clock.ts";

function record(fields: {
  type: number;
  family: 4 | 6;
  timeNs?: bigint;
  durationNs?: bigint;
  tx?: bigint;
  rx?: bigint;
  saddr: number[];
  daddr: number[];
  pid?: number;
  sport?: number;
  dport?: number;
  oldstate?: number;
  newstate?: number;
  comm?: string;
}): DataView {
  // an offset inside a larger buffer, as a ring buffer record is
  const backing = new Uint8Array(EVENT_RECORD_SIZE + 8);
  const bytes = backing.subarray(8);
  const view = new DataView(backing.buffer, 8);
  view.setBigUint64(0, fields.timeNs ?? 0n, true);
  view.setBigUint64(8, fields.durationNs ?? 0n, true);
  view.setBigUint64(16, fields.tx ?? 0n, true);
  view.setBigUint64(24, fields.rx ?? 0n, true);
  bytes.set(fields.saddr, 32);
  bytes.set(fields.daddr, 48);
  view.setUint32(64, fields.pid ?? 0, true);
  view.setUint16(68, fields.sport ?? 0, true);
  view.setUint16(70, fields.dport ?? 0, true);
  bytes.set([fields.type, fields.family, fields.oldstate ?? 0, fields.newstate ?? 0], 72);
  bytes.set(new TextEncoder().encode(fields.comm ?? ""), 76);
  return new DataView(backing.buffer, 8, EVENT_RECORD_SIZE);
}

const V6_LOOPBACK = [...new Array(15).fill(0), 1];

Deno.test("decodeEvent() decodes every event type", async (t) => {
  const clock = new KernelClock(Date.UTC(2026, 0, 1));
  await t.step("connect over IPv4 with the JSON fields in contract order", () => {
    const event = decodeEvent(
      record({
        type: 1,
        family: 4,
        timeNs: 1_500_000n,
        saddr: [127, 0, 0, 1],
        daddr: [10, 1, 2, 3],
        pid: 4242,
        sport: 51000,
        dport: 443,
        comm: "curl",
      }),
      clock,
    );
    assert.equal(
      JSON.stringify(event),
      '{"type":"connect","time":"2026-01-01T00:00:00.001Z","pid":4242,"comm":"curl","family":4,' +
        '"saddr":"127.0.0.1","sport":51000,"daddr":"10.1.2.3","dport":443}',
    );
  });
  await t.step("close over IPv6 with duration and bytes", () => {
    const event = decodeEvent(
      record({
        type: 3,
        family: 6,
        durationNs: 12_345_678n,
        tx: 100_000n,
        rx: 300n,
        saddr: V6_LOOPBACK,
        daddr: [0x20, 0x01, 0x0d, 0xb8, ...new Array(11).fill(0), 5],
        pid: 1,
        sport: 80,
        dport: 40000,
        comm: "fifteen-chars-x",
      }),
      clock,
    );
    assert.equal(event.type, "close");
    assert.equal(event.family, 6);
    assert.equal(event.saddr, "::1");
    assert.equal(event.daddr, "2001:db8::5");
    assert.equal(event.durationMs, 12.346);
    assert.equal(event.txBytes, 100000);
    assert.equal(event.rxBytes, 300);
    assert.equal(event.comm, "fifteen-chars-x");
    assert.equal(event.oldstate, undefined);
  });
  await t.step("state with state names", () => {
    const event = decodeEvent(
      record({
        type: 4,
        family: 4,
        saddr: [1, 2, 3, 4],
        daddr: [5, 6, 7, 8],
        oldstate: 2,
        newstate: 1,
      }),
      clock,
    );
    assert.equal(event.oldstate, "SYN_SENT");
    assert.equal(event.newstate, "ESTABLISHED");
    assert.equal(event.durationMs, undefined);
  });
  await t.step("accept", () => {
    const event = decodeEvent(
      record({ type: 2, family: 4, saddr: [1, 2, 3, 4], daddr: [5, 6, 7, 8] }),
      clock,
    );
    assert.equal(event.type, "accept");
  });
  await t.step("rejects short records and unknown types", () => {
    assert.throws(() => decodeEvent(new DataView(new ArrayBuffer(10)), clock), /needs 96 bytes/);
    assert.throws(
      () => decodeEvent(record({ type: 9, family: 4, saddr: [], daddr: [] }), clock),
      /Unknown event type 9/,
    );
  });
});
