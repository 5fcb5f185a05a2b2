/**
 * Kernel TLS (kTLS): probed when a server starts TLS on `uring` or `epoll`, and not used, with a
 * log line saying why.
 *
 * Handing the record layer to the kernel after the handshake takes `setsockopt(TCP_ULP, "tls")`
 * and then `TLS_TX`/`TLS_RX` with each direction's key, IV, salt and the next record sequence
 * number. OpenSSL 3 does that itself (`SSL_OP_ENABLE_KTLS`) only when it owns the socket through a
 * socket BIO. netloop runs OpenSSL over memory BIOs (the loop owns the socket), and OpenSSL 3.0
 * gives such a connection neither its traffic keys (the keylog callback gives the traffic secrets,
 * from which the keys could be derived with HKDF-Expand-Label) nor its record sequence numbers
 * (after the server's session tickets and whatever early application data went by, they are no
 * longer 0, and no public call returns them); ciphertext already read into the loop's buffers
 * would also have to be decrypted by OpenSSL before the kernel takes over, and kTLS receive turns
 * every non-data record into a control message the loops would have to read with `recvmsg`.
 *
 * @module
 */
import { errnoName } from "@triad/core";
import { errno, libc } from "./_ffi.ts";
import { AF_INET, encodeSockaddr } from "./_sockaddr.ts";
import { IPPROTO_TCP, SOCK_CLOEXEC, SOCK_STREAM } from "./_socket.ts";

const TCP_ULP = 31;
const ENOENT = 2;

/** What the probe found. */
export interface KtlsProbe {
  /** The kernel accepts the `tls` upper-layer protocol on a TCP socket. */
  available: boolean;
  /** Why (an errno name when it does not). */
  reason: string;
}

/**
 * Asks the kernel for the `tls` ULP on a connected loopback TCP socket (the only way to know:
 * `/proc/sys/net/ipv4/tcp_available_ulp` lists loaded modules only, and the first request loads
 * it).
 *
 * @returns Whether kTLS is there, and why not.
 */
export function probeKtls(): KtlsProbe {
  const lib = libc();
  const fds: number[] = [];
  const failed = (what: string): KtlsProbe => ({
    available: false,
    reason: `${what} failed: ${errnoName(errno())}`,
  });
  try {
    const address = new Uint8Array(28);
    const length = encodeSockaddr({ family: 4, address: "127.0.0.1", port: 0 }, address);
    const listener = lib.socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (listener < 0) return failed("socket");
    fds.push(listener);
    if (lib.bind(listener, address, length) < 0) return failed("bind");
    if (lib.listen(listener, 1) < 0) return failed("listen");
    const size = new Uint32Array([address.length]);
    if (lib.getsockname(listener, address, new Uint8Array(size.buffer)) < 0) {
      return failed("getsockname");
    }
    const client = lib.socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (client < 0) return failed("socket");
    fds.push(client);
    if (lib.connect(client, address, size[0]!) < 0) return failed("connect");
    const ulp = new TextEncoder().encode("tls");
    if (lib.setsockopt(client, IPPROTO_TCP, TCP_ULP, ulp, ulp.length) < 0) {
      const code = errno();
      return {
        available: false,
        reason: code === ENOENT
          ? 'this kernel has no tls module: setsockopt(TCP_ULP, "tls") gave ENOENT'
          : `setsockopt(TCP_ULP, "tls") failed: ${errnoName(code)}`,
      };
    }
    return { available: true, reason: "the kernel offers the tls ULP" };
  } finally {
    for (const fd of fds) lib.close(fd);
  }
}

/**
 * The log line for a TLS server's start: kTLS is not used, and why.
 *
 * @param probe What {@linkcode probeKtls} found.
 * @returns The line.
 */
export function ktlsLine(probe: KtlsProbe): string {
  return probe.available
    ? `netloop: kernel TLS not used (${probe.reason}, but OpenSSL runs over memory BIOs, which ` +
      "give no traffic keys or record sequence numbers to hand over; records stay in OpenSSL)"
    : `netloop: kernel TLS not used (${probe.reason}); records stay in OpenSSL`;
}
