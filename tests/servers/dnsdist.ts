/**
 * Starts a real dnsdist (Debian's `dnsdist` package) on a loopback port, forwarding to one
 * upstream through a packet cache, for tests that compare the proxy's answers with dnsdist's.
 * Stop it with `await using` or `stop()`.
 *
 * @module
 */
import { buildQuery } from "@triad/dnsproxy";
import { freePort } from "./free_port.ts";
import { queryUdp } from "../dnsproxy_client.ts";

/** A running dnsdist. */
export interface DnsdistServer extends AsyncDisposable {
  /** `127.0.0.1:<port>`. */
  readonly address: string;
  /** The port. */
  readonly port: number;
  /** Stops it (SIGTERM, then SIGKILL) and removes its directory. */
  stop(): Promise<void>;
}

/** The query `a.test. A`, to know dnsdist is up and reaches its upstream. */
const PROBE = buildQuery({ id: 0x1234, name: "a.test", type: 1, edns: false });

/**
 * Starts dnsdist forwarding to `upstream` with a 10,000-entry packet cache, and waits until it
 * answers through that upstream.
 *
 * @param upstream `host:port` of the upstream (an unbound from `startUnbound`).
 * @returns The running server.
 */
export async function startDnsdist(upstream: string): Promise<DnsdistServer> {
  const dir = await Deno.makeTempDir({ prefix: "triad-dnsdist-" });
  const port = await freePort();
  const config = [
    `setLocal("127.0.0.1:${port}")`,
    'setACL({"127.0.0.0/8"})',
    'setSecurityPollSuffix("")', // no status lookup through the system resolver
    `newServer({address="${upstream}", checkName="a.test."})`,
    "pc = newPacketCache(10000)",
    'getPool(""):setCache(pc)',
  ];
  await Deno.writeTextFile(`${dir}/dnsdist.conf`, config.join("\n") + "\n");
  const child = new Deno.Command("dnsdist", {
    args: ["--supervised", "--disable-syslog", "-C", `${dir}/dnsdist.conf`],
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const stderrText = new Response(child.stderr).text();
  let exited = false;
  const status = child.status.then((s) => {
    exited = true;
    return s;
  });
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    if (!exited) {
      child.kill("SIGTERM");
      const timer = setTimeout(() => {
        if (!exited) child.kill("SIGKILL");
      }, 3000);
      await status;
      clearTimeout(timer);
    }
    await stderrText.catch(() => "");
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  };
  const deadline = performance.now() + 10_000;
  while ((await queryUdp(port, PROBE, 200)) === null) {
    if (exited || performance.now() > deadline) {
      await stop();
      throw new Error(`dnsdist did not start: ${await stderrText}`);
    }
  }
  return { address: `127.0.0.1:${port}`, port, stop, [Symbol.asyncDispose]: stop };
}
