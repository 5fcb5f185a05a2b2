/**
 * The `Deno.listenTls` echo server netloop's TLS is measured against (rustls; Deno offers no
 * `setNoDelay` on TLS connections).
 *
 * Usage: deno run --allow-net --allow-read deno_tls_echo.ts PORT CERT KEY
 *
 * @module
 */
const [port, cert, key] = Deno.args;
const listener = Deno.listenTls({
  hostname: "127.0.0.1",
  port: Number(port),
  cert: Deno.readTextFileSync(cert!),
  key: Deno.readTextFileSync(key!),
});
for await (const conn of listener) {
  (async () => {
    const buffer = new Uint8Array(65536);
    try {
      for (;;) {
        const n = await conn.read(buffer);
        if (n === null) break;
        for (let at = 0; at < n;) at += await conn.write(buffer.subarray(at, n));
      }
    } catch { /* reset */ }
    try {
      conn.close();
    } catch { /* closed */ }
  })();
}
