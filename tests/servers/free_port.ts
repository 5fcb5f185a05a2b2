/**
 * Picks a loopback port for a test server that is free for both TCP and UDP, below the ephemeral
 * range (32768 and up by default on Linux), so that the random source ports other tests' clients
 * use cannot take it between the pick and the server's bind.
 *
 * @module
 */
import dgram from "node:dgram";

function udpFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = dgram.createSocket("udp4");
    socket.once("error", () => {
      socket.close();
      resolve(false);
    });
    socket.bind(port, "127.0.0.1", () => socket.close(() => resolve(true)));
  });
}

function tcpFree(port: number): boolean {
  try {
    Deno.listen({ hostname: "127.0.0.1", port }).close();
    return true;
  } catch {
    return false;
  }
}

/** Returns a port in 20000-32767 free for TCP and UDP on 127.0.0.1 (tried at random, bounded). */
export async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = 20000 + Math.floor(Math.random() * 12768);
    if (tcpFree(port) && await udpFree(port)) return port;
  }
  throw new Error("No free loopback port for TCP and UDP in 20000-32767 after 200 tries");
}
