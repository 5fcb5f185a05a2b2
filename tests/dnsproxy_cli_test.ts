import assert from "node:assert/strict";
import { buildQuery, parseMessage, Rcode, RrType } from "@triad/dnsproxy";
import { command, testWith } from "./requirements.ts";
import { startUnbound } from "./servers/unbound.ts";
import { queryTcp, queryUdp } from "./dnsproxy_client.ts";

const main = new URL("../dnsproxy/main.ts", import.meta.url).pathname;

/** Reads JSON log lines from a child's stderr until one with `msg` arrives. */
async function waitForLog(
  lines: AsyncIterator<string>,
  msg: string,
): Promise<Record<string, unknown>> {
  for (let i = 0; i < 100; i++) {
    const next = await lines.next();
    if (next.done) throw new Error(`The proxy exited before logging "${msg}"`);
    try {
      const record = JSON.parse(next.value) as Record<string, unknown>;
      if (record.msg === msg) return record;
    } catch {
      // Not a JSON line (a Deno warning): skip it.
    }
  }
  throw new Error(`No "${msg}" log line`);
}

async function* splitLines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  let rest = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    rest += chunk;
    let at: number;
    while ((at = rest.indexOf("\n")) !== -1) {
      yield rest.slice(0, at);
      rest = rest.slice(at + 1);
    }
  }
}

testWith(
  "deno task dns serves on netloop: UDP, TCP and /metrics, and stops on SIGTERM",
  [command("unbound")],
  async () => {
    await using unbound = await startUnbound();
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--unstable-net",
        "--allow-net",
        "--allow-read",
        "--allow-env",
        "--allow-ffi",
        main,
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        unbound.address,
        "--metrics",
        "127.0.0.1:0",
      ],
      stdout: "null",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).spawn();
    const lines = splitLines(child.stderr);
    try {
      const listening = await waitForLog(lines, "listening");
      assert.match(String(listening.backend), /^netloop (uring|epoll|portable)/);
      const port = Number(String(listening.address).split(":")[1]);
      const metrics = String((await waitForLog(lines, "metrics")).address);
      const query = buildQuery({ id: 11, name: "a.test", type: RrType.A });
      for (
        const reply of [
          await queryUdp(port, query),
          await queryUdp(port, query),
          await queryTcp(port, query),
        ]
      ) {
        const info = parseMessage(reply!);
        assert.equal(info.rcode, Rcode.NOERROR);
        assert.equal(info.counts[1], 2);
      }
      const text = await (await fetch(metrics)).text();
      // UDP and TCP engines run their own loops, each with its own cache: UDP miss, hit; TCP miss.
      assert.match(text, /^dns_cache_hits_total 1$/m);
      assert.match(text, /^dns_cache_misses_total 2$/m);
      // Gauges are summed over loops (one UDP, one TCP here): 2 means both see it up.
      assert.match(text, /^dns_upstream_healthy\{upstream="127\.0\.0\.1:\d+"\} 2$/m);
    } finally {
      child.kill("SIGTERM");
      const status = await child.status;
      for await (const _ of lines) { /* drain */ }
      assert.equal(status.code, 0);
    }
  },
);
