/**
 * Privileged integration tests of `deno task trace`: the real tracer process, real loopback
 * connections with known ports and byte counts, and bpftool to check nothing is left behind.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  bpfTest,
  command,
  kernelAtLeast,
  type Requirement,
  root,
  testWith,
  tracefs,
} from "./requirements.ts";
import type { TraceEvent } from "./support.ts";
import { pollUntil } from "./wait_for.ts";

const MAIN = new URL("../ebpf/trace/main.ts", import.meta.url).pathname;
const NEEDS: Requirement[] = [root, ...bpfTest, tracefs];

/** The tracer as a child process, started and waited for until it says it is attached. */
class Tracer {
  #child: Deno.ChildProcess;
  #stdout = "";
  #stderr = "";
  #done: Promise<void>;

  private constructor(child: Deno.ChildProcess) {
    this.#child = child;
    const collect = async (stream: ReadableStream<Uint8Array>, into: "out" | "err") => {
      for await (const text of stream.pipeThrough(new TextDecoderStream())) {
        if (into === "out") this.#stdout += text;
        else this.#stderr += text;
      }
    };
    this.#done = Promise.all([collect(child.stdout, "out"), collect(child.stderr, "err")])
      .then(() => {});
  }

  static async start(args: string[], wrapper: string[] = []): Promise<Tracer> {
    const command = [...wrapper, Deno.execPath(), "run", "-A", MAIN, ...args];
    const child = new Deno.Command(command[0]!, {
      args: command.slice(1),
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const tracer = new Tracer(child);
    const ready = await tracer.waitFor(
      () => /tracing TCP connections/.test(tracer.#stderr),
      30_000,
    );
    if (!ready) {
      await tracer.stop();
      throw new Error(`The tracer did not start: ${tracer.#stderr}`);
    }
    return tracer;
  }

  get stderr(): string {
    return this.#stderr;
  }

  get stdout(): string {
    return this.#stdout;
  }

  events(): TraceEvent[] {
    return this.#stdout.split("\n").filter((line) => line.startsWith("{")).map((line) =>
      JSON.parse(line) as TraceEvent
    );
  }

  /** Polls `done` until it holds or `timeoutMs` passed; returns whether it held. */
  async waitFor(done: () => boolean, timeoutMs = 5_000): Promise<boolean> {
    return await pollUntil(done, "the tracer's output", timeoutMs).then(() => true, () => done());
  }

  /** Sends a signal without waiting (SIGSTOP/SIGCONT). */
  signal(signal: Deno.Signal): void {
    this.#child.kill(signal);
  }

  /** Sends a signal (if still running) and waits for the exit. */
  async stop(signal: Deno.Signal = "SIGINT"): Promise<Deno.CommandStatus> {
    try {
      this.#child.kill(signal);
    } catch {
      // already exited
    }
    const status = await this.#child.status;
    await this.#done;
    return status;
  }

  /** Waits for the process to exit on its own (bounded). */
  async exited(timeoutMs: number): Promise<Deno.CommandStatus> {
    const timer = setTimeout(() => this.#child.kill("SIGKILL"), timeoutMs);
    const status = await this.#child.status;
    clearTimeout(timer);
    await this.#done;
    return status;
  }
}

const HOST = { 4: "127.0.0.1", 6: "::1" } as const;

async function readExactly(conn: Deno.Conn, count: number): Promise<void> {
  const buffer = new Uint8Array(65536);
  let got = 0;
  while (got < count) {
    const n = await conn.read(buffer.subarray(0, Math.min(buffer.length, count - got)));
    if (n === null) throw new Error(`EOF after ${got} of ${count} bytes`);
    got += n;
  }
}

async function writeAll(conn: Deno.Conn, count: number): Promise<void> {
  const data = new Uint8Array(count).fill(0x61);
  let sent = 0;
  while (sent < count) sent += await conn.write(data.subarray(sent));
}

interface Exchange {
  serverPort: number;
  clientPort: number;
}

/**
 * One connection on loopback: the client sends `up` bytes, the server answers `down` bytes, the
 * connection stays open `holdMs`, then the client closes first and the server after it.
 */
async function exchange(
  listener: Deno.TcpListener,
  family: 4 | 6,
  up: number,
  down: number,
  holdMs: number,
): Promise<Exchange> {
  const serverPort = listener.addr.port;
  const [client, server] = await Promise.all([
    Deno.connect({ hostname: HOST[family], port: serverPort }),
    listener.accept(),
  ]);
  const served = (async () => {
    await readExactly(server, up);
    await writeAll(server, down);
    const rest = new Uint8Array(16);
    while ((await server.read(rest)) !== null) { /* until the client's FIN */ }
    server.close();
  })();
  await writeAll(client, up);
  await readExactly(client, down);
  const clientPort = client.localAddr.port;
  await new Promise((resolve) => setTimeout(resolve, holdMs));
  client.close();
  await served;
  return { serverPort, clientPort };
}

function listen(family: 4 | 6): Deno.TcpListener {
  return Deno.listen({ hostname: HOST[family], port: 0 });
}

function ofPort(events: TraceEvent[], port: number): TraceEvent[] {
  return events.filter((e) => e.sport === port || e.dport === port);
}

function mainThreadComm(): string {
  return Deno.readTextFileSync("/proc/self/comm").trim();
}

/**
 * The tracer's programs, maps and links still in the kernel, once those of a process that just
 * exited are gone: the kernel frees maps from a workqueue after the last reference, so allow it
 * up to two seconds to reach `expected`.
 */
async function tcptraceObjects(expected: string[] = []): Promise<string[]> {
  let found = await listTcptraceObjects();
  for (let i = 0; i < 40 && JSON.stringify(found) !== JSON.stringify(expected); i++) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    found = await listTcptraceObjects();
  }
  return found;
}

/** Names of this object's programs and maps as the kernel keeps them (15 characters). */
async function listTcptraceObjects(): Promise<string[]> {
  const found: string[] = [];
  for (const kind of ["prog", "map", "link"]) {
    const { stdout } = await new Deno.Command("bpftool", { args: ["-j", kind, "show"] }).output();
    const items = JSON.parse(new TextDecoder().decode(stdout) || "[]") as {
      id: number;
      name?: string;
      prog_id?: number;
    }[];
    for (const item of items) {
      const name = item.name ?? "";
      if (
        /^(inet_sock_set_s|sys_exit_accept|inet_csk_accept|tcptrac|list_tcp)/.test(name)
      ) {
        found.push(`${kind} ${item.id} ${name}`);
      }
    }
  }
  return found;
}

function checkExchange(
  events: TraceEvent[],
  family: 4 | 6,
  ex: Exchange,
  up: number,
  down: number,
  holdMs: number,
): void {
  const host = HOST[family];
  const mine = ofPort(events, ex.serverPort);
  assert.deepEqual(
    mine.map((e) => e.type).sort(),
    ["accept", "close", "close", "connect"],
    `events on port ${ex.serverPort}: ${JSON.stringify(mine)}`,
  );
  const clientSide = {
    family,
    saddr: host,
    sport: ex.clientPort,
    daddr: host,
    dport: ex.serverPort,
  };
  const serverSide = {
    family,
    saddr: host,
    sport: ex.serverPort,
    daddr: host,
    dport: ex.clientPort,
  };
  const owner = { pid: Deno.pid, comm: mainThreadComm() };
  const connect = mine.find((e) => e.type === "connect")!;
  const accept = mine.find((e) => e.type === "accept")!;
  const closes = mine.filter((e) => e.type === "close");
  const clientClose = closes.find((e) => e.sport === ex.clientPort)!;
  const serverClose = closes.find((e) => e.sport === ex.serverPort)!;
  // Every field exactly, but the time and a close's duration (checked below).
  const exactly = (event: TraceEvent, fields: Partial<TraceEvent>) => {
    const untimed = event.type === "close" ? { time: "", durationMs: 0 } : { time: "" };
    assert.deepEqual({ ...event, ...untimed }, { ...owner, ...fields, ...untimed });
  };
  exactly(connect, { type: "connect", ...clientSide });
  exactly(accept, { type: "accept", ...serverSide });
  assert.ok(clientClose && serverClose, JSON.stringify(closes));
  exactly(clientClose, { type: "close", ...clientSide, txBytes: up, rxBytes: down });
  exactly(serverClose, { type: "close", ...serverSide, txBytes: down, rxBytes: up });
  for (const close of closes) {
    assert.ok(
      close.durationMs! >= holdMs * 0.9 && close.durationMs! < holdMs + 10_000,
      `durationMs ${close.durationMs} for a connection held ${holdMs} ms`,
    );
  }
  for (const event of mine) {
    const age = Date.now() - Date.parse(event.time);
    assert.ok(age >= 0 && age < 60_000, `time ${event.time} is not recent`);
  }
  assert.ok(Date.parse(connect.time) <= Date.parse(clientClose.time));
}

testWith("deno task trace reports connect, accept and close exactly", NEEDS, async (t) => {
  const before = await tcptraceObjects();
  using v4 = listen(4);
  using v6 = listen(6);
  using other = listen(4);
  const tracer = await Tracer.start(["--json"]);
  let status: Deno.CommandStatus | undefined;
  try {
    const ex4 = await exchange(v4, 4, 1000, 300, 200);
    const ex6 = await exchange(v6, 6, 100_000, 7, 50);
    await tracer.waitFor(() =>
      ofPort(tracer.events(), ex4.serverPort).length >= 4 &&
      ofPort(tracer.events(), ex6.serverPort).length >= 4
    );
    await t.step("IPv4: pids, addresses, ports, duration and bytes", () => {
      checkExchange(tracer.events(), 4, ex4, 1000, 300, 200);
    });
    await t.step("IPv6: pids, addresses, ports, duration and bytes", () => {
      checkExchange(tracer.events(), 6, ex6, 100_000, 7, 50);
    });
    await t.step("a refused connection is no connection", async () => {
      const port = other.addr.port;
      other.close();
      await assert.rejects(Deno.connect({ hostname: "127.0.0.1", port }));
      // A later connection's events come after any the refused one would have made.
      const marker = await exchange(v4, 4, 1, 1, 0);
      await tracer.waitFor(() => ofPort(tracer.events(), marker.serverPort).length >= 8);
      assert.deepEqual(ofPort(tracer.events(), port).filter((e) => e.type !== "lost"), []);
    });
  } finally {
    status = await tracer.stop("SIGINT");
  }
  await t.step("SIGINT: exit 0 with a status line", () => {
    assert.equal(status!.code, 0, tracer.stderr);
    assert.match(tracer.stderr, /trace: \d+ events \(\d+ connect, \d+ accept, \d+ close\), 0 lost/);
  });
  await t.step("nothing left loaded or attached (bpftool)", async () => {
    assert.deepEqual(await tcptraceObjects(before), before);
  });
});

testWith(
  "deno task trace --snapshot lists the TCP sockets that exist at start",
  [...NEEDS, kernelAtLeast(5, 9, "the TCP iterator (bpf_iter tcp)")],
  async (t) => {
    const before = await tcptraceObjects();
    using listener = listen(4);
    const port = listener.addr.port;
    using client = await Deno.connect({ hostname: "127.0.0.1", port });
    using _server = await listener.accept();
    const clientPort = (client.localAddr as Deno.NetAddr).port;
    using other = listen(6);
    const tracer = await Tracer.start(["--json", "--snapshot", "--port", String(port)]);
    let status: Deno.CommandStatus | undefined;
    try {
      assert.ok(
        await tracer.waitFor(() => /TCP sockets existed at start/.test(tracer.stderr)),
        tracer.stderr,
      );
      const sockets = tracer.events().filter((e) => e.type === "socket");
      await t.step("the listener and both ends of the connection, with their state", () => {
        const seen = sockets.map((e) =>
          `${e.family} ${e.saddr}:${e.sport} ${e.daddr}:${e.dport} ${e.newstate}`
        ).toSorted();
        assert.deepEqual(
          seen,
          [
            `4 127.0.0.1:${clientPort} 127.0.0.1:${port} ESTABLISHED`,
            `4 127.0.0.1:${port} 0.0.0.0:0 LISTEN`,
            `4 127.0.0.1:${port} 127.0.0.1:${clientPort} ESTABLISHED`,
          ].toSorted(),
        );
      });
      await t.step("--port filters the snapshot: another listener is left out", () => {
        assert.ok(sockets.every((e) => e.sport !== other.addr.port));
      });
    } finally {
      status = await tracer.stop("SIGINT");
    }
    await t.step("SIGINT: exit 0; nothing left loaded or attached (bpftool)", async () => {
      assert.equal(status!.code, 0, tracer.stderr);
      assert.deepEqual(await tcptraceObjects(before), before);
    });
  },
);

/** fexit programs load here (the tracer's fexit flavour starts), else why not. */
const fexit: Requirement = {
  name: "fexit",
  check: () => {
    const { code, stderr } = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", MAIN, "--accept-hook", "fexit", "--port", "1", "--duration", "0.1"],
      stdout: "null",
      stderr: "piped",
    }).outputSync();
    return code === 0
      ? undefined
      : `needs fexit programs (Linux 5.17+ with BTF trampolines): ${
        new TextDecoder().decode(stderr).trim()
      }`;
  },
};

