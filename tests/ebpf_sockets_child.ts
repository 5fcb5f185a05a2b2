/**
 * Run by `ebpf_sockets_test.ts` inside a network namespace it created (`ip netns exec`): loads
 * `ebpf_bpf/sockets.bpf.c` (or, with `netfilter`, `ebpf_bpf/netfilter.bpf.c`), makes real loopback TCP sockets with libc (socket maps take file
 * descriptors, which Deno's own sockets do not show), lets the programs redirect real traffic,
 * and prints what happened as one JSON line (with the ids of what it created, for the leak check).
 *
 * @module
 */
import { SocketsObject } from "./ebpf_bpf/sockets.gen.ts";
import { NetfilterObject } from "./ebpf_bpf/netfilter.gen.ts";

const libc = Deno.dlopen("libc.so.6", {
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  bind: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  listen: { parameters: ["i32", "i32"], result: "i32" },
  connect: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  accept: { parameters: ["i32", "pointer", "pointer"], result: "i32" },
  send: { parameters: ["i32", "buffer", "usize", "i32"], result: "isize" },
  recv: { parameters: ["i32", "buffer", "usize", "i32"], result: "isize" },
  setsockopt: { parameters: ["i32", "i32", "i32", "buffer", "u32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
});
const AF_INET = 2;
const SOCK_STREAM = 1;
const SOL_SOCKET = 1;
const SO_RCVTIMEO = 20;
const SO_SNDTIMEO = 21;

function address(port: number): Uint8Array<ArrayBuffer> {
  const sa = new Uint8Array(16);
  const view = new DataView(sa.buffer);
  view.setUint16(0, AF_INET, true);
  view.setUint16(2, port, false);
  sa.set([127, 0, 0, 1], 4);
  return sa;
}

function check(rc: number | bigint, what: string): number {
  if (Number(rc) < 0) throw new Error(`${what} failed`);
  return Number(rc);
}

function tcpSocket(): number {
  const fd = check(libc.symbols.socket(AF_INET, SOCK_STREAM, 0), "socket");
  // Bounded: a receive that gets nothing fails after 2 s instead of hanging the test.
  const timeout = new BigInt64Array([2n, 0n]);
  libc.symbols.setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, new Uint8Array(timeout.buffer), 16);
  // A connect whose SYN is dropped gives up after 0.5 s.
  const connectTimeout = new BigInt64Array([0n, 500_000n]);
  libc.symbols.setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, new Uint8Array(connectTimeout.buffer), 16);
  return fd;
}

function listenOn(port: number): number {
  const fd = tcpSocket();
  check(libc.symbols.bind(fd, address(port), 16), `bind ${port}`);
  check(libc.symbols.listen(fd, 8), `listen ${port}`);
  return fd;
}

function connectTo(port: number): number {
  const fd = tcpSocket();
  check(libc.symbols.connect(fd, address(port), 16), `connect to ${port}`);
  return fd;
}

function accept(fd: number): number {
  return check(libc.symbols.accept(fd, null, null), "accept");
}

function send(fd: number, text: string): void {
  const bytes = new TextEncoder().encode(text);
  check(libc.symbols.send(fd, bytes, BigInt(bytes.length), 0), "send");
}

function receive(fd: number): string {
  const buffer = new Uint8Array(256);
  const n = Number(libc.symbols.recv(fd, buffer, 256n, 0));
  return n < 0 ? "(nothing)" : new TextDecoder().decode(buffer.subarray(0, n));
}

const [listenPort, steeredPort] = [7301, 7302];

/** A connection to the listener on listenPort: its client and server ends (closed at exit). */
function connection(listener: number): [client: number, server: number] {
  const client = connectTo(listenPort);
  const server = accept(listener);
  fds.push(client, server);
  return [client, server];
}
const result: Record<string, unknown> = {};
const ids = { prog: [] as number[], map: [] as number[], link: [] as number[] };
const fds: number[] = [];
if (Deno.args[0] === "netfilter") {
  try {
    using obj = NetfilterObject.open({ globals: { blocked_port: steeredPort } });
    await obj.load();
    for (const program of obj.object.programs) ids.prog.push(program.id);
    for (const map of obj.object.maps) ids.map.push(map.id);
    const listener = listenOn(listenPort);
    fds.push(listener);
    const outcome = (port: number) => {
      const fd = tcpSocket();
      fds.push(fd);
      return libc.symbols.connect(fd, address(port), 16) === 0 ? "connected" : "failed";
    };
    {
      using link = obj.programs.block_port.attachNetfilter({ family: 4, hook: "local_in" });
      ids.link.push(link.id);
      result.open = outcome(listenPort);
      result.blocked = outcome(steeredPort);
      result.dropped = Number(obj.readGlobal("dropped"));
      result.seen = Number(obj.readGlobal("seen"));
    }
    const before = Number(obj.readGlobal("seen"));
    result.afterDetach = outcome(steeredPort);
    result.seenAfterDetach = Number(obj.readGlobal("seen")) - before;
  } catch (error) {
    result.error = String((error as Error).stack ?? error);
  } finally {
    for (const fd of fds) libc.symbols.close(fd);
  }
  console.log(JSON.stringify({ ...result, ids }));
  Deno.exit(0);
}

try {
  using obj = SocketsObject.open({ globals: { steered_port: steeredPort } });
  await obj.load();
  for (const program of obj.object.programs) ids.prog.push(program.id);
  for (const map of obj.object.maps) ids.map.push(map.id);

  // sk_lookup: a connection to steeredPort (nothing listens there) reaches the listener.
  {
    const listener = listenOn(listenPort);
    fds.push(listener);
    obj.maps.listener.update(0, BigInt(listener));
    using link = obj.programs.steer.attachNetns("/proc/self/ns/net");
    ids.link.push(link.id);
    const client = connectTo(steeredPort);
    const server = accept(listener);
    fds.push(client, server);
    send(client, "steered");
    result.skLookup = { received: receive(server), steered: Number(obj.readGlobal("steered")) };
  }
  // After the link closed, the port is no longer steered: the connection is refused.
  {
    const fd = tcpSocket();
    fds.push(fd);
    result.afterDetach = libc.symbols.connect(fd, address(steeredPort), 16) < 0
      ? "refused"
      : "connected";
  }
  // sk_skb stream verdict: what server A receives goes out of server B to client B.
  {
    const [clientA, serverA] = connection(fds[0]!);
    const [clientB, serverB] = connection(fds[0]!);
    using link = obj.programs.forward.attachToMap(obj.maps.forward_map);
    ids.link.push(link.id);
    obj.maps.forward_map.update(0, BigInt(serverA));
    obj.maps.forward_map.update(1, BigInt(serverB));
    send(clientA, "forwarded");
    result.skSkb = {
      clientB: receive(clientB),
      forwarded: Number(obj.readGlobal("forwarded")),
    };
  }
  // sk_msg verdict: what client C sends lands in server D's receive queue.
  {
    const [clientC] = connection(fds[0]!);
    const [, serverD] = connection(fds[0]!);
    using link = obj.programs.redirect.attachToMap(obj.maps.redirect_hash);
    ids.link.push(link.id);
    obj.maps.redirect_hash.update(1, BigInt(clientC));
    obj.maps.redirect_hash.update(2, BigInt(serverD));
    send(clientC, "redirected");
    result.skMsg = {
      serverD: receive(serverD),
      redirected: Number(obj.readGlobal("redirected")),
    };
  }
} catch (error) {
  result.error = String((error as Error).stack ?? error);
} finally {
  for (const fd of fds) libc.symbols.close(fd);
}
console.log(JSON.stringify({ ...result, ids }));
