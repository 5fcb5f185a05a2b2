import assert from "node:assert/strict";
import type { TraceEvent } from "./trace_event.ts";
import { CLOSE, CONNECT } from "./_test_events.ts";
import { ColumnFormatter } from "./column_formatter.ts";

const connect = CONNECT;
const close = CLOSE;
const v6: TraceEvent = {
  ...connect,
  family: 6,
  saddr: "2001:db8:1234:5678:9abc:def0:1234:5678",
  daddr: "::1",
};

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