for (const hook of ["syscall", "fexit"] as const) {
  testWith(
    `deno task trace --accept-hook ${hook} attributes accepts to the accepting process`,
    hook === "fexit" ? [...NEEDS, fexit] : NEEDS,
    async () => {
      using listener = listen(4);
      const { port } = listener.addr;
      const tracer = await Tracer.start(["--json", "--port", String(port), "--accept-hook", hook]);
      try {
        assert.match(tracer.stderr, hook === "fexit" ? /accepts: fexit/ : /accepts: accept sysc/);
        const ex = await exchange(listener, 4, 64, 32, 0);
        await tracer.waitFor(() => ofPort(tracer.events(), ex.serverPort).length >= 4);
        checkExchange(tracer.events(), 4, ex, 64, 32, 0);
      } finally {
        assert.equal((await tracer.stop()).code, 0);
      }
    },
  );
}

testWith("deno task trace filters in the kernel", NEEDS, async (t) => {
  await t.step("--port keeps one port, either side", async () => {
    using wanted = listen(4);
    using unwanted = listen(4);
    const tracer = await Tracer.start(["--json", "--port", String(wanted.addr.port)]);
    try {
      const ex = await exchange(wanted, 4, 10, 20, 0);
      const skipped = await exchange(unwanted, 4, 10, 20, 0);
      // A later connection on the wanted port: its events come after any of the skipped one.
      const marker = await exchange(wanted, 4, 1, 1, 0);
      await tracer.waitFor(() => ofPort(tracer.events(), marker.serverPort).length >= 8);
      const notMarker = (e: TraceEvent) =>
        e.sport !== marker.clientPort && e.dport !== marker.clientPort;
      checkExchange(tracer.events().filter(notMarker), 4, ex, 10, 20, 0);
      assert.deepEqual(ofPort(tracer.events(), skipped.serverPort), []);
      // nothing but the wanted port at all
      assert.deepEqual(ofPort(tracer.events(), ex.serverPort), tracer.events());
    } finally {
      assert.equal((await tracer.stop()).code, 0);
    }
  });

  await t.step("--family 6 drops IPv4", async () => {
    using v4 = listen(4);
    using v6 = listen(6);
    const tracer = await Tracer.start(["--json", "--family", "6"]);
    try {
      const ex4 = await exchange(v4, 4, 1, 1, 0);
      const ex6 = await exchange(v6, 6, 1, 1, 0);
      // ex6 came after ex4: its events come after any of ex4's.
      await tracer.waitFor(() => ofPort(tracer.events(), ex6.serverPort).length >= 4);
      checkExchange(tracer.events(), 6, ex6, 1, 1, 0);
      assert.deepEqual(ofPort(tracer.events(), ex4.serverPort), []);
      assert.ok(tracer.events().every((e) => e.type === "lost" || e.family === 6));
    } finally {
      assert.equal((await tracer.stop()).code, 0);
    }
  });

  // A child process (bash, through /dev/tcp) connects besides this process.
  async function bashConnect(port: number, bytes: number): Promise<number> {
    const child = new Deno.Command("bash", {
      args: [
        "-c",
        `exec 3<>/dev/tcp/127.0.0.1/${port}; printf '%${bytes}s' '' >&3; sleep 0.1; exec 3>&-`,
      ],
      stdout: "null",
      stderr: "null",
    }).spawn();
    const status = await child.status;
    assert.equal(status.code, 0);
    return child.pid;
  }

  async function serveOne(listener: Deno.TcpListener, bytes: number): Promise<void> {
    const conn = await listener.accept();
    await readExactly(conn, bytes);
    while ((await conn.read(new Uint8Array(16))) !== null) { /* until FIN */ }
    conn.close();
  }

  for (const filter of ["--pid", "--comm"] as const) {
    await t.step(`${filter} keeps only the owner's sockets`, async () => {
      using listener = listen(4);
      const port = listener.addr.port;
      // The bash child's pid is known only once spawned, so --pid uses a filter set in a second
      // tracer run: first learn nothing, just run the comm filter; for --pid spawn a parked bash.
      let pidFilter: string;
      let parked: Deno.ChildProcess | undefined;
      if (filter === "--pid") {
        parked = new Deno.Command("bash", {
          args: [
            "-c",
            `read -r _; exec 3<>/dev/tcp/127.0.0.1/${port}; printf '%33s' '' >&3; sleep 0.1; exec 3>&-; ` +
            // a second connection when told: the barrier after this process's own connection
            `read -r _; exec 3<>/dev/tcp/127.0.0.1/${port}; exec 3>&-`,
          ],
          stdin: "piped",
          stdout: "null",
          stderr: "null",
        }).spawn();
        pidFilter = String(parked.pid);
      } else {
        pidFilter = "bash";
      }
      const tracer = await Tracer.start(["--json", filter, pidFilter]);
      try {
        const served = serveOne(listener, 33);
        let childPid: number;
        const writer = parked?.stdin.getWriter();
        if (parked) {
          await writer!.write(new TextEncoder().encode("go\n"));
          childPid = parked.pid;
        } else {
          childPid = await bashConnect(port, 33);
        }
        await served;
        // this process's own connection to the same port must not show
        const ex = await exchange(listener, 4, 5, 5, 0);
        // Barrier: the owner connects once more; its events come after any of ours.
        const markerServed = serveOne(listener, 0);
        if (parked) {
          await writer!.write(new TextEncoder().encode("go\n"));
          await writer!.close();
          assert.equal((await parked.status).code, 0);
        } else {
          await bashConnect(port, 0);
        }
        await markerServed;
        await tracer.waitFor(() => ofPort(tracer.events(), port).length >= 4);
        const all = ofPort(tracer.events(), port);
        assert.deepEqual(
          all.map((e) => e.type),
          ["connect", "close", "connect", "close"],
          JSON.stringify(all),
        );
        const mine = all.slice(0, 2);
        for (const event of mine) {
          assert.equal(event.pid, childPid);
          assert.equal(event.comm, "bash");
          assert.equal(event.dport, port);
          assert.notEqual(event.sport, ex.clientPort);
        }
        assert.equal(mine[1]!.txBytes, 33);
        assert.equal(mine[1]!.rxBytes, 0);
        if (filter === "--pid") {
          assert.ok(tracer.events().every((e) => e.type === "lost" || e.pid === childPid));
        } else {
          assert.ok(tracer.events().every((e) => e.type === "lost" || e.comm === "bash"));
        }
      } finally {
        assert.equal((await tracer.stop()).code, 0);
      }
    });
  }
});

