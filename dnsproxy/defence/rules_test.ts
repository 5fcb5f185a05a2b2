import assert from "node:assert/strict";
import { Metrics } from "@triad/core";
import { buildQuery } from "../wire/builders.ts";
import { DefenceRules } from "./rules.ts";
import type { DefenceEvent, DefenceRule, DefenceSettings } from "./rules.ts";

const udp = (address: string) => ({ address, transport: "udp" as const });
const tcp = (address: string) => ({ address, transport: "tcp" as const });

function settings(rules: DefenceRule[], extra: Partial<DefenceSettings> = {}): DefenceSettings {
  return { rules, clients: [], names: [], staticAction: "drop", ...extra };
}

function answering(rcode: number, size = 12) {
  return (packet: Uint8Array) => {
    const out = new Uint8Array(size);
    out.set(packet.subarray(0, 2));
    out[2] = 0x81;
    out[3] = 0x80 | rcode;
    return out;
  };
}

const query = (name = "example.org.") => buildQuery({ id: 9, name, type: 1 });

Deno.test("an NXDOMAIN rule blocks the client that trips it, and the block ends", () => {
  let clock = 0;
  const events: DefenceEvent[] = [];
  const metrics = new Metrics();
  const rules = new DefenceRules(
    settings([{
      name: "nx",
      measure: "nxdomain",
      rate: 1,
      window: 2000,
      action: "drop",
      duration: 5000,
    }]),
    { now: () => clock, onEvent: (e) => events.push(e), metrics },
  );
  const nx = answering(3);
  for (let i = 0; i < 3; i++) rules.answer(query(), udp("192.0.2.1"), () => {}, null, nx);
  assert.equal(rules.answer(query(), udp("192.0.2.1"), () => {}, null, nx), null, "dropped");
  assert.notEqual(rules.answer(query(), udp("192.0.2.2"), () => {}, null, nx), null, "others");
  assert.equal(rules.answer(query(), tcp("192.0.2.1"), () => {}, null, nx)![3]! & 0xf, 5);
  assert.deepEqual(events.map((e) => [e.type, e.client, e.rule, e.ruleId]), [
    ["start", "192.0.2.1", "nx", 16],
  ]);
  assert.match(
    metrics.expose(),
    /^dns_defence_active_blocks\{rule="nx",action="drop"\} 1$/m,
  );
  clock = 5001;
  assert.notEqual(rules.answer(query(), udp("192.0.2.1"), () => {}, null, nx), null);
  assert.deepEqual(events.map((e) => e.type), ["start", "end"]);
  assert.match(metrics.expose(), /^dns_defence_blocks_total\{rule="nx",action="drop"\} 1$/m);
  assert.match(
    metrics.expose(),
    /^dns_defence_blocked_queries_total\{rule="nx",action="drop"\} 2$/m,
  );
});

Deno.test("a bytes rule counts later answers; truncate answers TC over UDP, serves TCP, DoT, DoH, DoQ", () => {
  let clock = 0;
  const rules = new DefenceRules(
    settings([{
      name: "bytes",
      measure: "bytes",
      rate: 100,
      window: 1000,
      action: "truncate",
      duration: 1000,
    }]),
    { now: () => clock },
  );
  const big = answering(0, 60);
  let delivered = 0;
  for (let i = 0; i < 2; i++) {
    // A miss: answered later through respond.
    const now = rules.answer(query(), udp("198.51.100.1"), () => delivered++, null, (
      p,
      _c,
      respond,
      ctx,
    ) => {
      respond(big(p), ctx);
      return undefined;
    });
    assert.equal(now, undefined);
  }
  assert.equal(delivered, 2);
  const tc = rules.answer(query(), udp("198.51.100.1"), () => {}, null, big)!;
  assert.equal(tc[2]! & 0x02, 0x02, "TC set");
  assert.equal(tc[5], 1, "the question is echoed");
  assert.deepEqual(tc.subarray(12, 12 + 17), query().subarray(12, 12 + 17));
  assert.equal(rules.answer(query(), tcp("198.51.100.1"), () => {}, null, big)!.length, 60);
  // DoT, DoH and DoQ are stream transports too: truncation would ask for what they already are.
  for (const transport of ["tls", "https", "quic"] as const) {
    const client = { address: "198.51.100.1", transport };
    assert.equal(rules.answer(query(), client, () => {}, null, big)!.length, 60, transport);
  }
  clock = 1000;
  assert.equal(rules.answer(query(), udp("198.51.100.1"), () => {}, null, big)!.length, 60);
});

Deno.test("static lists block prefixes and names (suffix on label edges) and reload", () => {
  const rules = new DefenceRules(
    settings([], { clients: ["203.0.113.0/24"], names: ["Bad.Example."], staticAction: "refused" }),
  );
  const ok = answering(0);
  const rcode = (name: string, address: string) =>
    rules.answer(query(name), udp(address), () => {}, null, ok)![3]! & 0xf;
  assert.equal(rcode("example.org.", "203.0.113.5"), 5);
  assert.equal(rcode("example.org.", "192.0.2.5"), 0);
  assert.equal(rcode("bad.example.", "192.0.2.5"), 5);
  assert.equal(rcode("x.BAD.example.", "192.0.2.5"), 5);
  assert.equal(rcode("notbad.example.", "192.0.2.5"), 0);
  rules.reconfigure(settings([], { clients: [], names: ["notbad.example"] }));
  assert.equal(rcode("example.org.", "203.0.113.5"), 0);
  assert.equal(rcode("bad.example.", "192.0.2.5"), 0);
  assert.equal(rules.answer(query("notbad.example."), udp("1.2.3.4"), () => {}, null, ok), null);
  assert.throws(() => rules.reconfigure(settings([], { clients: ["nonsense/8"] })), /nonsense/);
});
