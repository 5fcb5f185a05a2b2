/**
 * The defence filter (`dnsproxy/bpf/dnsfilter.bpf.c`) on the real kernel through
 * `BPF_PROG_TEST_RUN`: what it parses, what it drops, what it always passes.
 *
 * @module
 */
import assert from "node:assert/strict";
import { ipToBytes } from "@triad/core";
import { buildQuery } from "../dnsproxy/wire/builders.ts";
import { KernelFilter, ktimeNs } from "../dnsproxy/defence/kernel_filter.ts";
import { DnsfilterObject } from "../dnsproxy/bpf/dnsfilter.gen.ts";
import { nameHash } from "../dnsproxy/defence/name_hash.ts";
import { bpfCapabilities, btf, command, libbpf, netAdmin, testWith } from "./requirements.ts";
import { createVethPair } from "./ebpf_netns.ts";
import { LeakTracker } from "./ebpf_leak_check.ts";
import { pollUntil } from "./wait_for.ts";

const needs = [bpfCapabilities, btf, libbpf, command("bpftool")];
const XDP_DROP = 1;
const XDP_PASS = 2;

interface FrameOptions {
  source: string;
  name?: string;
  port?: number;
  protocol?: "udp" | "tcp";
  vlans?: number;
  response?: boolean;
  fragment?: boolean;
}

/** Ethernet (+ VLAN tags) + IPv4/IPv6 + UDP (or a TCP header) + a DNS query. */
function frame(options: FrameOptions): Uint8Array {
  const src = ipToBytes(options.source);
  const v6 = src.length === 16;
  const dns = buildQuery({ id: 7, name: options.name ?? "example.org.", type: 1 });
  if (options.response) dns[2] = dns[2]! | 0x80;
  const l4 = options.protocol === "tcp" ? 20 : 8;
  const ipLength = v6 ? 40 : 20;
  const vlans = options.vlans ?? 0;
  const out = new Uint8Array(14 + 4 * vlans + ipLength + l4 + dns.length);
  const view = new DataView(out.buffer);
  let pos = 12;
  for (let i = 0; i < vlans; i++) {
    view.setUint16(pos, i === 0 && vlans === 2 ? 0x88a8 : 0x8100);
    view.setUint16(pos + 2, 100 + i);
    pos += 4;
  }
  view.setUint16(pos, v6 ? 0x86dd : 0x0800);
  pos += 2;
  const proto = options.protocol === "tcp" ? 6 : 17;
  if (v6) {
    out[pos] = 0x60;
    view.setUint16(pos + 4, l4 + dns.length);
    out[pos + 6] = proto;
    out[pos + 7] = 64;
    out.set(src, pos + 8);
    out.set(ipToBytes("2001:db8::1"), pos + 24);
  } else {
    out[pos] = 0x45;
    view.setUint16(pos + 2, 20 + l4 + dns.length);
    if (options.fragment) view.setUint16(pos + 6, 0x2000);
    out[pos + 8] = 64;
    out[pos + 9] = proto;
    out.set(src, pos + 12);
    out.set(ipToBytes("192.0.2.1"), pos + 16);
  }
  pos += ipLength;
  view.setUint16(pos, 40000);
  view.setUint16(pos + 2, options.port ?? 5353);
  if (options.protocol !== "tcp") view.setUint16(pos + 4, 8 + dns.length);
  out.set(dns, pos + l4);
  return out;
}

