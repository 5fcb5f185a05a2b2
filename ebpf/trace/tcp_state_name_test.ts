import assert from "node:assert/strict";
import { tcpStateName } from "./tcp_state_name.ts";

Deno.test("tcpStateName() names kernel states", () => {
  assert.equal(tcpStateName(1), "ESTABLISHED");
  assert.equal(tcpStateName(7), "CLOSE");
  assert.equal(tcpStateName(12), "NEW_SYN_RECV");
  assert.equal(tcpStateName(0), "STATE_0");
});
