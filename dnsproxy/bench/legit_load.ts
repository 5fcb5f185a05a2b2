/**
 * The legitimate clients of `deno task bench:dns --flood`: queries for cached names at a fixed
 * rate from one source address, each timed; prints the answered fraction and latency percentiles.
 * Usage: `deno run -A legit_load.ts SRC DST PORT RATE SECONDS`.
 *
 * @module
 */
import dgram from "node:dgram";
import { buildQuery } from "../wire/builders.ts";

const [src = "", dst = "", portText = "", rateText = "", secondsText = ""] = Deno.args;
const rate = Number(rateText);
const seconds = Number(secondsText);
const names = ["a.test.", "www.test.", "mail.test.", "txt.test.", "ns.test."];
const socket = dgram.createSocket("udp4");
await new Promise<void>((resolve) => socket.bind(0, src, () => resolve()));
const sentAt = new Float64Array(65536);
const latencies: number[] = [];
let sent = 0;
socket.on("message", (message: Uint8Array) => {
  const id = (message[0]! << 8) | message[1]!;
  if (sentAt[id]! > 0) {
    latencies.push(performance.now() - sentAt[id]!);
    sentAt[id] = 0;
  }
});
const queries = names.map((name) => buildQuery({ id: 0, name, type: 1, edns: false }));
const start = performance.now();
const total = Math.round(rate * seconds);
await new Promise<void>((resolve) => {
  const timer = setInterval(() => {
    const due = Math.min(total, Math.floor(((performance.now() - start) / 1000) * rate));
    for (; sent < due; sent++) {
      const query = queries[sent % queries.length]!;
      const id = sent & 0xffff;
      query[0] = id >> 8;
      query[1] = id & 0xff;
      sentAt[id] = performance.now();
      socket.send(query, Number(portText), dst);
    }
    if (sent >= total) {
      clearInterval(timer);
      resolve();
    }
  }, 2);
});
// Answers still in flight get a second; later ones count as lost.
await new Promise((resolve) => setTimeout(resolve, 1000));
socket.close();
latencies.sort((a, b) => a - b);
const pick = (q: number) =>
  latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? NaN;
const stat = Deno.readTextFileSync("/proc/self/stat").split(") ")[1]!.split(" ");
const cpu = (Number(stat[11]) + Number(stat[12])) / 100; // utime + stime, in ticks of 10 ms
console.log(JSON.stringify({
  sent,
  answered: latencies.length,
  p50Ms: pick(0.5),
  p99Ms: pick(0.99),
  cpu,
}));
