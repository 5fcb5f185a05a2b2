/**
 * The QUIC extension interface over loopback: runs netloop_quic_cases.ts under
 * `deno test -A --unstable-net` (Deno's QUIC is unstable), and checks the error without the flag (in
 * a child, so it runs whatever flags this run has).
 */
import assert from "node:assert/strict";
import { command, testWith } from "./requirements.ts";
import { makeTestCerts } from "./tls_certs.ts";

const decoder = new TextDecoder();

testWith("quic: streams, identity, congestion control and 0-RTT over loopback", [
  command("openssl"),
], async () => {
  const { dir } = await makeTestCerts();
  {
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "test",
        "-A",
        "--unstable-net",
        new URL("./netloop_quic_cases.ts", import.meta.url).pathname,
      ],
      env: { NETLOOP_QUIC_CERTS: dir, NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = decoder.decode(out.stdout) + decoder.decode(out.stderr);
    assert.ok(out.success, text);
    assert.match(text, /ok \| 6 passed \| 0 failed/);
  }
});

testWith("quic: without --unstable-net the transport says what is missing", [], async () => {
  // A child without the flag: this run may have it (deno task test does).
  const mod = new URL("../netloop/mod.ts", import.meta.url).href;
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "eval",
      `import { denoQuicTransport } from ${JSON.stringify(mod)};
try { denoQuicTransport(); console.log("no error"); } catch (e) { console.log(e.message); }`,
    ],
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = decoder.decode(out.stdout) + decoder.decode(out.stderr);
  assert.ok(out.success, text);
  assert.match(text, /--unstable-net/);
  assert.doesNotMatch(text, /no error/);
});
