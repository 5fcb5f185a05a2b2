/**
 * `deno task echo [--port N] [--backend B] [--loops N] [--udp] [--hostname H]`: an echo server on
 * netloop. Stops on Ctrl-C (SIGINT) or SIGTERM. `--check-limits N` prints what would stop it from
 * holding N connections, with the settings that lift each limit, and exits (1 if any is too low).
 *
 * @module
 */
import { parseArgs } from "node:util";
import { checkLimits, formatLimits, serve } from "../mod.ts";
import type { BackendName } from "../event_handler.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    port: { type: "string", default: "7000" },
    hostname: { type: "string", default: "127.0.0.1" },
    backend: { type: "string", default: "auto" },
    loops: { type: "string" },
    udp: { type: "boolean", default: false },
    "check-limits": { type: "string" },
    help: { type: "boolean", short: "h", default: false },
  },
});
if (values.help) {
  console.log(
    "usage: deno task echo [--port N] [--hostname H] [--backend auto|uring|epoll|portable]",
  );
  console.log("                      [--loops N] [--udp]");
  console.log("       deno task echo --check-limits N [--loops N]");
  Deno.exit(0);
}
if (values["check-limits"] !== undefined) {
  const connections = Number(values["check-limits"]);
  if (!Number.isInteger(connections) || connections <= 0) {
    console.error(
      `--check-limits wants a positive number of connections, got ${values["check-limits"]}`,
    );
    Deno.exit(2);
  }
  const loops = values.loops === undefined ? navigator.hardwareConcurrency : Number(values.loops);
  const checks = checkLimits({ connections, loops });
  console.log(`What stops ${connections.toLocaleString("en-US")} connections here:`);
  console.log(formatLimits(checks));
  Deno.exit(checks.every((c) => c.ok) ? 0 : 1);
}

const engine = await serve(new URL("./echo_handler.ts", import.meta.url), {
  network: values.udp ? "udp" : "tcp",
  hostname: values.hostname,
  port: Number(values.port),
  backend: values.backend as "auto" | BackendName,
  ...(values.loops === undefined ? {} : { loops: Number(values.loops) }),
});
console.log(
  `echo (${values.udp ? "udp" : "tcp"}) on ${engine.address.address}:${engine.address.port}, ` +
    `${engine.loops} loop(s), backend ${engine.backend}`,
);
const stop = () => void engine.stop();
Deno.addSignalListener("SIGINT", stop);
Deno.addSignalListener("SIGTERM", stop);
await engine.done;
Deno.removeSignalListener("SIGINT", stop);
Deno.removeSignalListener("SIGTERM", stop);