testWith("deno task trace --states shows every transition", NEEDS, async () => {
  using listener = listen(4);
  const port = listener.addr.port;
  const tracer = await Tracer.start(["--json", "--states", "--port", String(port)]);
  try {
    const ex = await exchange(listener, 4, 3, 4, 0);
    // CLOSE -> SYN_SENT happens before connect() picks the local port: sport is 0 there
    const states = (sport: number) =>
      tracer.events().filter((e) =>
        e.type === "state" && (e.sport === sport || (sport === ex.clientPort && e.sport === 0))
      ).map((e) => `${e.oldstate}->${e.newstate}`);
    await tracer.waitFor(() => states(ex.clientPort).at(-1) === "FIN_WAIT2->CLOSE");
    await tracer.waitFor(() => states(port).includes("LAST_ACK->CLOSE"));
    assert.deepEqual(states(ex.clientPort), [
      "CLOSE->SYN_SENT",
      "SYN_SENT->ESTABLISHED",
      "ESTABLISHED->FIN_WAIT1",
      "FIN_WAIT1->FIN_WAIT2",
      "FIN_WAIT2->CLOSE",
    ]);
    // the server's child socket; the listener itself entered LISTEN before the tracer started
    assert.deepEqual(states(port).filter((s) => s !== "LISTEN->CLOSE"), [
      "LISTEN->SYN_RECV",
      "SYN_RECV->ESTABLISHED",
      "ESTABLISHED->CLOSE_WAIT",
      "CLOSE_WAIT->LAST_ACK",
      "LAST_ACK->CLOSE",
    ]);
    const connect = tracer.events().find((e) => e.type === "connect")!;
    assert.equal(connect.sport, ex.clientPort);
  } finally {
    assert.equal((await tracer.stop()).code, 0);
  }
});

