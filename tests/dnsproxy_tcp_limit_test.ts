/**
 * `tcp.max_connections` on netloop: past it, a new TCP client is closed as it connects; the ones
 * held are still answered, and once one leaves a new one is served.
 */
import assert from "node:assert/strict";
import { serveDnsOnNetloop } from "@triad/dnsproxy";
import { createLogger } from "@triad/core";
import { ioUring, linux, type Requirement, testWith } from "./requirements.ts";

const MAX = 5;
/** A query the proxy answers itself (FORMERR: QDCOUNT 1 without a question), framed. */
const QUERY = new Uint8Array([0, 12, 0x12, 0x34, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0]);

async function answered(conn: Deno.Conn): Promise<boolean> {
  await conn.write(QUERY);
  const n = await conn.read(new Uint8Array(512)).catch(() => null);
  return n !== null && n > 0;
}

for (const backend of ["portable", "epoll", "uring"] as const) {
  const needs: Requirement[] = backend === "uring" ? [linux, ioUring] : [linux];
  testWith(`dnsproxy on ${backend} holds at most tcp.max_connections`, needs, async () => {
    await using server = await serveDnsOnNetloop(
      { upstream: { upstreams: ["127.0.0.1:9"], healthCheck: 0, timeout: 1000 } },
      {
        listen: "127.0.0.1:0",
        backend,
        loops: 1,
        maxConnections: MAX,
        logger: createLogger({ level: "warn" }),
      },
    );
    const port = server.address.port;
    const held: Deno.Conn[] = [];
    try {
      for (let i = 0; i < MAX; i++) {
        held.push(await Deno.connect({ hostname: "127.0.0.1", port }));
        assert.ok(await answered(held[i]!), `client ${i} answered`);
      }
      const extra = await Deno.connect({ hostname: "127.0.0.1", port });
      held.push(extra);
      assert.equal(await answered(extra), false, "a client past the limit is closed");
      assert.ok(await answered(held[0]!), "a held client is still answered");
      held[1]!.close();
      // The server notices the close on its next turn; a new client is served once it has.
      let served = false;
      for (let attempt = 0; attempt < 50 && !served; attempt++) {
        const next = await Deno.connect({ hostname: "127.0.0.1", port });
        held.push(next);
        served = await answered(next);
      }
      assert.ok(served, "no client served after one left");
    } finally {
      for (const conn of held) {
        try {
          conn.close();
        } catch { /* closed */ }
      }
    }
  });
}
