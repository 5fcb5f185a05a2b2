/**
 * The proxy's answers against the RFCs, and against what unbound (its upstream here) and dnsdist
 * (a proxy with a packet cache in front of the same unbound) answer to the same questions.
 */
import assert from "node:assert/strict";
import { buildQuery, DnsProxy, parseMessage, Rcode, RrType, serveDns } from "@triad/dnsproxy";
import type { ProxySettings } from "@triad/dnsproxy";
import { command, testWith } from "./requirements.ts";
import { startUnbound } from "./servers/unbound.ts";
import { startDnsdist } from "./servers/dnsdist.ts";
import { forward, startFakeUpstream } from "./dnsproxy_fake_upstream.ts";
import { normalized, queryUdp } from "./dnsproxy_client.ts";

const needs = [command("unbound"), command("dnsdist"), command("dig", "bind9-dnsutils")];

const RD = 0x0100;
const RA = 0x0080;
const AD = 0x0020;
const COOKIE = 10;
const PADDING = 12;
const EDE = 15;

function settings(upstream: string): ProxySettings {
  return { upstream: { upstreams: [upstream], healthCheck: 0, timeout: 1000 } };
}

/** The flags word of a message. */
function flagsOf(bytes: Uint8Array): number {
  return (bytes[2]! << 8) | bytes[3]!;
}

/** The codes of the EDNS options in a message's OPT record (`undefined` without one). */
function optionCodes(bytes: Uint8Array): number[] | undefined {
  const edns = parseMessage(bytes).edns;
  if (edns === undefined) return undefined;
  const codes: number[] = [];
  for (let at = edns.offset + 11; at < edns.end;) {
    codes.push((bytes[at]! << 8) | bytes[at + 1]!);
    at += 4 + ((bytes[at + 2]! << 8) | bytes[at + 3]!);
  }
  return codes;
}

/** A copy of a message whose OPT record (the last record) gets an option appended. */
function withOption(message: Uint8Array, code: number, data: readonly number[]): Uint8Array {
  const edns = parseMessage(message).edns!;
  const out = new Uint8Array([...message, code >> 8, code & 0xff, 0, data.length, ...data]);
  const rdlength = edns.end - edns.offset - 11 + 4 + data.length;
  out[edns.offset + 9] = rdlength >> 8;
  out[edns.offset + 10] = rdlength & 0xff;
  return out;
}

/** Runs dig and returns its header flags (`"qr aa rd ra"`), EDNS flags and whether it shows NSID. */
async function dig(port: number, args: string[]) {
  const { stdout, code } = await new Deno.Command("dig", {
    args: ["@127.0.0.1", "-p", String(port), "+tries=1", "+time=2", ...args],
    stdout: "piped",
    stderr: "null",
  }).output();
  const text = new TextDecoder().decode(stdout);
  assert.equal(code, 0, `dig ${args.join(" ")}: ${text}`);
  return {
    flags: /;; flags: ([a-z ]*);/.exec(text)?.[1],
    ednsFlags: /; EDNS: version: \d+, flags:([a-z ]*);/.exec(text)?.[1]?.trim(),
    nsid: /; NSID:/.test(text),
  };
}