testWith("deno task trace reports lost events, and none silently", NEEDS, async () => {
  using listener = listen(4);
  const port = listener.addr.port;
  // 4 KiB holds 39 records; the reader is stopped while 100 connections make 400 events
  const tracer = await Tracer.start(["--json", "--port", String(port), "--ring-size", "4096"]);
  const connections = 100;
  let status: Deno.CommandStatus;
  try {
    tracer.signal("SIGSTOP");
    try {
      for (let i = 0; i < connections; i++) await exchange(listener, 4, 1, 1, 0);
    } finally {
      tracer.signal("SIGCONT");
    }
    const lost = () =>
      tracer.events().filter((e) => e.type === "lost").reduce((n, e) => n + e.count!, 0);
    const accounted = () => ofPort(tracer.events(), port).length + lost();
    await tracer.waitFor(() => accounted() >= connections * 4);
    assert.equal(accounted(), connections * 4);
    assert.ok(lost() > 300, `lost ${lost()}`);
    assert.match(tracer.stderr, /trace: \d+ events lost \(ring buffer full\)/);
  } finally {
    status = await tracer.stop();
  }
  assert.equal(status.code, 0);
  assert.match(tracer.stderr, /trace: \d+ events \(.*\), [1-9]\d* lost/);
});

testWith("deno task trace stops by itself and on SIGTERM", NEEDS, async (t) => {
  await t.step("--max-events 2 exits 0 after two events", async () => {
    using listener = listen(4);
    const { port } = listener.addr;
    const tracer = await Tracer.start(["--json", "--port", String(port), "--max-events", "2"]);
    await exchange(listener, 4, 1, 1, 0);
    const status = await tracer.exited(10_000);
    assert.equal(status.code, 0);
    assert.equal(tracer.events().length, 2);
  });
  await t.step("--duration 1 exits 0 after about a second", async () => {
    const started = Date.now();
    const tracer = await Tracer.start(["--json", "--port", "1", "--duration", "1"]);
    const status = await tracer.exited(15_000);
    assert.equal(status.code, 0);
    assert.ok(Date.now() - started >= 1000);
  });
  await t.step("SIGTERM exits 0 and leaves nothing behind", async () => {
    const before = await tcptraceObjects();
    const tracer = await Tracer.start(["--summary"]);
    assert.equal((await tracer.stop("SIGTERM")).code, 0);
    assert.match(tracer.stderr, /trace: \d+ events/);
    assert.match(tracer.stdout, /^TIME +PID +COMM/);
    assert.deepEqual(await tcptraceObjects(before), before);
  });
});

