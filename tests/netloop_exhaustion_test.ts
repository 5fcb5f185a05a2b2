/**
 * Running out of descriptors: a server under a low `ulimit -n`, flooded with more connections than
 * it may hold, stays quiet (little CPU, a short log), keeps echoing on what it holds, fails dials
 * with a clear error, and accepts the waiting connections once held ones close. On every backend.
 */
import assert from "node:assert/strict";
import { ioUring, linux, type Requirement, testWith } from "./requirements.ts";
import { BACKENDS, eventually, type LoopStats } from "./netloop_support.ts";
import {
  cpuSeconds,
  fdCount,
  type LimitedChild,
  limitedChild,
  lineCount,
  tail,
} from "./process_support.ts";

/** The child's descriptor limit (soft and hard). */
const LIMIT = 256;
/** Connections beyond what the child can hold (they wait in its listen backlog). */
const BEYOND = 80;
/** Held connections closed to make room for waiting ones. */
const CLOSE = 20;
/** How long the child's CPU is measured while it is out of descriptors. */
const WINDOW_MS = 2000;
/**
 * The most of a core the child may use in that window: 10%, or 50% in the VM guest under software
 * emulation (`TRIAD_VM_ACCEL=tcg`, about 12x slower), where accepting the 20 new connections and
 * the back-off's re-arm alone took 10.2% in one CI run. A spinning loop uses 100% either way.
 */
const CPU_BOUND = Deno.env.get("TRIAD_VM_ACCEL") === "tcg" ? 0.5 : 0.1;
/** Dials asked of the child while it is out of descriptors. */
const DIALS = 64;
const ECHO = new Uint8Array([7]);

/** A client connection whose reply to one message is awaited in the background. */
class Client {
  echoed = false;
  constructor(readonly conn: Deno.TcpConn, readonly message: Uint8Array) {}

  /** Sends the message and notes when a reply comes back. */
  async start(): Promise<void> {
    await this.conn.write(this.message);
    void this.conn.read(new Uint8Array(512)).then((n) => {
      if (n !== null && n > 0) this.echoed = true;
    }, () => {});
  }
}

/** What {@linkcode flood} needs to know about the server in the child. */
export interface FloodTarget {
  child: LimitedChild;
  port: number;
  /** What a client sends (and sends again to check it is still served). */
  message: Uint8Array;
  /** Accepts the server counted as failed for lack of descriptors. */
  acceptFailures(): Promise<number>;
  /** Runs while the server is out of descriptors (after the CPU window). */
  whileFull?(): Promise<void>;
}

/**
 * Floods the server in a child under `ulimit -n LIMIT` with more connections than it may hold and
 * checks that it survives: little CPU, a short log, held connections served, waiting ones let in
 * as held ones close.
 */
export async function flood(target: FloodTarget): Promise<void> {
  const { child, port, message } = target;
  const room = LIMIT - fdCount(child.pid);
  const clients: Client[] = [];
  const connect = async () => {
    const client = new Client(await Deno.connect({ hostname: "127.0.0.1", port }), message);
    clients.push(client);
    await client.start();
    return client;
  };
  try {
    for (let i = 0; i < room + BEYOND; i++) await connect();
    // Full: the child has failed to accept at least once...
    assert.ok(
      await eventually(async () => (await target.acceptFailures()) > 0, 10_000),
      `no accept failure counted; child holds ${fdCount(child.pid)} fds`,
    );
    // ...and has given its reserve back: the runtime has descriptors to work with.
    // (Each time accepting fills the table there is a moment without any, until the loop hears
    // of it and gives its reserve back.)
    assert.ok(
      await eventually(() => LIMIT - fdCount(child.pid) >= 16),
      `${LIMIT - fdCount(child.pid)} descriptors left to the child's runtime`,
    );
    assert.ok(
      await eventually(() => clients.filter((c) => c.echoed).length >= room - 16, 10_000),
      `only ${clients.filter((c) => c.echoed).length} of about ${room} served`,
    );
    // About BEYOND wait in the backlog; a few fewer when the child's runtime closed descriptors of
    // its own after `room` was counted (79 of 80 in one run in the slow VM guest). The accept
    // failure above already shows the table was full; this shows clients are left waiting.
    const waiting = clients.filter((c) => !c.echoed);
    assert.ok(
      waiting.length >= BEYOND - 16,
      `${waiting.length} waiting, expected about ${BEYOND}`,
    );

    // Out of descriptors for WINDOW_MS, with more connections arriving: CPU stays low.
    const cpuBefore = cpuSeconds(child.pid);
    const started = performance.now();
    for (let i = 0; i < 20; i++) waiting.push(await connect());
    await new Promise((resolve) => setTimeout(resolve, WINDOW_MS));
    const cpu = (cpuSeconds(child.pid) - cpuBefore) / ((performance.now() - started) / 1000);
    assert.ok(
      cpu < CPU_BOUND,
      `child used ${(cpu * 100).toFixed(1)}% of a core while out of fds (bound ${
        CPU_BOUND * 100
      }%)`,
    );

    // Held connections are still served.
    for (const client of clients.filter((c) => c.echoed).slice(0, 10)) {
      await client.conn.write(message);
      assert.ok(((await client.conn.read(new Uint8Array(512))) ?? 0) > 0);
    }
    await target.whileFull?.();

    // Closing held connections lets waiting ones in, as many as were closed (less the few
    // descriptors the runtime took meanwhile: the reserve is whole again before any accept).
    const closing = clients.filter((c) => c.echoed).slice(-CLOSE);
    for (const client of closing) client.conn.close();
    for (const client of closing) clients.splice(clients.indexOf(client), 1);
    assert.ok(
      await eventually(() => waiting.filter((c) => c.echoed).length >= CLOSE - 5, 10_000),
      `${waiting.filter((c) => c.echoed).length} of the waiting served after ${CLOSE} closed`,
    );
    const lines = await lineCount(child.log);
    assert.ok(lines <= 10, `the child logged ${lines} lines: ${await tail(child.log)}`);
  } finally {
    for (const client of clients) {
      try {
        client.conn.close();
      } catch { /* closed */ }
    }
  }
}

