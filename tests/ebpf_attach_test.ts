/**
 * Privileged integration tests of every attach kind on the real kernel: fentry, kprobe (probed
 * and skipped with the reason where the kernel lacks them), uprobe, tp_btf, cgroup skb, XDP and
 * tc on a veth pair into a network namespace the test creates, and BPF_PROG_TEST_RUN.
 *
 * @module
 */
import assert from "node:assert/strict";
import { cgroup2Mounts, features, type Program, UnsupportedFeatureError } from "@triad/ebpf";
import {
  bpfCapabilities,
  bpfTest,
  command,
  netAdmin,
  type Requirement,
  testWith,
  tracefs,
} from "./requirements.ts";
import { LeakTracker } from "./ebpf_leak_check.ts";
import { createVethPair, type VethPair } from "./ebpf_netns.ts";
import { pollUntil, waitFor } from "./wait_for.ts";
import dgram from "node:dgram";
import { AttachObject } from "./ebpf_bpf/attach.gen.ts";

const needs = [...bpfTest, tracefs];
const HIT = { fentry: 0, kprobe: 1, uprobe: 2, cgroup: 3, xdp: 4, tc: 5, tpBtf: 6 } as const;

/** A requirement met when an attach kind works on this kernel; the reason names the kernel. */
function attachKind(kind: "fentry" | "kprobe"): Requirement {
  return {
    name: kind,
    check: () => {
      if (bpfCapabilities.check() !== undefined) return bpfCapabilities.check();
      try {
        features.requireAttach(kind);
        return undefined;
      } catch (error) {
        return (error as Error).message;
      }
    },
  };
}

const libc = Deno.dlopen("libc.so.6", { getppid: { parameters: [], result: "i32" } });

/** Opens the attach object, loading only what this kernel can load. */
async function openAttach(): Promise<AttachObject> {
  const skeleton = AttachObject.open({
    globals: { target_tgid: Deno.pid, target_port: 9 },
    autoload: {
      on_file_open_fentry: features.attach("fentry"),
      on_file_open_kprobe: features.attach("kprobe"),
    },
  });
  try {
    await skeleton.load();
  } catch (error) {
    skeleton.close();
    throw error;
  }
  return skeleton;
}

function hits(skeleton: AttachObject, kind: number): bigint {
  return skeleton.maps.hits.lookup(kind) ?? 0n;
}

/** A requirement met where kprobes are NOT available (to test the error that says so). */
const kprobesMissing: Requirement = {
  name: "no kprobes",
  check: () => {
    const capabilities = bpfCapabilities.check();
    if (capabilities !== undefined) return capabilities;
    return features.attach("kprobe")
      ? "kprobes work on this kernel (the kprobe attach test covers them)"
      : undefined;
  },
};

/**
 * Sends `count` datagrams from the peer to `port`, then a marker datagram to a socket on the host
 * end, and returns once the marker arrived: the datagrams sent before it have passed the host's
 * ingress hooks by then, so a counter that did not move did not miss them by being early.
 */
async function sendThenMarker(veth: VethPair, count: number, port: number): Promise<void> {
  const socket = dgram.createSocket("udp4");
  await new Promise<void>((resolve) => socket.bind(0, veth.hostAddress, resolve));
  try {
    const marker = waitFor<unknown>(
      (fn) => {
        socket.on("message", fn);
        return () => socket.off("message", fn);
      },
      "the marker datagram on the host end",
      10_000,
    );
    await veth.sendUdp(count, port);
    await veth.sendUdp(1, socket.address().port);
    await marker;
  } finally {
    socket.close();
  }
}

testWith("Program.attachTrace() runs an fentry program on every call", [
  ...needs,
  attachKind("fentry"),
], async () => {
  const tracker = new LeakTracker();
  {
    using skeleton = await openAttach();
    tracker.addObject(skeleton.object);
    using link = skeleton.programs.on_file_open_fentry.attachTrace();
    tracker.add("link", link.id);
    const before = hits(skeleton, HIT.fentry);
    for (let i = 0; i < 5; i++) Deno.readTextFileSync("/proc/self/stat");
    assert.ok(hits(skeleton, HIT.fentry) - before >= 5n);
  }
  await tracker.assertReleased();
});

testWith(
  "Program.attachKprobe() runs a kprobe on every call",
  [...needs, attachKind("kprobe")],
  async () => {
    const tracker = new LeakTracker();
    {
      using skeleton = await openAttach();
      tracker.addObject(skeleton.object);
      using link = skeleton.programs.on_file_open_kprobe.attachKprobe("security_file_open");
      tracker.add("link", link.id);
      const before = hits(skeleton, HIT.kprobe);
      for (let i = 0; i < 5; i++) Deno.readTextFileSync("/proc/self/stat");
      assert.ok(hits(skeleton, HIT.kprobe) - before >= 5n);
    }
    await tracker.assertReleased();
  },
);

