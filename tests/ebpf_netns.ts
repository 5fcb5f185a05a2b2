/**
 * A veth pair into a network namespace the test creates: the host end stays in this namespace
 * (where programs attach), the peer lives in the new namespace and sends UDP to the host end.
 * Everything is removed again on dispose, also after a failure.
 *
 * @module
 */

async function ip(...args: string[]): Promise<void> {
  const output = await new Deno.Command("ip", { args, stdout: "piped", stderr: "piped" }).output();
  if (!output.success) {
    throw new Error(
      `ip ${args.join(" ")} failed: ${new TextDecoder().decode(output.stderr).trim()}`,
    );
  }
}

/** A veth pair between this namespace and a fresh one. */
export interface VethPair extends AsyncDisposable {
  /** The namespace name. */
  namespace: string;
  /** The interface in this namespace. */
  hostInterface: string;
  /** Its IPv4 address. */
  hostAddress: string;
  /** The interface inside the namespace. */
  peerInterface: string;
  /**
   * Sends UDP datagrams from inside the namespace to the host end.
   *
   * @param count How many.
   * @param port The destination port.
   */
  sendUdp(count: number, port: number): Promise<void>;
}

/** Creates a namespace and a veth pair into it, addressed 10.251.N.1 (host) / .2 (peer). */
export async function createVethPair(): Promise<VethPair> {
  const tag = `${Deno.pid % 100000}`;
  const namespace = `triad${tag}`;
  const hostInterface = `tv${tag}a`;
  const peerInterface = `tv${tag}b`;
  const subnet = `10.251.${Deno.pid % 250}`;
  const cleanup = async () => {
    await ip("link", "del", hostInterface).catch(() => {});
    await ip("netns", "del", namespace).catch(() => {});
  };
  try {
    await ip("netns", "add", namespace);
    await ip("link", "add", hostInterface, "type", "veth", "peer", "name", peerInterface);
    await ip("link", "set", peerInterface, "netns", namespace);
    await ip("addr", "add", `${subnet}.1/30`, "dev", hostInterface);
    await ip("link", "set", hostInterface, "up");
    await ip("-n", namespace, "addr", "add", `${subnet}.2/30`, "dev", peerInterface);
    await ip("-n", namespace, "link", "set", peerInterface, "up");
    await ip("-n", namespace, "link", "set", "lo", "up");
  } catch (error) {
    await cleanup();
    throw error;
  }
  return {
    namespace,
    hostInterface,
    hostAddress: `${subnet}.1`,
    peerInterface,
    async sendUdp(count: number, port: number) {
      const script = `for i in $(seq ${count}); do echo hi > /dev/udp/${subnet}.1/${port}; done`;
      await ip("netns", "exec", namespace, "bash", "-c", script);
    },
    [Symbol.asyncDispose]: cleanup,
  };
}
