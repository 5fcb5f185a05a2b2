/**
 * The QUIC extension interface over loopback: runs netloop_quic_cases.ts under
 * `deno test -A --unstable-net` (Deno's QUIC is unstable), and checks the error without the flag.
 */
import assert from "node:assert/strict";
import { denoQuicTransport, type NetloopError } from "@triad/netloop";
import { command, type Requirement, testWith } from "./requirements.ts";
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

const noQuicApi: Requirement = {
  name: "no QUIC API",
  check: () =>
    typeof (Deno as { QuicEndpoint?: unknown }).QuicEndpoint === "function"
      ? "this run has --unstable-net, so the API is present"
      : undefined,
};

testWith("quic: without --unstable-net the transport says what is missing", [noQuicApi], () => {
  assert.throws(() => denoQuicTransport(), (e: NetloopError) => /--unstable-net/.test(e.message));
});
