/**
 * The `Deno.listen` (TCP) and `Deno.listenDatagram` (UDP, needs `--unstable-net`) echo servers
 * netloop is measured against: the plain idiomatic loops.
 *
 * Usage: deno run --allow-net [--unstable-net] deno_echo.ts PORT [udp|heap]
 *
 * With `heap`, each line `heap` on stdin prints the used heap (`_heap_report.ts`).
 *
 * @module
 */
const port = Number(Deno.args[0]);
if (Deno.args[1] === "heap") {
  const { answerHeapRequests, heapUsed } = await import("./_heap_report.ts");
  answerHeapRequests(heapUsed);
}
if (Deno.args[1] === "udp") {
  const listenDatagram = (Deno as unknown as {
    listenDatagram(options: { transport: "udp"; hostname: string; port: number }): {
      receive(buffer?: Uint8Array): Promise<[Uint8Array, Deno.Addr]>;
      send(data: Uint8Array, to: Deno.Addr): Promise<number>;
    };
  }).listenDatagram;
  const socket = listenDatagram({ transport: "udp", hostname: "127.0.0.1", port });
  const buffer = new Uint8Array(65536);
  for (;;) {
    const [data, from] = await socket.receive(buffer);
    await socket.send(data, from);
  }
} else {
  const listener = Deno.listen({ hostname: "127.0.0.1", port });
  for await (const conn of listener) {
    conn.setNoDelay(true);
    (async () => {
      const buffer = new Uint8Array(65536);
      try {
        for (;;) {
          const n = await conn.read(buffer);
          if (n === null) break;
          let off = 0;
          while (off < n) off += await conn.write(buffer.subarray(off, n));
        }
      } catch { /* reset */ }
      try {
        conn.close();
      } catch { /* closed */ }
    })();
  }
}
