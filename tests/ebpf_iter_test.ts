/**
 * Privileged tests of iterator programs (bpf_iter) on the real kernel: `iter/task` read as lines,
 * `iter/bpf_map_elem` over a map written from TypeScript (`ebpf_bpf/iter.bpf.c`), and the
 * tracer's `iter/tcp` (`ebpf/bpf/tcp_snapshot.bpf.c`) read as binary records while this process
 * holds real TCP sockets.
 *
 * @module
 */
import assert from "node:assert/strict";
import { BpfError, readIterator } from "@triad/ebpf";
import { bpfTest, kernelAtLeast, testWith } from "./requirements.ts";
import { LeakTracker } from "./ebpf_leak_check.ts";
import { IterObject } from "./ebpf_bpf/iter.gen.ts";
import {
  TCP_SOCKET_SIZE,
  TcpSnapshotObject,
  type TcpSocket,
  TcpSocketView,
} from "../ebpf/bpf/tcp_snapshot.gen.ts";

const TCP_ESTABLISHED = 1;
const TCP_LISTEN = 10;

const needs = [
  ...bpfTest,
  // Task and map element iterators came in 5.8, the TCP iterator (with bpf_seq_write) in 5.9.
  kernelAtLeast(5, 9, "bpf_iter over tasks, TCP sockets and map elements"),
];

testWith("Iterator programs list tasks, TCP sockets and map elements", needs, async (t) => {
  const tracker = new LeakTracker();
  {
    // Some kernels refuse the map element iterator with EPERM (this one also forbids fentry):
    // then it is skipped with the error, and the task and TCP iterators are still tested.
    let mapElemSkip: string | undefined;
    let loaded: IterObject | undefined;
    try {
      loaded = IterObject.open();
      await loaded.load();
    } catch (error) {
      loaded?.close();
      if (!(error instanceof BpfError) || !/dump_numbers/.test(error.message)) throw error;
      mapElemSkip = `iter/bpf_map_elem does not load on kernel ${Deno.osRelease()}: ` +
        error.message.split("\n")[0];
      console.error(`SKIP iter/bpf_map_elem: ${mapElemSkip}`);
      loaded = IterObject.open({ autoload: { dump_numbers: false } });
      await loaded.load();
    }
    using obj = loaded;
    tracker.addObject(obj.object);
    using tcp = TcpSnapshotObject.open();
    await tcp.load();
    for (const program of tcp.object.programs) tracker.add("prog", program.id);

    await t.step("iter/task: one line per process, this one among them", async () => {
      using link = obj.programs.dump_task.attachIter();
      tracker.add("link", link.id);
      const lines: string[] = [];
      for await (const line of readIterator(link).lines()) lines.push(line);
      assert.ok(lines.length > 1, `${lines.length} lines`);
      assert.ok(lines.every((line) => /^\d+ \S/.test(line)), lines.find((l) => !/^\d+ /.test(l)));
      assert.ok(lines.includes(`${Deno.pid} deno`), `no line for pid ${Deno.pid}`);
      // Every run walks the tasks anew.
      const again = await readIterator(link).text();
      assert.ok(again.includes(`\n${Deno.pid} deno\n`) || again.startsWith(`${Deno.pid} deno\n`));
    });

    await t.step("iter/tcp: sockets that exist before the run, as records", async () => {
      using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      const port = listener.addr.port;
      using client = await Deno.connect({ hostname: "127.0.0.1", port });
      using server = await listener.accept();
      const clientPort = (client.localAddr as Deno.NetAddr).port;
      using link = tcp.programs.list_tcp.attachIter();
      tracker.add("link", link.id);
      const sockets: TcpSocket[] = [];
      for await (const record of readIterator(link).records(TCP_SOCKET_SIZE)) {
        sockets.push(new TcpSocketView(record).toObject());
      }
      const loopback = (s: TcpSocket) =>
        s.family === 2 && s.local_addr.slice(0, 4).join(".") === "127.0.0.1";
      assert.ok(
        sockets.some((s) => loopback(s) && s.state === TCP_LISTEN && s.local_port === port),
        `no listener on ${port}`,
      );
      assert.ok(
        sockets.some((s) =>
          loopback(s) && s.state === TCP_ESTABLISHED && s.local_port === clientPort &&
          s.remote_port === port
        ),
        `no client socket ${clientPort} → ${port}`,
      );
      assert.ok(
        sockets.some((s) =>
          loopback(s) && s.state === TCP_ESTABLISHED && s.local_port === port &&
          s.remote_port === clientPort
        ),
        `no server socket ${port} → ${clientPort}`,
      );
      assert.ok(server.localAddr);
    });

    await t.step({
      name: "iter/bpf_map_elem: every element of the map it is attached to",
      ignore: mapElemSkip !== undefined,
      fn: async () => {
        obj.maps.numbers.update(1, 10n);
        obj.maps.numbers.update(7, 70n);
        using link = obj.programs.dump_numbers.attachIter({ map: obj.maps.numbers });
        tracker.add("link", link.id);
        const lines: string[] = [];
        for await (const line of readIterator(link).lines()) lines.push(line);
        assert.deepEqual(lines.toSorted(), ["1=10", "7=70"]);
        obj.maps.numbers.delete(1);
        assert.equal(await readIterator(link).text(), "7=70\n");
      },
    });

    await t.step({
      name: "a map element iterator without its map is refused, naming the program",
      ignore: mapElemSkip !== undefined,
      fn: () => {
        assert.throws(
          () => obj.programs.dump_numbers.attachIter(),
          (error: unknown) =>
            error instanceof BpfError && /dump_numbers/.test(error.message) &&
            /iterator/.test(error.message),
        );
      },
    });

    await t.step("records() of the wrong size says how many bytes were left over", async () => {
      // A record larger than all the iterator writes (a multiple of TCP_SOCKET_SIZE per socket):
      // with at least one socket (the listener) the end always falls inside the first record.
      // (A size of 53 failed the test whenever the socket count was a multiple of 53.)
      using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      const size = (1 << 24) + 5;
      using link = tcp.programs.list_tcp.attachIter();
      tracker.add("link", link.id);
      await assert.rejects(async () => {
        for await (const _ of readIterator(link).records(size)) {
          // reading
        }
      }, new RegExp(`ended inside a record: \\d+ bytes left over with records of ${size} bytes`));
      assert.ok(listener.addr);
    });
  }
  await tracker.assertReleased();
});
