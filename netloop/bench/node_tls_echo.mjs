// The node:tls echo server netloop's TLS is measured against (run by Deno's node compatibility).
// Usage: deno run --allow-net --allow-read --allow-env node_tls_echo.mjs PORT CERT KEY
import fs from "node:fs";
import tls from "node:tls";

const [port, cert, key] = globalThis.Deno ? Deno.args : process.argv.slice(2);
tls.createServer({ cert: fs.readFileSync(cert), key: fs.readFileSync(key) }, (socket) => {
  socket.setNoDelay(true);
  socket.on("data", (data) => socket.write(data));
  socket.on("error", () => {});
}).listen(Number(port), "127.0.0.1");
