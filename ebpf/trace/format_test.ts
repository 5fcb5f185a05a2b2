import assert from "node:assert/strict";
import type { TraceEvent } from "./event.ts";
import { ColumnFormatter, ConnectionTop, JsonFormatter } from "./format.ts";

const connect: TraceEvent = {
  type: "connect",
  time: "2026-01-01T10:00:00.123Z",
  pid: 7,
  comm: "curl",
  family: 4,
  saddr: "127.0.0.1",
  sport: 40000,
  daddr: "127.0.0.1",
  dport: 80,
};
const close: TraceEvent = {
  ...connect,
  type: "close",
  durationMs: 12.5,
  txBytes: 100,
  rxBytes: 2000,
};
const v6: TraceEvent = {
  ...connect,
  family: 6,
  saddr: "2001:db8:1234:5678:9abc:def0:1234:5678",
  daddr: "::1",
};

Deno.test("JsonFormatter.format() prints one JSON line per event", async (t) => {
  await t.step("every event", () => {
    const json = new JsonFormatter();
    assert.deepEqual(json.header(), []);
    assert.deepEqual(json.format(close).map((l) => JSON.parse(l)), [close]);
  });
  await t.step("only closes (and lost) with a type list", () => {
    const json = new JsonFormatter(["close"]);
    assert.deepEqual(json.format(connect), []);
    assert.equal(json.format(close).length, 1);
    assert.equal(json.format({ type: "lost", time: connect.time, count: 2 }).length, 1);
  });
});

Deno.test("ColumnFormatter.format() prints columns", async (t) => {
  await t.step("plain columns: one space, - for empty, spaces in comm replaced", () => {
    const plain = new ColumnFormatter({ aligned: false });
    assert.equal(
      plain.header()[0],
      "TIME TYPE PID COMM IP LADDR LPORT RADDR RPORT DETAIL",
    );
    assert.deepEqual(plain.format({ ...close, comm: "my app" }), [
      "10:00:00.123 close 7 my_app 4 127.0.0.1 40000 127.0.0.1 80 12.500ms tx=100 rx=2000",
    ]);
    assert.deepEqual(plain.format({ type: "lost", time: connect.time, count: 5 }), [
      "10:00:00.123 lost - - - - - - - 5 events lost",
    ]);
  });
  await t.step("aligned table: columns line up and widen for long addresses", () => {
    const table = new ColumnFormatter({ aligned: true });
    const header = table.header()[0]!;
    const [line] = table.format(connect);
    assert.equal(line!.indexOf("127.0.0.1"), header.indexOf("LADDR"));
    assert.equal(line!.indexOf("40000") + 5, header.indexOf("LPORT") + 5);
    const [wide] = table.format(v6);
    const [after] = table.format(connect);
    assert.ok(wide!.includes("2001:db8:1234:5678:9abc:def0:1234:5678  40000"));
    // the widened column stays wide, so later rows line up with the wide one
    assert.equal(after!.indexOf("40000"), wide!.indexOf("40000"));
  });
  await t.step("summary: closes only, tcplife columns", () => {
    const summary = new ColumnFormatter({ aligned: false, summary: true });
    assert.equal(
      summary.header()[0],
      "TIME PID COMM IP LADDR LPORT RADDR RPORT TX_BYTES RX_BYTES MS",
    );
    assert.deepEqual(summary.format(connect), []);
    assert.deepEqual(summary.format(close), [
      "10:00:00.123 7 curl 4 127.0.0.1 40000 127.0.0.1 80 100 2000 12.500",
    ]);
    assert.deepEqual(summary.format({ type: "lost", time: connect.time, count: 5 }), [
      "# 10:00:00.123 5 events lost",
    ]);
  });
});

Deno.test("ConnectionTop.render() counts per process and peer, busiest first", () => {
  const top = new ConnectionTop();
  const accept: TraceEvent = {
    ...connect,
    type: "accept",
    pid: 9,
    comm: "server",
    sport: 80,
    dport: 40001,
  };
  top.add(connect);
  top.add(close);
  for (let i = 0; i < 3; i++) top.add({ ...accept, dport: 40001 + i });
  for (let i = 0; i < 3; i++) {
    top.add({ ...accept, type: "close", dport: 40001 + i, txBytes: 10, rxBytes: 1 });
  }
  top.add({ ...connect, type: "state", oldstate: "CLOSE", newstate: "SYN_SENT" });
  const screen = top.render(new Date("2026-01-01T10:00:01Z"), 4);
  assert.equal(screen[0], "10:00:01  2 active peers, 4 events lost");
  assert.match(screen[1]!, /^PID\s+COMM\s+LADDR\s+RADDR\s+PORT\s+CONN\s+ACC\s+CLOSE/);
  assert.match(
    screen[2]!,
    /^\s*9\s+server\s+127\.0\.0\.1\s+127\.0\.0\.1\s+80\s+0\s+3\s+3\s+30\s+3$/,
  );
  assert.match(
    screen[3]!,
    /^\s*7\s+curl\s+127\.0\.0\.1\s+127\.0\.0\.1\s+80\s+1\s+0\s+1\s+100\s+2000$/,
  );
  // a new interval starts empty
  assert.equal(top.render(new Date(), 0).length, 2);
});
