/**
 * Child process for the descriptor-exhaustion tests (run under a low `ulimit -n`): serves the
 * fixture's echo on the backend named in its first argument, one loop, logging at info on stderr,
 * and prints `{"port": P}` on stdout. Each line on stdin is a command: `stats` prints the loop's
 * counters as JSON; `dial ADDRESS N` dials ADDRESS N times (failures land in the counters). At
 * stdin's end it stops.
 *
 * Usage: deno run -A tests/netloop_exhaustion_child.ts uring|epoll|portable
 *
 * @module
 */
import { startFixture } from "./netloop_support.ts";
import { createLogger } from "@triad/core";

const backend = Deno.args[0] as "uring" | "epoll" | "portable";
const fixture = await startFixture(backend, { mode: "echo" }, {
  logger: createLogger({ level: "info" }),
  logLevel: "info",
});
console.log(JSON.stringify({ port: fixture.port }));
const lines = Deno.stdin.readable.pipeThrough(new TextDecoderStream());
let pending = "";
for await (const chunk of lines) {
  pending += chunk;
  for (let at = pending.indexOf("\n"); at >= 0; at = pending.indexOf("\n")) {
    const [command, address, count] = pending.slice(0, at).trim().split(" ");
    pending = pending.slice(at + 1);
    if (command === "dial") {
      fixture.engine.broadcast({ dial: address, count: Number(count) });
      console.log(JSON.stringify({ dialed: Number(count) }));
    } else console.log(JSON.stringify(await fixture.stats()));
  }
}
await fixture.engine.stop();