testWith(
  "deno task trace works with the DaemonSet's capabilities only (BPF, PERFMON, SYS_RESOURCE)",
  [...NEEDS, command("setpriv", "util-linux")],
  async () => {
    using listener = listen(6);
    const wrapper = [
      "setpriv",
      "--bounding-set=-all,+bpf,+perfmon,+sys_resource",
      "--inh-caps=-all",
    ];
    const paranoid = Number(Deno.readTextFileSync("/proc/sys/kernel/perf_event_paranoid").trim());
    if (paranoid > 2) {
      // Debian's and Ubuntu's kernels: tracepoints need CAP_SYS_ADMIN at these levels
      const { code, stderr } = await runTracer(wrapper, ["--port", "1"]);
      assert.equal(code, 1);
      assert.match(
        stderr,
        new RegExp(`^trace: kernel.perf_event_paranoid is ${paranoid}: .*perf_event_paranoid=2`),
      );
      return;
    }
    const tracer = await Tracer.start(["--json", "--port", String(listener.addr.port)], wrapper);
    try {
      const ex = await exchange(listener, 6, 123, 45, 0);
      await tracer.waitFor(() => ofPort(tracer.events(), ex.serverPort).length >= 4);
      checkExchange(tracer.events(), 6, ex, 123, 45, 0);
    } finally {
      assert.equal((await tracer.stop()).code, 0);
    }
  },
);