testWith(
  "Program.attachKprobe() raises UnsupportedFeatureError where kprobes are compiled out",
  [...needs, kprobesMissing],
  async () => {
    const tracker = new LeakTracker();
    {
      using skeleton = AttachObject.open({ autoload: { on_file_open_fentry: false } });
      await skeleton.load();
      tracker.addObject(skeleton.object);
      const program: Program = skeleton.programs.on_file_open_kprobe;
      assert.throws(
        () => program.attachKprobe("security_file_open"),
        (e) => e instanceof UnsupportedFeatureError && /CONFIG_KPROBE_EVENTS/.test(e.message),
      );
    }
    await tracker.assertReleased();
  },
);

testWith("Program.attachUprobe() counts calls of a libc function", needs, async () => {
  const tracker = new LeakTracker();
  const maps = Deno.readTextFileSync("/proc/self/maps");
  const libcPath = /\s(\/\S*libc\.so\.6)$/m.exec(maps)?.[1];
  assert.ok(libcPath, "libc is mapped");
  {
    using skeleton = await openAttach();
    tracker.addObject(skeleton.object);
    using link = skeleton.programs.on_uprobe.attachUprobe(libcPath, {
      function: "getppid",
      pid: Deno.pid,
    });
    tracker.add("link", link.id);
    for (let i = 0; i < 7; i++) libc.symbols.getppid();
    assert.equal(hits(skeleton, HIT.uprobe), 7n);
    link.close();
    using ret = skeleton.programs.on_uprobe.attachUprobe(libcPath, {
      function: "getppid",
      pid: Deno.pid,
      retprobe: true,
    });
    tracker.add("link", ret.id);
    assert.match(ret.description, /uretprobe/);
    for (let i = 0; i < 3; i++) libc.symbols.getppid();
    assert.equal(hits(skeleton, HIT.uprobe), 10n, "a uretprobe fires once per return");
  }
  await tracker.assertReleased();
});

testWith("Program.attach() and attachTrace() run a tp_btf program", needs, async () => {
  const tracker = new LeakTracker();
  {
    using skeleton = await openAttach();
    tracker.addObject(skeleton.object);
    {
      using link = skeleton.programs.on_sys_enter_btf.attach();
      tracker.add("link", link.id);
      for (let i = 0; i < 5; i++) libc.symbols.getppid();
      assert.ok(hits(skeleton, HIT.tpBtf) >= 5n);
    }
    // The explicit form, and nothing counted in between.
    const between = hits(skeleton, HIT.tpBtf);
    for (let i = 0; i < 5; i++) libc.symbols.getppid();
    assert.equal(hits(skeleton, HIT.tpBtf), between);
    using link = skeleton.programs.on_sys_enter_btf.attachTrace();
    tracker.add("link", link.id);
    for (let i = 0; i < 5; i++) libc.symbols.getppid();
    assert.ok(hits(skeleton, HIT.tpBtf) - between >= 5n);
  }
  await tracker.assertReleased();
});

const cgroup2: Requirement = {
  name: "cgroup2",
  check: () =>
    cgroup2Mounts().length > 0
      ? undefined
      : "needs cgroup v2: mount -t cgroup2 none /sys/fs/cgroup",
};

testWith(
  "Program.attachCgroup() counts a cgroup's egress packets",
  [...needs, cgroup2],
  async () => {
    const tracker = new LeakTracker();
    const cgroup = `${cgroup2Mounts()[0]}/triad_test_${Deno.pid}`;
    Deno.mkdirSync(cgroup);
    try {
      using skeleton = await openAttach();
      tracker.addObject(skeleton.object);
      using link = skeleton.programs.count_cgroup_egress.attachCgroup(cgroup);
      tracker.add("link", link.id);
      // A child joins the cgroup and sends 3 datagrams from a fixed port: the ephemeral range
      // may be exhausted by other load on loopback (connect fails with EAGAIN then).
      const sender = `
        Deno.writeTextFileSync(${JSON.stringify(`${cgroup}/cgroup.procs`)}, String(Deno.pid));
        let socket;
        for (let port = ${20000 + (Deno.pid % 20000)}, tries = 0; !socket; port++, tries++) {
          try { socket = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port }); }
          catch (error) { if (tries > 20) throw error; }
        }
        for (let i = 0; i < 3; i++) {
          await socket.send(new Uint8Array([1]), { transport: "udp", hostname: "127.0.0.1", port: 9 });
        }
        socket.close();
      `;
      const output = await new Deno.Command(Deno.execPath(), {
        args: ["eval", "--unstable-net", sender],
        stdout: "piped",
        stderr: "piped",
      }).output();
      assert.ok(output.success, `the sender failed: ${new TextDecoder().decode(output.stderr)}`);
      assert.ok(hits(skeleton, HIT.cgroup) >= 3n, `counted ${hits(skeleton, HIT.cgroup)} packets`);
    } finally {
      await pollUntil(
        () => {
          try {
            Deno.removeSync(cgroup);
            return true;
          } catch {
            return false;
          }
        },
        "the cgroup is empty",
        10_000,
      );
    }
    await tracker.assertReleased();
  },
);

