/**
 * Starts a real unbound (Debian's `unbound` package) on loopback ports in a temporary directory,
 * serving only local zones: `test.` (static records, NXDOMAIN with an SOA for the rest, a big TXT
 * set that does not fit 1232 bytes) and `bench.` (every name under it answers, for cache-miss
 * load). Every other name is refused, so nothing ever leaves the machine. Stop it with
 * `await using` or `stop()`; it is killed on failure too.
 *
 * @module
 */
import dgram from "node:dgram";
import { freePort } from "./free_port.ts";

/** Options of {@linkcode startUnbound}. */
export interface UnboundOptions {
  /** Extra `local-data` lines (`"x.test. 300 IN A 10.0.0.9"`). */
  records?: string[];
  /** Also serve DNS over TLS on a second port, with a certificate for 127.0.0.1 from a test CA. */
  tls?: boolean;
  /** Also serve DNS over HTTPS (HTTP/2, `/dns-query`) on a third port, with the same certificate. */
  https?: boolean;
  /** Threads (`num-threads`). @default {1} */
  threads?: number;
  /** Pin the process to these CPUs with taskset (benchmarks). */
  cpus?: string;
  /** Socket buffer sizes (`so-rcvbuf`, `so-sndbuf`, e.g. `"4m"`). @default {the kernel's} */
  socketBuffer?: string;
  /** Its name server identifier (RFC 5001), sent to clients that ask with an NSID option. */
  nsid?: string;
  /**
   * TCP clients served at once (`incoming-num-tcp`; unbound's default is 10, and a forwarder that
   * carries each TCP client on a TCP connection of its own, as dnsdist does, needs as many).
   */
  tcpClients?: number;
  /** Listen on this port (to bring a stopped server back where it was). @default {a free one} */
  port?: number;
}

/** A running unbound. */
export interface UnboundServer extends AsyncDisposable {
  /** `127.0.0.1:<port>` (UDP and TCP). */
  readonly address: string;
  /** The port. */
  readonly port: number;
  /** `127.0.0.1:<port>` of DNS over TLS, when asked for. */
  readonly tlsAddress: string | undefined;
  /** `127.0.0.1:<port>` of DNS over HTTPS, when asked for. */
  readonly httpsAddress: string | undefined;
  /** The PEM certificate of the CA that signed the TLS port's certificate, when asked for. */
  readonly tlsCert: string | undefined;
  /** The process ID. */
  readonly pid: number;
  /** Stops it (SIGTERM, then SIGKILL) and removes its directory. */
  stop(): Promise<void>;
}

/** Records every test can rely on. */
const TEST_RECORDS: readonly string[] = [
  "test. 3600 IN SOA ns.test. admin.test. 1 3600 600 86400 60",
  "test. 3600 IN NS ns.test.",
  "ns.test. 3600 IN A 10.0.0.53",
  "a.test. 300 IN A 10.0.0.1",
  "a.test. 300 IN A 10.0.0.2",
  "a.test. 300 IN AAAA fd00::1",
  "www.test. 300 IN CNAME a.test.",
  "mail.test. 300 IN MX 10 a.test.",
  "short.test. 2 IN A 10.0.0.3",
  'txt.test. 300 IN TXT "hello world"',
];

function bigTxt(): string[] {
  const lines: string[] = [];
  for (let i = 0; i < 12; i++) {
    lines.push(`big.test. 300 IN TXT "${String(i).padStart(2, "0")}${"x".repeat(198)}"`);
  }
  return lines;
}

/** Sends `a.test. A` and waits for any answer, to know the server is up. */
function probe(port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = dgram.createSocket("udp4");
    const query = new Uint8Array([
      0x12,
      0x34,
      1,
      0,
      0,
      1,
      0,
      0,
      0,
      0,
      0,
      0,
      1,
      97,
      4,
      116,
      101,
      115,
      116,
      0,
      0,
      1,
      0,
      1,
    ]);
    const timer = setTimeout(() => {
      socket.close();
      resolve(false);
    }, timeoutMs);
    socket.on("message", () => {
      clearTimeout(timer);
      socket.close();
      resolve(true);
    });
    socket.on("error", () => {});
    socket.send(query, port, "127.0.0.1");
  });
}

async function openssl(args: string[]): Promise<void> {
  const { code, stderr } = await new Deno.Command("openssl", {
    args,
    stdout: "null",
    stderr: "piped",
  }).output();
  if (code !== 0) throw new Error(`openssl ${args[0]} failed: ${new TextDecoder().decode(stderr)}`);
}

/** A throwaway CA and a server certificate for IP 127.0.0.1 signed by it (webpki refuses a CA
 * certificate used as the server's own). */
export async function testCertificates(
  dir: string,
): Promise<{ ca: string; cert: string; key: string }> {
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  await openssl([
    "req",
    "-x509",
    ...ec,
    "-keyout",
    `${dir}/ca.key`,
    "-out",
    `${dir}/ca.pem`,
    "-days",
    "2",
    "-subj",
    "/CN=triad test CA",
  ]);
  await openssl([
    "req",
    ...ec,
    "-keyout",
    `${dir}/tls.key`,
    "-out",
    `${dir}/tls.csr`,
    "-subj",
    "/CN=127.0.0.1",
  ]);
  await Deno.writeTextFile(
    `${dir}/ext.cnf`,
    "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
  );
  await openssl([
    "x509",
    "-req",
    "-in",
    `${dir}/tls.csr`,
    "-CA",
    `${dir}/ca.pem`,
    "-CAkey",
    `${dir}/ca.key`,
    "-CAcreateserial",
    "-out",
    `${dir}/tls.pem`,
    "-days",
    "2",
    "-extfile",
    `${dir}/ext.cnf`,
  ]);
  return { ca: `${dir}/ca.pem`, cert: `${dir}/tls.pem`, key: `${dir}/tls.key` };
}