/** Runs the tracer in a private mount namespace after `setup` (shell) changed the mounts. */
/**
 * Runs the tracer to its end under `wrapper` (`setpriv` with fewer privileges) and returns its exit
 * code and what it wrote to stderr.
 */
async function runTracer(
  wrapper: string[],
  args: string[],
  env?: Record<string, string>,
): Promise<{ code: number; stderr: string }> {
  const { code, stderr } = await new Deno.Command(wrapper[0]!, {
    args: [...wrapper.slice(1), Deno.execPath(), "run", "-A", MAIN, ...args],
    ...(env === undefined ? {} : { env }),
    stdout: "null",
    stderr: "piped",
  }).output();
  return { code, stderr: new TextDecoder().decode(stderr) };
}

async function inMountNamespace(setup: string, wrapper: string): Promise<Deno.CommandOutput> {
  const script = `${setup} || exit 99; ${wrapper} "$0" run -A "$1" --port 1 --duration 1; ` +
    `rc=$?; test -d /sys/kernel/tracing/events && echo "after: tracefs mounted" >&2; exit $rc`;
  return await new Deno.Command("unshare", {
    args: ["--mount", "--propagation", "private", "sh", "-c", script, Deno.execPath(), MAIN],
    stdout: "piped",
    stderr: "piped",
  }).output();
}

