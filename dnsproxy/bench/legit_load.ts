/**
 * The legitimate clients of `deno task bench:dns --flood`: queries for cached names at a fixed
 * rate from one source address, each timed; prints the answered fraction and latency percentiles.
 * Usage: `deno run -A legit_load.ts SRC DST PORT RATE SECONDS`.
 *
 * Each name is asked once, untimed, before the timed run (bounded by 2 s), so every timed query is
 * a cache hit in the server under test, whatever the order of the names.
 *
 * @module
 */
import dgram from "node:dgram";
import { buildQuery } from "../wire/builders.ts";

const [src = "", dst = "", portText = "", rateText = "", secondsText = ""] = Deno.args;
const rate = Number(rateText);
const seconds = Number(secondsText);
const port = Number(portText);
const names = ["a.test.", "www.test.", "mail.test.", "txt.test.", "ns.test."];
const socket = dgram.createSocket("udp4");
await new Promise<void>((resolve) => socket.bind(0, src, () => resolve()));
const sentAt = new Float64Array(65536);
const latencies: number[] = [];
let sent = 0;
let onWarm: ((id: number) => void) | undefined;
socket.on("message", (message: Uint8Array) => {
  const received = performance.now();
  const id = (message[0]! << 8) | message[1]!;
  if (onWarm !== undefined) return onWarm(id);
  if (sentAt[id]! > 0) {
    latencies.push(received - sentAt[id]!);
    sentAt[id] = 0;
  }
});
const queries = names.map((name) => buildQuery({ id: 0, name, type: 1, edns: false }));
const setId = (query: Uint8Array, id: number) => {
  query[0] = id >> 8;
  query[1] = id & 0xff;
};
// The warm-up: IDs 0..names-1, which the timed run reuses only after they were answered.
await new Promise<void>((resolve) => {
  const pending = new Set(queries.map((_, i) => i));
  const timeout = setTimeout(resolve, 2000);
  onWarm = (id) => {
    pending.delete(id);
    if (pending.size === 0) {
      clearTimeout(timeout);
      resolve();
    }
  };
  queries.forEach((query, i) => {
    setId(query, i);
    socket.send(query, port, dst);
  });
});
onWarm = undefined;
const start = performance.now();
const total = Math.round(rate * seconds);
await new Promise<void>((resolve) => {
  const timer = setInterval(() => {
    const due = Math.min(total, Math.floor(((performance.now() - start) / 1000) * rate));
    for (; sent < due; sent++) {
      const query = queries[sent % queries.length]!;
      const id = sent & 0xffff;
      setId(query, id);
      sentAt[id] = performance.now();
      socket.send(query, port, dst);
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
const percentile = (values: number[], q: number) => {
  values.sort((a, b) => a - b);
  return values[Math.min(values.length - 1, Math.floor(q * values.length))] ?? NaN;
};
const stat = Deno.readTextFileSync("/proc/self/stat").split(") ")[1]!.split(" ");
const cpu = (Number(stat[11]) + Number(stat[12])) / 100; // utime + stime, in ticks of 10 ms
console.log(JSON.stringify({
  sent,
  answered: latencies.length,
  p50Ms: percentile(latencies, 0.5),
  p99Ms: percentile(latencies, 0.99),
  cpu,
}));