testWith(
  "Program.attachXdp() and attachTc() see packets on a veth pair in a new netns",
  [...needs, netAdmin, command("ip", "iproute2"), command("bash")],
  async (t) => {
    const tracker = new LeakTracker();
    {
      await using veth = await createVethPair();
      using skeleton = await openAttach();
      tracker.addObject(skeleton.object);

      await t.step("XDP on the host end counts every datagram", async () => {
        using link = skeleton.programs.count_xdp.attachXdp(veth.hostInterface);
        tracker.add("link", link.id);
        await veth.sendUdp(4, 9);
        await veth.sendUdp(2, 10); // another port: not counted
        await pollUntil(() => hits(skeleton, HIT.xdp) === 4n, "4 datagrams were counted", 10_000);
      });

      await t.step("generic (skb mode) XDP counts too", async () => {
        skeleton.maps.hits.update(HIT.xdp, 0n);
        using link = skeleton.programs.count_xdp.attachXdp(veth.hostInterface, { mode: "generic" });
        tracker.add("link", link.id);
        assert.match(link.description, /generic XDP/);
        await veth.sendUdp(3, 9);
        await pollUntil(() => hits(skeleton, HIT.xdp) === 3n, "3 datagrams were counted", 10_000);
      });

      await t.step("tc ingress counts every datagram and detaches on close", async () => {
        {
          using link = skeleton.programs.count_tc.attachTc(veth.hostInterface, {
            direction: "ingress",
          });
          if (link.fd >= 0) tracker.add("link", link.id);
          await veth.sendUdp(3, 9);
          await pollUntil(() => hits(skeleton, HIT.tc) === 3n, "3 datagrams were counted", 10_000);
        }
        await sendThenMarker(veth, 2, 9);
        assert.equal(hits(skeleton, HIT.tc), 3n, "nothing is counted after the link closed");
      });

      await t.step("tc through a netlink clsact filter, removed on close", async () => {
        skeleton.maps.hits.update(HIT.tc, 0n);
        {
          using link = skeleton.programs.count_tc.attachTc(veth.hostInterface, { mode: "netlink" });
          assert.equal(link.fd, -1);
          assert.match(link.description, /netlink/);
          await veth.sendUdp(2, 9);
          await pollUntil(() => hits(skeleton, HIT.tc) === 2n, "2 datagrams were counted", 10_000);
        }
        await sendThenMarker(veth, 2, 9);
        assert.equal(hits(skeleton, HIT.tc), 2n, "nothing is counted after the filter was removed");
      });
    }
    await tracker.assertReleased();
  },
);

/** An Ethernet + IPv4 + UDP packet to a port. */
function udpPacket(port: number): Uint8Array {
  const packet = new Uint8Array(14 + 20 + 8 + 4);
  const view = new DataView(packet.buffer);
  view.setUint16(12, 0x0800); // IPv4
  packet[14] = 0x45; // version 4, ihl 5
  view.setUint16(16, 20 + 8 + 4);
  packet[22] = 64; // ttl
  packet[23] = 17; // UDP
  packet.set([10, 0, 0, 2], 26);
  packet.set([10, 0, 0, 1], 30);
  view.setUint16(34, 5555);
  view.setUint16(36, port);
  view.setUint16(38, 12);
  return packet;
}

testWith("Program.testRun() runs an XDP program on a given packet", needs, async () => {
  const tracker = new LeakTracker();
  {
    using skeleton = await openAttach();
    tracker.addObject(skeleton.object);
    const xdp = skeleton.programs.count_xdp;
    const result = xdp.testRun(udpPacket(9));
    assert.equal(result.retval, 2); // XDP_PASS
    assert.deepEqual(result.data, udpPacket(9));
    assert.equal(hits(skeleton, HIT.xdp), 1n);
    assert.equal(xdp.testRun({ data: udpPacket(53), repeat: 10 }).retval, 2);
    assert.equal(hits(skeleton, HIT.xdp), 1n);
  }
  await tracker.assertReleased();
});