testWith(
  "deno task trace mounts tracefs when it may, and names the fix when it may not",
  [...NEEDS, command("unshare", "util-linux"), command("setpriv", "util-linux")],
  async (t) => {
    const decoder = new TextDecoder();
    // debugfs' tracing automount would stand in for tracefs: it goes too
    const unmountTracefs =
      "umount /sys/kernel/tracing && (umount -l /sys/kernel/debug 2>/dev/null || true) " +
      "&& ! test -d /sys/kernel/tracing/events && ! test -d /sys/kernel/debug/tracing/events";
    await t.step("root: mounts tracefs and traces", async () => {
      const { code, stderr } = await inMountNamespace(unmountTracefs, "");
      assert.equal(code, 0, decoder.decode(stderr));
      assert.match(decoder.decode(stderr), /tracing TCP connections[\s\S]*after: tracefs mounted/);
    });
    await t.step("CAP_BPF + CAP_PERFMON only: says how to mount it", async () => {
      const { code, stderr } = await inMountNamespace(
        unmountTracefs,
        "setpriv --bounding-set=-all,+bpf,+perfmon --inh-caps=-all",
      );
      assert.equal(code, 1);
      assert.match(
        decoder.decode(stderr),
        /^trace: tracefs is not mounted at \/sys\/kernel\/tracing: mount it with mount -t tracefs/,
      );
    });
    await t.step("no kernel BTF: names CONFIG_DEBUG_INFO_BTF", async () => {
      const { code, stderr } = await inMountNamespace(
        "mount -t tmpfs none /sys/kernel/btf",
        "",
      );
      assert.equal(code, 1);
      assert.match(
        decoder.decode(stderr),
        /^trace: Kernel BTF is missing at \/sys\/kernel\/btf\/vmlinux: .*CONFIG_DEBUG_INFO_BTF=y/,
      );
    });
  },
);

testWith(
  "deno task trace without privileges says what to do",
  [root, command("setpriv", "util-linux")],
  async () => {
    const denoDir = await Deno.makeTempDir({ prefix: "trace-nobody-" });
    try {
      await Deno.chmod(denoDir, 0o777);
      const { code, stderr } = await runTracer(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all"],
        [],
        { DENO_DIR: denoDir, HOME: denoDir },
      );
      assert.equal(code, 1);
      assert.match(
        stderr,
        /^trace: The tracer needs root, or CAP_BPF and CAP_PERFMON.*sudo deno task trace\n$/,
      );
    } finally {
      await Deno.remove(denoDir, { recursive: true });
    }
  },
);
