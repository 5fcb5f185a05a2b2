import assert from "node:assert/strict";
import { orderUpstreams } from "./policy.ts";
import { Upstream } from "./upstream.ts";

function upstreams(n: number): Upstream[] {
  return Array.from({ length: n }, (_, i) => new Upstream({ address: `127.0.0.1:${5301 + i}` }));
}

Deno.test("orderUpstreams() follows each policy", async (t) => {
  const list = upstreams(3);
  const [a, b, c] = list as [Upstream, Upstream, Upstream];
  await t.step("sequential keeps configuration order", () => {
    assert.deepEqual(orderUpstreams(list, "sequential", 5), [a, b, c]);
  });
  await t.step("round_robin rotates", () => {
    assert.deepEqual(orderUpstreams(list, "round_robin", 0), [a, b, c]);
    assert.deepEqual(orderUpstreams(list, "round_robin", 2), [c, a, b]);
  });
  await t.step("random is a permutation", () => {
    const seen = new Set<string>();
    for (let i = 0; i < 200; i++) seen.add(orderUpstreams(list, "random", i)[0]!.name);
    assert.equal(seen.size, 3);
  });
  await t.step("fastest prefers low RTT", () => {
    a.rtt = 100;
    b.rtt = 1;
    c.rtt = 100;
    let firstB = 0;
    for (let i = 0; i < 1000; i++) if (orderUpstreams(list, "fastest", i)[0] === b) firstB++;
    assert.ok(firstB > 900, `b first ${firstB} times of 1000`);
  });
  await t.step("down upstreams go last", () => {
    b.fails = 10;
    assert.equal(orderUpstreams(list, "sequential", 0).at(-1), b);
    assert.equal(orderUpstreams(list, "fastest", 0).at(-1), b);
  });
  await t.step("slow upstreams go after healthy ones, before down ones", () => {
    a.slowStreak = 3;
    assert.deepEqual(orderUpstreams(list, "sequential", 0), [c, a, b]);
    assert.deepEqual(orderUpstreams(list, "round_robin", 0), [c, a, b]);
    a.slowStreak = 0;
    assert.deepEqual(orderUpstreams(list, "sequential", 0), [a, c, b]);
  });
  for (const upstream of list) upstream.close();
});
