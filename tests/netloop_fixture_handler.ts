/**
 * The handler module the netloop integration tests run in every loop. `loop.data.mode` picks the
 * behaviour; `engine.broadcast("stats")` makes each loop post its counters.
 *
 * @module
 */
import { Action, type Conn, type EventHandler, LengthFieldCodec, type Loop } from "@triad/netloop";

interface Data {
  mode: "echo" | "frames" | "proxy" | "quit" | "dial-per-byte" | "whoami" | "later" | "clock";
  upstream?: { network: "tcp" | "udp"; address: string };
}

let loop: Loop;
let data: Data;
let opens = 0;
let closes = 0;
let maxOpen = 0;
let maxOutbound = 0;
let ticks = 0;
const tickTimes: number[] = [];
let dials = 0;
const closeErrors: Record<string, number> = {};
const codec = new LengthFieldCodec();
let upstream: Conn | undefined;
const waiting: Conn[] = [];

const handler: EventHandler = {
  onBoot(l) {
    loop = l;
    data = l.data as Data;
  },
  onOpen() {
    opens++;
    maxOpen = Math.max(maxOpen, loop.connections);
  },
  onTraffic(conn) {
    if (data.mode === "whoami") {
      conn.discard();
      const { address, port } = conn.remoteAddress;
      const local = conn.localAddress;
      conn.write(new TextEncoder().encode(`${address} ${port} ${local.address} ${local.port}`));
      return;
    }
    if (data.mode === "later") {
      // Echo from promise callbacks (two awaits deep), as a handler awaiting other work would.
      const bytes = conn.next().slice();
      void (async () => {
        await null;
        await null;
        conn.write(bytes);
      })();
      return;
    }
    if (conn.network === "udp" && data.mode !== "proxy") {
      conn.write(conn.next());
      return;
    }
    switch (data.mode) {
      case "echo": {
        conn.write(conn.next());
        maxOutbound = Math.max(maxOutbound, conn.outboundBuffered);
        return;
      }
      case "frames": {
        for (let frame = codec.decode(conn); frame; frame = codec.decode(conn)) {
          conn.write(codec.encode(frame));
        }
        return;
      }
      case "clock": {
        // The turn clock against the real one: "<loop.now> <performance.now()>".
        conn.next();
        conn.write(new TextEncoder().encode(`${loop.now} ${performance.now()}`));
        return;
      }
      case "quit": {
        const text = new TextDecoder().decode(conn.next());
        const soon = /soon(?: (\d+))?/.exec(text);
        if (soon !== null) {
          // "soon [ms]": a tick within ms (20 by default); answers "<ticks so far> <loop.now>".
          loop.tickWithin(Number(soon[1] ?? 20));
          conn.write(new TextEncoder().encode(`${ticks} ${loop.now}`));
          return;
        }
        if (text.includes("quit")) return Action.Shutdown;
        if (text.includes("flood")) {
          // "flood": 4 MiB, then close: the close waits on a reader that may never read.
          conn.write(new Uint8Array(4 << 20));
          return Action.Close;
        }
        if (text.includes("close")) return Action.Close;
        conn.write(new TextEncoder().encode(text));
        return;
      }
      case "dial-per-byte": {
        // One connected UDP socket per byte, closed when its reply arrives (a DNS proxy's
        // random-port upstream queries). Each sends its own number and answers the client with
        // 1 when the reply carried it, 0 when it read someone else's.
        const count = conn.next().length;
        for (let i = 0; i < count; i++) {
          const id = dials++ & 0xffff;
          const up = loop.dial({
            network: "udp",
            address: data.upstream!.address,
            handler: {
              onTraffic(u) {
                const reply = u.next();
                u.close();
                conn.write(
                  new Uint8Array([
                    reply.length === 2 && reply[0]! * 256 + reply[1]! === id ? 1 : 0,
                  ]),
                );
              },
            },
          });
          up.write(new Uint8Array([id >> 8, id & 0xff]));
        }
        return;
      }
      case "proxy": {
        // Client frames go to the upstream (one datagram or one frame each); replies come back in
        // order to the client that sent the oldest unanswered frame.
        for (let frame = codec.decode(conn); frame; frame = codec.decode(conn)) {
          upstream ??= loop.dial({
            network: data.upstream!.network,
            address: data.upstream!.address,
            handler: {
              onTraffic(up) {
                if (up.network === "udp") {
                  waiting.shift()?.write(codec.encode(up.next()));
                  return;
                }
                for (let reply = codec.decode(up); reply; reply = codec.decode(up)) {
                  waiting.shift()?.write(codec.encode(reply));
                }
              },
              onClose(_up, error) {
                upstream = undefined;
                if (error) closeErrors[`upstream:${(error as { code?: string }).code}`] = 1;
              },
            },
          });
          waiting.push(conn);
          upstream.write(data.upstream!.network === "udp" ? frame : codec.encode(frame));
        }
        return;
      }
    }
  },
  onClose(_conn, error) {
    closes++;
    const code = error === undefined ? "none" : (error as { code?: string }).code ?? error.name;
    closeErrors[code] = (closeErrors[code] ?? 0) + 1;
  },
  onTick() {
    ticks++;
    if (tickTimes.length < 64) tickTimes.push(loop.now);
  },
  onMessage(message) {
    if (message === "stats") {
      loop.postMessage({
        loop: loop.index,
        backend: loop.backend,
        open: loop.connections,
        opens,
        closes,
        maxOpen,
        maxOutbound,
        ticks,
        tickTimes,
        closeErrors,
        exhaustion: { ...loop.exhaustion },
      });
    } else if (typeof message === "object" && message !== null && "dial" in message) {
      // Dial the address this many times; each failure is counted under `dial:<code>`.
      const { dial, count } = message as { dial: string; count: number };
      for (let i = 0; i < count; i++) {
        loop.dial({
          network: "tcp",
          address: dial,
          handler: {
            onClose(_c, error) {
              const key = `dial:${(error as { code?: string } | undefined)?.code ?? "none"}`;
              closeErrors[key] = (closeErrors[key] ?? 0) + 1;
            },
          },
        });
      }
    }
  },
};
export default handler;