testWith("dnsproxy answers as the RFCs say, beside unbound and dnsdist", needs, async (t) => {
  await using unbound = await startUnbound({ nsid: "upstream-id" });
  await using dnsdist = await startDnsdist(unbound.address);
  using proxy = new DnsProxy(settings(unbound.address));
  await using server = await serveDns(proxy, { listen: "127.0.0.1:0" });
  const triad = server.address.port;
  const peers = { unbound: unbound.port, dnsdist: dnsdist.port };

  await t.step("RD is copied from the query, from the cache too (RFC 1035 §4.1.1)", async () => {
    // Asked without recursion first: the answer is cached, then served to clients asking with.
    for (const rec of ["+norec", "+rec", "+norec", "+rec"]) {
      const label = `dig ${rec} mail.test MX`;
      const own = await dig(triad, [rec, "mail.test", "MX"]);
      assert.equal(own.flags?.split(" ").includes("rd"), rec === "+rec", label);
      assert.ok(own.flags?.split(" ").includes("ra"), `${label}: RA`);
      for (const [name, port] of Object.entries(peers)) {
        assert.equal(own.flags, (await dig(port, [rec, "mail.test", "MX"])).flags, name);
      }
    }
  });

  await t.step("NSID: never the upstream's, only to those who ask (RFC 5001 §2.2)", async () => {
    for (const ask of ["+nsid", "+nonsid", "+nsid"]) {
      const own = await dig(triad, [ask, "txt.test", "TXT"]);
      // The proxy has no identifier of its own, and must not copy the upstream's.
      assert.equal(own.nsid, false, `dig ${ask}: no NSID`);
    }
    // Peers: unbound sends its own only when asked; dnsdist passes it on only to those who ask.
    for (const port of Object.values(peers)) {
      assert.equal((await dig(port, ["+nonsid", "txt.test", "TXT"])).nsid, false);
      assert.equal((await dig(port, ["+nsid", "txt.test", "TXT"])).nsid, true);
    }
  });

  await t.step(
    "options of an upstream exchange are never passed on (RFC 7873, 7830, 8914)",
    async () => {
      // A relay to unbound that adds a server COOKIE, padding and an Extended DNS Error to every
      // reply, sets AD in it (as a validating upstream would), and records the queries it gets.
      const upstreamOptions: (number[] | undefined)[] = [];
      const upstreamFlags: number[] = [];
      await using relay = await startFakeUpstream(async (query, reply) => {
        upstreamOptions.push(optionCodes(query));
        upstreamFlags.push(flagsOf(query));
        let answer = await forward(unbound.port, query);
        if (answer === null) return;
        answer = withOption(answer, COOKIE, [...query.subarray(-8), 1, 1, 2, 2, 3, 3, 4, 4]);
        answer = withOption(answer, PADDING, new Array(20).fill(0));
        answer = withOption(answer, EDE, [0, 3]); // Stale Answer
        answer[3] = answer[3]! | AD;
        reply(answer);
      });
      using relayed = new DnsProxy(settings(relay.address));
      const client = { address: "127.0.0.1", port: 5300, transport: "udp" } as const;
      const plain = buildQuery({ id: 1, name: "a.test", type: RrType.A, recursionDesired: false });
      const withCookie = withOption(plain, COOKIE, [9, 8, 7, 6, 5, 4, 3, 2]);
      const askingAd = plain.slice();
      askingAd[3] = AD;
      const cases = [
        ["miss, client cookie", withCookie, false],
        ["hit", plain, false],
        ["hit, AD asked for", askingAd, true],
      ] as const;
      for (const [label, query, ad] of cases) {
        const answer = await relayed.handle(query, client);
        assert.deepEqual(optionCodes(answer!), [], `${label}: an OPT without options`);
        assert.equal(parseMessage(answer!).edns?.udpSize, 1232, label);
        // RFC 6840 §5.7: AD only to a query with AD or DO set.
        assert.equal(flagsOf(answer!) & AD, ad ? AD : 0, `${label}: AD`);
      }
      // The client's cookie was for the proxy; the upstream is asked with RD and AD set (the
      // answer is cached for everyone) and no options of the client's.
      assert.deepEqual(upstreamOptions, [[]]);
      assert.equal(upstreamFlags[0]! & (RD | AD), RD | AD);
    },
  );

  await t.step("DO is kept in the answers the proxy makes itself (RFC 3225 §3)", async () => {
    const dnssec = buildQuery({ id: 7, name: "a.test", type: RrType.A, dnssecOk: true });
    const version1 = dnssec.slice();
    version1[dnssec.length - 11 + 6] = 1; // EDNS version 1: BADVERS (RFC 6891 §6.1.3)
    const update = dnssec.slice();
    update[2] = 5 << 3; // opcode UPDATE: NOTIMP
    const noQuestion = buildQuery({ id: 7, name: "a.test", type: RrType.A, dnssecOk: true });
    const formerr = new Uint8Array([...noQuestion.subarray(0, 12), ...noQuestion.subarray(-11)]);
    formerr[5] = 0; // QDCOUNT 0: FORMERR
    const cases: [string, Uint8Array, number, boolean][] = [
      ["BADVERS", version1, Rcode.BADVERS, true],
      ["NOTIMP", update, Rcode.NOTIMP, true],
      ["FORMERR", formerr, Rcode.FORMERR, false],
    ];
    for (const [name, query, rcode, compare] of cases) {
      const own = (await queryUdp(triad, query))!;
      const info = parseMessage(own);
      assert.equal(info.rcode, rcode, name);
      assert.equal(info.edns?.dnssecOk, true, `${name}: DO`);
      assert.equal(info.edns?.version, 0, `${name}: version`);
      if (compare) {
        for (const [peer, port] of Object.entries(peers)) {
          const theirs = parseMessage((await queryUdp(port, query))!);
          assert.equal(theirs.rcode, rcode, `${peer} ${name}`);
          assert.equal(theirs.edns?.dnssecOk, true, `${peer} ${name}: DO`);
        }
      }
    }
    // Refused by the ACL (a client outside it).
    const refused = await proxy.handle(dnssec, {
      address: "192.0.2.1",
      port: 53,
      transport: "udp",
    });
    const info = parseMessage(refused!);
    assert.equal(info.rcode, Rcode.REFUSED);
    assert.equal(info.edns?.dnssecOk, true, "REFUSED: DO");
    assert.equal(info.question?.type, RrType.A, "REFUSED: the question echoed");
  });

  await t.step("RA is clear in answers to other opcodes than QUERY (RFC 2136 §2.2)", async () => {
    for (const opcode of [1, 2, 4, 5, 6]) {
      const query = buildQuery({ id: 9, name: "a.test", type: RrType.A });
      query[2] = (opcode << 3) | 1; // RD set, as dig sends it
      const own = (await queryUdp(triad, query))!;
      assert.equal((flagsOf(own) >> 11) & 0xf, opcode, `opcode ${opcode} echoed`);
      assert.equal(flagsOf(own) & RA, 0, `opcode ${opcode}: RA clear`);
      assert.equal(parseMessage(own).rcode, Rcode.NOTIMP, `opcode ${opcode}`);
      if (opcode === 2 || opcode === 5) {
        // unbound and dnsdist answer STATUS and UPDATE with NOTIMP and RA clear too.
        for (const [peer, port] of Object.entries(peers)) {
          assert.equal(flagsOf((await queryUdp(port, query))!) & RA, 0, `${peer} ${opcode}`);
        }
      }
    }
    const update = await dig(triad, ["+opcode=update", "a.test"]);
    assert.equal(update.flags, "qr rd");
    assert.equal(
      update.flags,
      (await dig(unbound.port, ["+opcode=update", "+noad", "a.test"])).flags,
    );
  });

  await t.step(
    "ANY: the CNAME where there is one, HINFO where not, NXDOMAIN (RFC 8482)",
    async () => {
      const any = (name: string, id = 11) => buildQuery({ id, name, type: RrType.ANY });
      for (const round of ["miss", "hit"]) {
        // www.test has a CNAME: RFC 8482 §4.2 allows the synthesized HINFO only where there is
        // none; the CNAME RRset owned by the name is the answer (§4.1), as unbound and dnsdist give.
        const cname = (await queryUdp(triad, any("www.test")))!;
        const info = parseMessage(cname);
        assert.equal(info.question?.type, RrType.ANY, round);
        assert.equal(info.counts[1], 1, round);
        assert.equal(new DataView(cname.buffer).getUint16(info.ttlOffsets[0]! - 4), RrType.CNAME);
        for (const [peer, port] of Object.entries(peers)) {
          assert.equal(
            normalized(cname),
            normalized((await queryUdp(port, any("www.test")))!),
            peer,
          );
        }
        // A name that does not exist: NXDOMAIN with the upstream's SOA, as unbound and dnsdist.
        const nx = (await queryUdp(triad, any("nx.test")))!;
        assert.equal(parseMessage(nx).rcode, Rcode.NXDOMAIN, round);
        for (const [peer, port] of Object.entries(peers)) {
          assert.equal(normalized(nx), normalized((await queryUdp(port, any("nx.test")))!), peer);
        }
        // A name that exists without a CNAME: one synthesized HINFO (RFC 8482 §4.2).
        const hinfo = (await queryUdp(triad, any("a.test")))!;
        assert.deepEqual(parseMessage(hinfo).counts, [1, 1, 0, 1], round);
        assert.match(new TextDecoder().decode(hinfo), /RFC8482/);
      }
    },
  );
});