/**
 * Starts unbound and waits until it answers.
 *
 * @param options Extra records, TLS, threads.
 * @returns The running server.
 */
export async function startUnbound(options: UnboundOptions = {}): Promise<UnboundServer> {
  // Another process may take the picked port before unbound binds it: try again, a bounded number.
  for (let attempt = 1;; attempt++) {
    try {
      return await startUnboundOnce(options);
    } catch (error) {
      if (attempt >= 3 || !/address already in use/.test(String(error))) throw error;
    }
  }
}

async function startUnboundOnce(options: UnboundOptions): Promise<UnboundServer> {
  const dir = await Deno.makeTempDir({ prefix: "triad-unbound-" });
  let child: Deno.ChildProcess | undefined;
  try {
    const port = options.port ?? await freePort();
    const tlsPort = options.tls ? await freePort() : undefined;
    const httpsPort = options.https ? await freePort() : undefined;
    const tls = tlsPort === undefined && httpsPort === undefined
      ? undefined
      : await testCertificates(dir);
    const records = [...TEST_RECORDS, ...bigTxt(), ...(options.records ?? [])];
    const lines = [
      "server:",
      `  interface: 127.0.0.1@${port}`,
      ...(tlsPort === undefined ? [] : [`  interface: 127.0.0.1@${tlsPort}`]),
      ...(httpsPort === undefined ? [] : [`  interface: 127.0.0.1@${httpsPort}`]),
      `  port: ${port}`,
      "  do-daemonize: no",
      '  username: ""',
      '  chroot: ""',
      `  directory: "${dir}"`,
      '  pidfile: ""',
      "  use-syslog: no",
      '  logfile: ""',
      "  verbosity: 0",
      "  do-ip6: no",
      `  num-threads: ${options.threads ?? 1}`,
      "  so-reuseport: yes",
      ...(options.socketBuffer === undefined
        ? []
        : [`  so-rcvbuf: ${options.socketBuffer}`, `  so-sndbuf: ${options.socketBuffer}`]),
      ...(options.tcpClients === undefined ? [] : [`  incoming-num-tcp: ${options.tcpClients}`]),
      "  module-config: iterator",
      "  access-control: 127.0.0.0/8 allow",
      "  do-not-query-localhost: yes",
      "  msg-buffer-size: 65552",
      "  edns-buffer-size: 1232",
      "  rrset-roundrobin: no",
      ...(options.nsid === undefined ? [] : [`  nsid: "ascii_${options.nsid}"`]),
      // Nothing outside the local zones is ever resolved: no traffic leaves the machine.
      '  local-zone: "." refuse',
      '  local-zone: "test." static',
      '  local-zone: "bench." redirect',
      '  local-data: "bench. 300 IN A 10.9.9.9"',
      ...records.map((record) => `  local-data: '${record}'`),
      ...(tls === undefined ? [] : [
        `  tls-service-key: "${tls.key}"`,
        `  tls-service-pem: "${tls.cert}"`,
        ...(tlsPort === undefined ? [] : [`  tls-port: ${tlsPort}`]),
        ...(httpsPort === undefined ? [] : [`  https-port: ${httpsPort}`]),
      ]),
      "remote-control:",
      "  control-enable: no",
    ];
    const configPath = `${dir}/unbound.conf`;
    await Deno.writeTextFile(configPath, lines.join("\n") + "\n");
    const args = ["-d", "-c", configPath];
    child = options.cpus === undefined
      ? new Deno.Command("unbound", { args, stdout: "null", stderr: "piped" }).spawn()
      : new Deno.Command("taskset", {
        args: ["-c", options.cpus, "unbound", ...args],
        stdout: "null",
        stderr: "piped",
      }).spawn();
    const started = child;
    const stderrText = new Response(started.stderr).text();
    let exited = false;
    const status = started.status.then((s) => {
      exited = true;
      return s;
    });
    const deadline = performance.now() + 10_000;
    while (!(await probe(port, 200))) {
      if (exited || performance.now() > deadline) {
        if (!exited) started.kill("SIGKILL");
        await status;
        throw new Error(`unbound did not start: ${await stderrText}`);
      }
    }
    let stopped = false;
    const stop = async () => {
      if (stopped) return;
      stopped = true;
      if (!exited) {
        started.kill("SIGTERM");
        const timer = setTimeout(() => {
          if (!exited) started.kill("SIGKILL");
        }, 3000);
        await status;
        clearTimeout(timer);
      }
      await stderrText.catch(() => "");
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    };
    return {
      address: `127.0.0.1:${port}`,
      port,
      tlsAddress: tlsPort === undefined ? undefined : `127.0.0.1:${tlsPort}`,
      httpsAddress: httpsPort === undefined ? undefined : `127.0.0.1:${httpsPort}`,
      tlsCert: tls === undefined ? undefined : await Deno.readTextFile(tls.ca),
      pid: started.pid,
      stop,
      [Symbol.asyncDispose]: stop,
    };
  } catch (error) {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    throw error;
  }
}
