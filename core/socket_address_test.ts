import assert from "node:assert/strict";
import {
  formatSocketAddress,
  ipFamily,
  ipFromBytes,
  ipToBytes,
  parseSocketAddress,
} from "./socket_address.ts";
import { TriadError } from "./error.ts";

Deno.test("parseSocketAddress() parses IPv4 and IPv6 with ports", () => {
  assert.deepEqual(parseSocketAddress("1.2.3.4:53"), { family: 4, address: "1.2.3.4", port: 53 });
  assert.deepEqual(parseSocketAddress("[::1]:53"), { family: 6, address: "::1", port: 53 });
  assert.deepEqual(parseSocketAddress("[2001:DB8:0:0:0:0:0:1]:0"), {
    family: 6,
    address: "2001:db8::1",
    port: 0,
  });
  assert.deepEqual(parseSocketAddress("[::ffff:10.0.0.1]:65535"), {
    family: 6,
    address: "::ffff:10.0.0.1",
    port: 65535,
  });
  assert.equal(parseSocketAddress("[fe80::1%eth0]:53").address, "fe80::1%eth0");
});

Deno.test("parseSocketAddress() uses defaultPort only when the port is missing", () => {
  assert.equal(parseSocketAddress("10.0.0.1", { defaultPort: 53 }).port, 53);
  assert.equal(parseSocketAddress("::1", { defaultPort: 53 }).address, "::1");
  assert.equal(parseSocketAddress("10.0.0.1:99", { defaultPort: 53 }).port, 99);
});

Deno.test("parseSocketAddress() rejects bad input naming what is wrong", async (t) => {
  const cases: [string, RegExp][] = [
    ["1.2.3.4", /the port is missing/],
    ["1.2.3.4:99999", /port 99999 is out of range/],
    ["1.2.3.4:http", /port "http" is not a number/],
    ["256.0.0.1:53", /"256.0.0.1" is not an IPv4 address/],
    ["01.2.3.4:53", /not an IPv4 address/],
    ["[::1:53", /missing "\]"/],
    ["[::1]53", /unexpected "53" after "\]"/],
    ["::1:53:", /not an IPv6 address/],
    ["[1.2.3.4]:53", /is not an IPv6 address/],
    ["[1::2::3]:53", /is not an IPv6 address/],
    [":53", /the address is missing/],
    ["example.org:53", /"example.org" is not an IPv4 address/],
  ];
  for (const [input, pattern] of cases) {
    await t.step(input, () => {
      assert.throws(() => parseSocketAddress(input), (error: unknown) => {
        assert.ok(error instanceof TriadError);
        assert.equal(error.code, "bad_address");
        assert.ok(error.message.includes(`"${input}"`), error.message);
        assert.match(error.message, pattern);
        return true;
      });
    });
  }
});

Deno.test("formatSocketAddress() brackets IPv6 and round-trips", () => {
  for (const text of ["127.0.0.1:5353", "[::1]:53", "[2001:db8::8:800:200c:417a]:853"]) {
    assert.equal(formatSocketAddress(parseSocketAddress(text)), text);
  }
});

Deno.test("ipFromBytes() follows RFC 5952", () => {
  const cases: [string, string][] = [
    ["2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"],
    ["2001:0db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"],
    ["0:0:0:0:0:0:0:0", "::"],
    ["1:0:0:0:0:0:0:0", "1::"],
    ["fe80:0:0:0:0:0:0:1", "fe80::1"],
  ];
  for (const [input, expected] of cases) assert.equal(ipFromBytes(ipToBytes(input)), expected);
  assert.throws(() => ipFromBytes(new Uint8Array(5)), /5 bytes/);
});

Deno.test("ipFamily() tells addresses from names", () => {
  assert.equal(ipFamily("10.1.2.3"), 4);
  assert.equal(ipFamily("::"), 6);
  assert.equal(ipFamily("1.2.3"), undefined);
  assert.equal(ipFamily("gggg::1"), undefined);
});
