import assert from "node:assert/strict";
import type { TraceEvent } from "./trace_event.ts";
import { CLOSE, CONNECT } from "./_test_events.ts";
import { ConnectionTop } from "./connection_top.ts";

const connect = CONNECT;
const close = CLOSE;

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
