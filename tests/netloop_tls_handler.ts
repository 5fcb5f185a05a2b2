/**
 * The handler the TLS tests serve: echo, with `?info` answered by the connection's TLS details and
 * early data marked; with `data.dial` set, it dials a TLS server at boot and reports the reply.
 *
 * @module
 */
import type { Conn, Loop } from "@triad/netloop";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

interface DialData {
  port: number;
  ca: string;
  serverName?: string;
  alpn?: string[];
  /** Dial this many times, one after the other (the later ones can resume). */
  times?: number;
  /**
   * After the handshake, write this (hex) on the TCP connection under the TLS layer instead of
   * the ping, and close it: a test of what the server does with a bad or cut record.
   */
  raw?: string;
  /** The dial's handshake timeout (ms). */
  handshakeTimeout?: number;
}

/** Dials `data.dial` (a TLS server) and posts what it answers, or why it failed. */
export function onBoot(loop: Loop): void {
  const dial = (loop.data as { dial?: DialData } | undefined)?.dial;
  if (dial === undefined) return;
  dialOnce(loop, dial, dial.times ?? 1);
}

function dialOnce(loop: Loop, dial: DialData, left: number): void {
  let got = "";
  loop.dial({
    network: "tcp",
    address: `127.0.0.1:${dial.port}`,
    tls: {
      ca: dial.ca,
      ...(dial.serverName === undefined ? {} : { serverName: dial.serverName }),
      ...(dial.alpn === undefined ? {} : { alpn: dial.alpn }),
      ...(dial.handshakeTimeout === undefined ? {} : { handshakeTimeout: dial.handshakeTimeout }),
    },
    handler: {
      onOpen(conn: Conn) {
        if (dial.raw === undefined) conn.write(encoder.encode("ping-netloop\n"));
        else {
          // The TCP connection under the TLS layer (not public API: a test's way to misbehave).
          const tcp = (conn as unknown as { inner: Conn }).inner;
          tcp.write(new Uint8Array(dial.raw.match(/../g)!.map((h) => parseInt(h, 16))));
          tcp.close();
          loop.postMessage({ rawSent: true });
        }
      },
      onTraffic(conn: Conn) {
        got += decoder.decode(conn.next());
        if (got.includes("\n")) {
          loop.postMessage({ reply: got, tls: { ...conn.tls } });
          conn.close();
        }
      },
      onClose(_conn: Conn, error?: Error) {
        loop.postMessage({ closed: error?.message ?? null });
        if (left > 1) dialOnce(loop, dial, left - 1);
      },
    },
  });
}

/**
 * Echoes; `?info\n` gets the TLS details as JSON; early data is prefixed `[early N]`; a connection
 * that starts with `?line:` gets whole lines back only.
 */
export function onTraffic(conn: Conn): void {
  if (conn.context === "line" || decoder.decode(conn.peek(6)) === "?line:") {
    // Line mode: echo whole lines only, leaving a partial line for next time.
    conn.context = "line";
    const nl = conn.peek().lastIndexOf(10);
    if (nl >= 0) conn.write(conn.next(nl + 1));
    return;
  }
  const early = conn.tls?.earlyBytes ?? 0;
  if (early > 0) conn.write(encoder.encode(`[early ${early}]`));
  const bytes = conn.next();
  if (bytes.length === 6 && decoder.decode(bytes) === "?info\n") {
    conn.write(encoder.encode(JSON.stringify(conn.tls) + "\n"));
  } else {
    conn.write(bytes);
  }
}
