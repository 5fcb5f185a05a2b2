/**
 * A DNS query flood from one source address, run inside a test's network namespace:
 * `deno run -A tests/dnsproxy_defence_flood.ts FROM HOST PORT COUNT NAME WAIT_MS`. Sends COUNT
 * queries (`q<i>.<NAME>`) at once, then waits up to WAIT_MS for their answers (0: does not wait)
 * and prints `{"sent":N,"answered":N,"rcodes":{...}}`.
 *
 * @module
 */
import dgram from "node:dgram";
import { buildQuery } from "../dnsproxy/wire/builders.ts";

const [from = "", host = "", portText = "", countText = "", name = "", waitText = "0"] = Deno.args;
const count = Number(countText);
const socket = dgram.createSocket("udp4");
await new Promise<void>((resolve, reject) => {
  socket.once("error", reject);
  socket.bind(0, from, () => resolve());
});
let answered = 0;
const rcodes: Record<string, number> = {};
let done: () => void = () => {};
const all = new Promise<void>((resolve) => done = resolve);
socket.on("message", (message: Uint8Array) => {
  answered++;
  const rcode = String(message[3]! & 0xf);
  rcodes[rcode] = (rcodes[rcode] ?? 0) + 1;
  if (answered >= count) done();
});
for (let i = 0; i < count; i++) {
  const query = buildQuery({ id: i & 0xffff, name: `q${i}.${name}`, type: 1, edns: false });
  await new Promise<void>((resolve) => socket.send(query, Number(portText), host, () => resolve()));
}
const wait = Number(waitText);
if (wait > 0) {
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([all, new Promise((resolve) => timer = setTimeout(resolve, wait))]);
  clearTimeout(timer);
}
socket.close();
console.log(JSON.stringify({ sent: count, answered, rcodes }));
