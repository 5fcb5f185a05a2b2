// The node:net echo server netloop is measured against (run by Deno's node compatibility).
// Usage: deno run --allow-net node_echo.mjs PORT [heap]
// With `heap` (Deno only), each line `heap` on stdin prints the used heap (_heap_report.ts).
import net from "node:net";

const port = Number(globalThis.Deno ? Deno.args[0] : process.argv[2]);
net.createServer({ noDelay: true }, (socket) => {
  socket.on("data", (data) => socket.write(data));
  socket.on("error", () => {});
}).listen(port, "127.0.0.1");
if (globalThis.Deno && Deno.args[1] === "heap") {
  const { answerHeapRequests, heapUsed } = await import("./_heap_report.ts");
  answerHeapRequests(heapUsed);
}
