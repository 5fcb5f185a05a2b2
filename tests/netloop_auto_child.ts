/**
 * Child process for the `backend: "auto"` test: serves with whatever permissions it was given and
 * prints the chosen backend and why, as JSON.
 *
 * @module
 */
import { serve } from "@triad/netloop";
import { createLogger } from "@triad/core";

const lines: string[] = [];
const engine = await serve(
  "data:text/javascript,export function onTraffic(c) { c.write(c.next()); }",
  {
    loops: 1,
    logger: createLogger({ write: (line) => lines.push(line) }),
  },
);
console.log(JSON.stringify({ backend: engine.backend, reason: engine.reason, log: lines }));
await engine.stop();
