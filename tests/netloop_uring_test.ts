/**
 * The uring backend's downgrade paths: with multishot, the buffer ring and the registered ring fd
 * switched off one at a time (as on older kernels), TCP and UDP echo still work.
 */
import assert from "node:assert/strict";
import dgram from "node:dgram";
import { ioUring, linux, testWith } from "./requirements.ts";
import { readExactly, startFixture } from "./netloop_support.ts";

const CASES: [string, RegExp][] = [
  ["multishot", /off: multishotAccept, multishotRecv/],
  ["bufring", /off: bufferRing, multishotRecv/],
  ["regring", /off: registeredRing/],
  ["multishot,bufring,regring", /on: none/],
];

async function udpRoundTrip(port: number): Promise<string> {
  const socket = dgram.createSocket("udp4");
  try {
    const reply = new Promise<string>((resolve) =>
      socket.once("message", (m: Uint8Array) => resolve(new TextDecoder().decode(m)))
    );
    socket.send(new TextEncoder().encode("ping"), port, "127.0.0.1");
    return await Promise.race([reply, new Promise<string>((r) => setTimeout(() => r(""), 3000))]);
  } finally {
    await new Promise<void>((resolve) => socket.close(() => resolve()));
  }
}

testWith("serve() on uring downgrades features one at a time", [linux, ioUring], async (t) => {
  for (const [disabled, expected] of CASES) {
    await t.step(`with ${disabled} off, echo still works`, async () => {
      Deno.env.set("TRIAD_NETLOOP_URING_DISABLE", disabled);
      try {
        await using tcp = await startFixture("uring", { mode: "echo" });
        assert.match(tcp.engine.reason, expected);
        const conn = await Deno.connect({ hostname: "127.0.0.1", port: tcp.port });
        const sent = new Uint8Array(200_000).map((_, i) => i & 0xff);
        const [, got] = await Promise.all([conn.write(sent), readExactly(conn, sent.length)]);
        assert.deepEqual(got, sent);
        conn.close();
        await using udp = await startFixture("uring", { mode: "echo" }, { network: "udp" });
        assert.equal(await udpRoundTrip(udp.port), "ping");
      } finally {
        Deno.env.delete("TRIAD_NETLOOP_URING_DISABLE");
      }
    });
  }
});

testWith("serve() refuses an unknown backend and a bad option", [], async () => {
  const { serve, NetloopError } = await import("@triad/netloop");
  await assert.rejects(
    () => serve("data:text/javascript,", { backend: "kqueue" as "epoll" }),
    (error: unknown) => error instanceof NetloopError && error.code === "bad_option",
  );
  await assert.rejects(
    () => serve("data:text/javascript,", { loops: 0 }),
    /Option loops must be a positive integer, got 0/,
  );
});

async function autoChoice(permissions: string[]) {
  const { stdout, success } = await new Deno.Command(Deno.execPath(), {
    args: ["run", ...permissions, new URL("./netloop_auto_child.ts", import.meta.url).pathname],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  assert.ok(success);
  return JSON.parse(new TextDecoder().decode(stdout)) as {
    backend: string;
    reason: string;
    log: string[];
  };
}

testWith("serve() with backend auto picks uring here and logs why", [linux, ioUring], async () => {
  const choice = await autoChoice(["-A"]);
  assert.equal(choice.backend, "uring");
  assert.match(choice.reason, /io_uring is available/);
  assert.ok(choice.log.some((line) => /netloop: uring backend \(io_uring is available/.test(line)));
});

testWith("serve() with backend auto falls back to portable without FFI", [], async () => {
  const choice = await autoChoice(["--allow-net", "--allow-read", "--allow-env"]);
  assert.equal(choice.backend, "portable");
  assert.match(choice.reason, /FFI is not allowed/);
  assert.ok(choice.log.some((line) => /netloop: portable backend/.test(line)));
});
