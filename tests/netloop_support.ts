/**
 * Helpers for the netloop integration tests: start the fixture handler on a backend, collect the
 * loops' counters, read exactly N bytes, list this process's fds.
 *
 * @module
 */
import { type Engine, serve, type ServeOptions } from "@triad/netloop";
import { createLogger } from "@triad/core";
import { pollUntil } from "./wait_for.ts";

/** The backends, in the order the tests run them. */
export const BACKENDS = ["portable", "epoll", "uring"] as const;

/** Counters one loop reports. */
export interface LoopStats {
  loop: number;
  backend: string;
  open: number;
  opens: number;
  closes: number;
  maxOpen: number;
  maxOutbound: number;
  ticks: number;
  /** `loop.now` at each of the first 64 ticks. */
  tickTimes: number[];
  closeErrors: Record<string, number>;
  exhaustion: { accepts: number; dials: number; pauses: number; paused: boolean };
}

/** An engine running the fixture handler, with a way to ask its loops for their counters. */
export interface TestEngine extends AsyncDisposable {
  engine: Engine;
  port: number;
  stats(): Promise<LoopStats[]>;
}

/**
 * Starts the fixture handler.
 *
 * @param backend The backend.
 * @param data The fixture's mode and upstream.
 * @param options More serve options.
 */
export async function startFixture(
  backend: (typeof BACKENDS)[number],
  data: Record<string, unknown>,
  options: ServeOptions = {},
): Promise<TestEngine> {
  const inbox: LoopStats[] = [];
  const engine = await serve(new URL("./netloop_fixture_handler.ts", import.meta.url), {
    backend,
    loops: 1,
    data,
    logger: createLogger({ level: "warn" }),
    logLevel: "warn",
    onMessage: (message) => inbox.push(message as LoopStats),
    ...options,
  });
  return {
    engine,
    port: engine.address.port,
    async stats() {
      inbox.length = 0;
      engine.broadcast("stats");
      await pollUntil(() => inbox.length >= engine.loops, `stats from ${engine.loops} loops`);
      return [...inbox];
    },
    [Symbol.asyncDispose]: () => engine.stop(),
  };
}

/** Sums a counter over loops. */
export function total(stats: LoopStats[], key: "open" | "opens" | "closes" | "maxOpen"): number {
  return stats.reduce((sum, s) => sum + s[key], 0);
}

/**
 * Reads exactly `n` bytes (or fewer at EOF).
 *
 * @param conn The connection.
 * @param n Bytes.
 */
export async function readExactly(conn: Deno.Conn, n: number): Promise<Uint8Array> {
  const out = new Uint8Array(n);
  let got = 0;
  while (got < n) {
    const read = await conn.read(out.subarray(got));
    if (read === null) break;
    got += read;
  }
  return out.subarray(0, got);
}

/** Reads until EOF or error; returns the bytes read and whether it ended cleanly. */
export async function readToEnd(
  conn: Deno.Conn,
  limitMs = 5000,
): Promise<{ bytes: number; eof: boolean }> {
  const buffer = new Uint8Array(65536);
  let bytes = 0;
  const deadline = Date.now() + limitMs;
  while (Date.now() < deadline) {
    try {
      const n = await conn.read(buffer);
      if (n === null) return { bytes, eof: true };
      bytes += n;
    } catch {
      return { bytes, eof: false };
    }
  }
  throw new Error(`no EOF within ${limitMs} ms`);
}

/** This process's open fds (numbers), from /proc/self/fd. */
export function openFds(): Set<string> {
  const fds = new Set<string>();
  for (const entry of Deno.readDirSync("/proc/self/fd")) {
    try {
      fds.add(`${entry.name} -> ${Deno.readLinkSync(`/proc/self/fd/${entry.name}`)}`);
    } catch { /* the fd used to read the directory */ }
  }
  return fds;
}

/** Waits until `check` passes or the time is up; returns whether it passed (see `pollUntil`). */
export async function eventually(
  check: () => boolean | Promise<boolean>,
  ms = 5000,
): Promise<boolean> {
  return await pollUntil(check, "a condition", ms).then(() => true, () => check());
}

/**
 * Connects with a raw socket, sends `bytes`, then closes with SO_LINGER 0 so the kernel sends a
 * RST instead of a FIN (Deno's sockets cannot do this).
 *
 * @param port The server's port on 127.0.0.1.
 * @param bytes What to send first.
 * @param readFirst Bytes of the reply to wait for before the reset (blocking; 0: none).
 */
export function connectSendReset(port: number, bytes: Uint8Array, readFirst = 0): void {
  const lib = Deno.dlopen("libc.so.6", {
    socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
    connect: { parameters: ["i32", "buffer", "u32"], result: "i32" },
    write: { parameters: ["i32", "buffer", "usize"], result: "isize" },
    read: { parameters: ["i32", "buffer", "usize"], result: "isize" },
    setsockopt: { parameters: ["i32", "i32", "i32", "buffer", "u32"], result: "i32" },
    close: { parameters: ["i32"], result: "i32" },
  });
  try {
    const fd = lib.symbols.socket(2, 1, 0);
    const address = new Uint8Array(16);
    address[0] = 2;
    address[2] = port >> 8;
    address[3] = port & 0xff;
    address.set([127, 0, 0, 1], 4);
    if (lib.symbols.connect(fd, address, 16) !== 0) throw new Error("connect failed");
    lib.symbols.write(fd, bytes, BigInt(bytes.length));
    const reply = new Uint8Array(readFirst);
    for (let got = 0; got < readFirst;) {
      const n = Number(lib.symbols.read(fd, reply.subarray(got), BigInt(readFirst - got)));
      if (n <= 0) throw new Error("the server closed before replying");
      got += n;
    }
    const linger = new Uint8Array(new Int32Array([1, 0]).buffer);
    lib.symbols.setsockopt(fd, 1, 13, linger, 8); // SOL_SOCKET, SO_LINGER
    lib.symbols.close(fd);
  } finally {
    lib.close();
  }
}
