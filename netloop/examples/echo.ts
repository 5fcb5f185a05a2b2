/**
 * `deno task echo [--port N] [--backend B] [--loops N] [--udp] [--hostname H]`: an echo server on
 * netloop. Stops on Ctrl-C (SIGINT) or SIGTERM. With `--tls-cert FILE --tls-key FILE [--alpn LIST]`
 * it serves the echo over TLS on the loop; `--quic` also serves it on QUIC streams (ALPN `echo`, the
 * same pair, the same port over UDP; needs `--unstable-net`).
 *
 * @module
 */
import { parseArgs } from "node:util";
import { serve } from "../mod.ts";
import type { BackendName } from "../event_handler.ts";
import type { ServeTlsOptions } from "../tls.ts";
import { denoQuicTransport, type QuicServer } from "../quic.ts";
import * as echoHandler from "./echo_handler.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    port: { type: "string", default: "7000" },
    hostname: { type: "string", default: "127.0.0.1" },
    backend: { type: "string", default: "auto" },
    loops: { type: "string" },
    udp: { type: "boolean", default: false },
    "tls-cert": { type: "string" },
    "tls-key": { type: "string" },
    alpn: { type: "string" },
    quic: { type: "boolean", default: false },
    help: { type: "boolean", short: "h", default: false },
  },
});
if (values.help) {
  console.log(
    "usage: deno task echo [--port N] [--hostname H] [--backend auto|uring|epoll|portable]",
  );
  console.log("                      [--loops N] [--udp]");
  console.log("                      [--tls-cert FILE --tls-key FILE [--alpn a,b] [--quic]]");
  Deno.exit(0);
}

const tls = tlsOptions(values["tls-cert"], values["tls-key"], values.alpn);
const engine = await serve(new URL("./echo_handler.ts", import.meta.url), {
  ...(tls === undefined ? {} : { tls }),
  network: values.udp ? "udp" : "tcp",
  hostname: values.hostname,
  port: Number(values.port),
  backend: values.backend as "auto" | BackendName,
  ...(values.loops === undefined ? {} : { loops: Number(values.loops) }),
});
console.log(
  `echo (${
    values.udp ? "udp" : tls ? "tls" : "tcp"
  }) on ${engine.address.address}:${engine.address.port}, ` +
    `${engine.loops} loop(s), backend ${engine.backend}`,
);
const quic = values.quic ? await serveQuic(tls, engine.address.port) : undefined;
const stop = () => void Promise.all([engine.stop(), quic?.stop()]);
Deno.addSignalListener("SIGINT", stop);
Deno.addSignalListener("SIGTERM", stop);
await engine.done;
Deno.removeSignalListener("SIGINT", stop);
Deno.removeSignalListener("SIGTERM", stop);

function tlsOptions(
  cert: string | undefined,
  key: string | undefined,
  alpn: string | undefined,
): ServeTlsOptions | undefined {
  if (cert === undefined && key === undefined) return undefined;
  if (cert === undefined || key === undefined) {
    console.error("echo: --tls-cert and --tls-key go together");
    Deno.exit(2);
  }
  return { cert, key, ...(alpn === undefined ? {} : { alpn: alpn.split(",") }) };
}

async function serveQuic(tls: ServeTlsOptions | undefined, port: number): Promise<QuicServer> {
  if (tls === undefined) {
    console.error("echo: --quic needs --tls-cert and --tls-key");
    Deno.exit(2);
  }
  const read = (pem: string) => pem.includes("-----BEGIN") ? pem : Deno.readTextFileSync(pem);
  const server = await denoQuicTransport().serve(echoHandler, {
    hostname: values.hostname,
    port,
    cert: read(tls.cert),
    key: read(tls.key),
    alpn: ["echo"],
  });
  console.log(`echo (quic) on ${server.address.address}:${server.address.port}, ALPN echo`);
  return server;
}
