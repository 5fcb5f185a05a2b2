/**
 * A client for the scale test, run as its own process (its own fd limit): opens N connections to
 * 127.0.0.1:PORT, sends a byte on each and reads it back, prints `open N`, waits for a line on
 * stdin, then closes them all and prints `closed`.
 *
 * Usage: deno run --allow-net tests/netloop_many_clients.ts PORT N
 *
 * @module
 */
const port = Number(Deno.args[0]);
const count = Number(Deno.args[1] ?? 10000);
const conns: Deno.TcpConn[] = [];
const one = new Uint8Array([42]);
const batch = 250;
for (let i = 0; i < count; i += batch) {
  const opened = await Promise.all(
    Array.from({ length: Math.min(batch, count - i) }, async () => {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      await conn.write(one);
      const reply = new Uint8Array(1);
      if ((await conn.read(reply)) !== 1 || reply[0] !== 42) throw new Error("bad echo");
      return conn;
    }),
  );
  conns.push(...opened);
}
console.log(`open ${conns.length}`);
const reader = Deno.stdin.readable.getReader();
await reader.read();
for (const conn of conns) conn.close();
console.log("closed");
