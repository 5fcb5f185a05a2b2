/**
 * Child process for the descriptor-table test: prints this process's `FDSize` (slots in its file
 * descriptor table) and `RLIMIT_NOFILE` soft limit before and after serving one loop on the
 * backend named in its first argument, as JSON. A child, so that nothing else ran in the process
 * before.
 *
 * @module
 */
import { serve } from "@triad/netloop";
import { createLogger } from "@triad/core";

function fdSize(): number {
  return Number(/^FDSize:\s+(\d+)/m.exec(Deno.readTextFileSync("/proc/self/status"))![1]);
}

const before = fdSize();
const limit = Number(
  /^Max open files\s+(\d+)/m.exec(Deno.readTextFileSync("/proc/self/limits"))![1],
);
const engine = await serve("data:text/javascript,export function onTraffic(c) { c.next(); }", {
  loops: 1,
  network: "udp",
  logger: createLogger({ write: () => {} }),
  backend: Deno.args[0] as "epoll" | "uring",
});
const after = fdSize();
await engine.stop();
console.log(JSON.stringify({ before, after, limit, backend: engine.backend }));
