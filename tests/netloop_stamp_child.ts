/**
 * Child of tests/netloop_activity_stamp_test.ts: serves tests/netloop_stamp_handler.ts on the
 * backend given, sends three reads on one connection, prints the three replies ("SSS" when every
 * activity stamp was a small integer).
 *
 * Usage: deno run -A --v8-flags=--allow-natives-syntax netloop_stamp_child.ts BACKEND
 *
 * @module
 */
import { serve } from "@triad/netloop";
import type { BackendName } from "../netloop/event_handler.ts";

const engine = await serve(new URL("./netloop_stamp_handler.ts", import.meta.url), {
  hostname: "127.0.0.1",
  port: 0,
  loops: 1,
  backend: Deno.args[0] as BackendName,
});
const conn = await Deno.connect({ hostname: "127.0.0.1", port: engine.address.port });
let replies = "";
const buffer = new Uint8Array(16);
for (let i = 0; i < 3; i++) {
  await conn.write(new Uint8Array([i]));
  const n = await conn.read(buffer);
  replies += new TextDecoder().decode(buffer.subarray(0, n ?? 0));
}
conn.close();
await engine.stop();
console.log(replies);
