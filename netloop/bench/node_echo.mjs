// The node:net echo server netloop is measured against (run by Deno's node compatibility).
// Usage: deno run --allow-net node_echo.mjs PORT
import net from "node:net";

const port = Number(globalThis.Deno ? Deno.args[0] : process.argv[2]);
net.createServer({ noDelay: true }, (socket) => {
  socket.on("data", (data) => socket.write(data));
  socket.on("error", () => {});
}).listen(port, "127.0.0.1");