for (const backend of BACKENDS) {
  const needs: Requirement[] = backend === "uring" ? [linux, ioUring] : [linux];
  testWith(`${backend} survives running out of descriptors`, needs, async () => {
    await using child = await limitedChild(
      new URL("./netloop_exhaustion_child.ts", import.meta.url).pathname,
      [backend],
      LIMIT,
    );
    const { port } = JSON.parse(await child.line()) as { port: number };
    const stats = async (): Promise<LoopStats> => {
      await child.send("stats");
      return (JSON.parse(await child.line()) as LoopStats[])[0]!;
    };
    await flood({
      child,
      port,
      message: ECHO,
      acceptFailures: async () => (await stats()).exhaustion.accepts,
      async whileFull() {
        // Dials fail at once with a clear error, counted, and leave the runtime descriptors.
        // (To a port nothing listens on: a dial that gets a socket fails too, and frees it.)
        const refusing = Deno.listen({ hostname: "127.0.0.1", port: 0 });
        const closedPort = refusing.addr.port;
        refusing.close();
        await child.send(`dial 127.0.0.1:${closedPort} ${DIALS}`);
        await child.line();
        const dialed = (s: LoopStats) =>
          Object.entries(s.closeErrors).filter(([k]) => k.startsWith("dial:"))
            .reduce((sum, [, n]) => sum + n, 0);
        assert.ok(
          await eventually(async () => dialed(await stats()) === DIALS),
          `dials: ${JSON.stringify((await stats()).closeErrors)}`,
        );
        const full = await stats();
        const exhausted = full.closeErrors["dial:descriptors_exhausted"] ?? 0;
        assert.ok(exhausted >= DIALS - 32, `${exhausted} of ${DIALS} dials found no descriptor`);
        assert.equal(full.exhaustion.dials, exhausted);
        assert.ok(full.exhaustion.pauses >= 1);
        assert.ok(
          await eventually(() => LIMIT - fdCount(child.pid) >= 16),
          "dials took the runtime's descriptors",
        );
      },
    });
  });
}

/** A DNS query the proxy answers itself (FORMERR: QDCOUNT 1 without a question), framed. */
const FORMERR_QUERY = new Uint8Array([0, 12, 0x12, 0x34, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0]);

for (const backend of BACKENDS) {
  const needs: Requirement[] = backend === "uring" ? [linux, ioUring] : [linux];
  testWith(`dnsproxy on ${backend} survives running out of descriptors`, needs, async () => {
    await using child = await limitedChild(
      new URL("./dnsproxy_exhaustion_child.ts", import.meta.url).pathname,
      [backend],
      LIMIT,
    );
    const { port } = JSON.parse(await child.line()) as { port: number };
    const metrics = async (): Promise<string> => {
      await child.send("metrics");
      return JSON.parse(await child.line()) as string;
    };
    await flood({
      child,
      port,
      message: FORMERR_QUERY,
      async acceptFailures() {
        const text = await metrics();
        const match = /^dns_descriptor_exhaustion_total\{what="accept"\} (\d+)$/m.exec(text);
        return Number(match?.[1] ?? 0);
      },
    });
  });
}