testWith(
  "the defence filter drops blocked prefixes and names, passes the rest",
  needs,
  async () => {
    const leaks = new LeakTracker();
    {
      await using filterScope = new AsyncDisposableStack();
      const filter = await KernelFilter.open({ interfaces: [], port: 5353 });
      filterScope.defer(() => filter.close());
      leaks.add("prog", ...filter.ids.progs);
      leaks.add("map", ...filter.ids.maps);
      // The program object itself, for test runs: a second load of the same object.
      using object = DnsfilterObject.open({ globals: { dns_port: 5353 } });
      await object.load();
      leaks.add("prog", object.programs.dnsfilter_xdp.id);
      const maps = object.maps;
      const block = (rule: number, expires = 0n) => ({ expires_ns: expires, rule, action: 0 });
      maps.dnsfilter_v4.update({ prefixlen: 24, addr: ipToBytes("198.51.100.0") }, block(3));
      maps.dnsfilter_v6.update({ prefixlen: 32, addr: ipToBytes("2001:db8::") }, block(4));
      maps.dnsfilter_names.update(nameHash("bad.example"), block(5));
      maps.dnsfilter_v4.update({ prefixlen: 32, addr: ipToBytes("203.0.113.9") }, block(6, 1n));
      // Single addresses go into the hash maps (key: the address bytes as a little-endian u32).
      maps.dnsfilter_hosts4.update(
        new DataView(ipToBytes("192.0.2.77").buffer).getUint32(0, true),
        block(7),
      );
      maps.dnsfilter_hosts6.update({ addr: ipToBytes("2001:db8:1::5") }, block(7));
      const run0 = (source: string) =>
        object.programs.dnsfilter_xdp.testRun(frame({ source })).retval;
      assert.equal(run0("198.51.100.77"), XDP_PASS, "the tries are skipped while the count is 0");
      object.object.writeGlobal("prefix_blocks", 2);
      const run = (options: FrameOptions) =>
        object.programs.dnsfilter_xdp.testRun(frame(options)).retval;
      const tc = (options: FrameOptions) =>
        object.programs.dnsfilter_tc.testRun(frame(options)).retval;

      assert.equal(run({ source: "198.51.100.77" }), XDP_DROP, "blocked IPv4 prefix");
      assert.equal(run({ source: "198.51.101.77" }), XDP_PASS, "outside the prefix");
      assert.equal(run({ source: "2001:db8::99" }), XDP_DROP, "blocked IPv6 prefix");
      assert.equal(run({ source: "2001:db9::99" }), XDP_PASS);
      assert.equal(run({ source: "192.0.2.77" }), XDP_DROP, "a blocked IPv4 host (hash)");
      assert.equal(run({ source: "192.0.2.78" }), XDP_PASS);
      assert.equal(run({ source: "2001:db8:1::5" }), XDP_DROP, "a blocked IPv6 host (hash)");
      assert.equal(run({ source: "10.0.0.1", name: "bad.example." }), XDP_PASS, "no walk: count 0");
      object.object.writeGlobal("name_blocks", 1);
      assert.equal(run({ source: "10.0.0.1", name: "bad.example." }), XDP_DROP, "blocked name");
      assert.equal(run({ source: "10.0.0.1", name: "x.Y.BAD.example." }), XDP_DROP, "under it");
      assert.equal(run({ source: "10.0.0.1", name: "notbad.example." }), XDP_PASS, "label edge");
      assert.equal(run({ source: "10.0.0.1", name: "example." }), XDP_PASS, "a parent");
      maps.dnsfilter_names.update(nameHash("old.example"), block(8, 1n));
      assert.equal(run({ source: "10.0.0.1", name: "old.example." }), XDP_PASS, "expired name");
      maps.dnsfilter_names.update(nameHash("old.example"), block(8, ktimeNs() + 60_000_000_000n));
      assert.equal(run({ source: "10.0.0.1", name: "old.example." }), XDP_DROP, "live name");
      assert.equal(run({ source: "198.51.100.1", vlans: 1 }), XDP_DROP, "one VLAN tag");
      assert.equal(run({ source: "198.51.100.1", vlans: 2 }), XDP_DROP, "QinQ");
      assert.equal(run({ source: "198.51.100.1", protocol: "tcp" }), XDP_PASS, "never TCP");
      assert.equal(run({ source: "198.51.100.1", port: 53 }), XDP_PASS, "another port");
      assert.equal(run({ source: "198.51.100.1", fragment: true }), XDP_PASS, "a fragment");
      assert.equal(run({ source: "10.0.0.1", name: "bad.example.", response: true }), XDP_PASS);
      assert.equal(run({ source: "203.0.113.9" }), XDP_PASS, "an expired block");
      maps.dnsfilter_v4.update(
        { prefixlen: 32, addr: ipToBytes("203.0.113.9") },
        block(6, ktimeNs() + 60_000_000_000n),
      );
      assert.equal(run({ source: "203.0.113.9" }), XDP_DROP, "a block that has not expired");
      assert.equal(tc({ source: "198.51.100.77" }), 2, "tc: TC_ACT_SHOT");
      assert.equal(tc({ source: "10.0.0.1", name: "a.bad.example." }), 2);
      assert.equal(tc({ source: "10.0.0.1" }), 0, "tc: TC_ACT_OK");
      const drops = new Map<number, bigint>();
      for (const [rule, perCpu] of maps.dnsfilter_drops.entriesBatch()) {
        const total = (perCpu as unknown as { packets: bigint }[])
          .reduce((sum, c) => sum + c.packets, 0n);
        if (total > 0n) drops.set(rule as number, total);
      }
      assert.deepEqual(
        Object.fromEntries(drops),
        { 3: 4n, 4: 1n, 5: 3n, 6: 1n, 7: 2n, 8: 1n },
      );
    }
    await leaks.assertReleased();
  },
);

for (const mode of ["native", "generic", "tc"] as const) {
  testWith(
    `the defence filter drops queries from a blocked client on a veth (${mode})`,
    [...needs, netAdmin, command("ip", "iproute2")],
    async () => {
      const leaks = new LeakTracker();
      {
        await using pair = await createVethPair();
        const peer = pair.hostAddress.replace(/\.1$/, ".2");
        using filter = await KernelFilter.open({
          interfaces: [pair.hostInterface],
          port: 5399,
          mode,
        });
        assert.deepEqual(filter.attachments, [{ iface: pair.hostInterface, mode }]);
        leaks.add("prog", ...filter.ids.progs);
        leaks.add("map", ...filter.ids.maps);
        leaks.add("link", ...filter.ids.links);
        filter.blockPrefix(`${peer}/32`, 9, 0n);
        const flood = new URL("./dnsproxy_defence_flood.ts", import.meta.url).pathname;
        const output = await new Deno.Command("ip", {
          args: [
            "netns",
            "exec",
            pair.namespace,
            Deno.execPath(),
            "run",
            "-A",
            flood,
            peer,
            pair.hostAddress,
            "5399",
            "20",
            "veth.test",
            "0",
          ],
          stdout: "piped",
        }).output();
        assert.ok(output.success);
        await pollUntil(() => (filter.drops().get(9)?.packets ?? 0n) >= 20n, "20 counted drops");
        assert.equal(filter.drops().get(9)?.packets, 20n);
      }
      await leaks.assertReleased();
    },
  );
}
