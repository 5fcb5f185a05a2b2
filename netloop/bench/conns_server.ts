/**
 * The netloop echo server `bench:conns` measures: `serve()` with the echo example's handler on one
 * loop, plus a heap report. Each line `heap` on stdin prints `heap BYTES` on stdout: the used heap
 * of the main isolate and every loop's Worker, each after a full collection when run with
 * `--v8-flags=--expose-gc`.
 *
 * Usage: deno run -A --v8-flags=--expose-gc conns_server.ts PORT BACKEND
 *
 * @module
 */
import { serve } from "../mod.ts";
import type { BackendName } from "../event_handler.ts";
import { answerHeapRequests, heapUsed } from "./_heap_report.ts";

const [port, backend] = Deno.args;
let waiting: ((bytes: number) => void) | undefined;
const engine = await serve(new URL("./conns_handler.ts", import.meta.url), {
  hostname: "127.0.0.1",
  port: Number(port),
  backend: backend as BackendName,
  loops: 1,
  onMessage: (data) => waiting?.((data as { heapUsed: number }).heapUsed),
});
Deno.addSignalListener("SIGTERM", () => void engine.stop());
answerHeapRequests(async () => {
  const loop = new Promise<number>((resolve) => waiting = resolve);
  engine.broadcast("heap");
  return heapUsed() + await loop;
});
await engine.done;
Deno.exit(0);
