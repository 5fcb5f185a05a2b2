/**
 * Child process for the DNS proxy's descriptor-exhaustion test (run under a low `ulimit -n`):
 * serves the proxy on netloop, one loop per transport on the backend named in its first argument,
 * logging at info on stderr, and prints `{"port": P}` on stdout. Each line on stdin asks for the
 * Prometheus text, printed as a JSON string. At stdin's end it stops.
 *
 * Usage: deno run -A tests/dnsproxy_exhaustion_child.ts uring|epoll|portable
 *
 * @module
 */
import { serveDnsOnNetloop } from "@triad/dnsproxy";
import { createLogger } from "@triad/core";

const backend = Deno.args[0] as "uring" | "epoll" | "portable";
await using server = await serveDnsOnNetloop(
  // No upstream answers: the test's queries are malformed, answered FORMERR by the proxy itself.
  { upstream: { upstreams: ["127.0.0.1:9"], healthCheck: 0, timeout: 1000 } },
  { listen: "127.0.0.1:0", backend, loops: 1, logger: createLogger({ level: "info" }) },
);
console.log(JSON.stringify({ port: server.address.port }));
const lines = Deno.stdin.readable.pipeThrough(new TextDecoderStream());
for await (const chunk of lines) {
  for (let i = 0; i < chunk.split("\n").length - 1; i++) {
    console.log(JSON.stringify(await server.metrics()));
  }
}
