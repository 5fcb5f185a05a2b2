/**
 * The limits check: `deno task echo --check-limits N` in a child whose `ulimit -n` is too low
 * names the descriptor limits and the settings that lift them; `checkLimits` over files with
 * known values flags exactly the low ones.
 */
import assert from "node:assert/strict";
import { checkLimits } from "@triad/netloop";
import { linux, testWith } from "./requirements.ts";

const ECHO = new URL("../netloop/examples/echo.ts", import.meta.url).pathname;

async function checkUnder(limit: number, connections: number) {
  const output = await new Deno.Command("sh", {
    args: [
      "-c",
      `ulimit -n ${limit} && exec "$0" run --allow-read --allow-ffi --allow-env "$@"`,
      Deno.execPath(),
      ECHO,
      "--check-limits",
      String(connections),
      "--loops",
      "1",
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { code: output.code, text: new TextDecoder().decode(output.stdout) };
}

testWith("echo --check-limits names a low ulimit -n and how to lift it", [linux], async () => {
  const low = await checkUnder(200, 1000);
  assert.equal(low.code, 1, low.text);
  assert.match(low.text, /^LOW nofile \(soft\): 200; needed 1,104$/m);
  assert.match(low.text, /^LOW nofile \(hard\): 200; needed 1,104$/m);
  assert.match(low.text, /lift it: ulimit -n 1104/);
  assert.match(low.text, /LimitNOFILE=1104/);
  // Read, not unknown: /proc is read through FFI when Deno's permissions do not reach it.
  assert.match(low.text, /^(ok |LOW) fs\.nr_open: [\d,]+;/m);
  const enough = await checkUnder(2000, 1000);
  assert.match(enough.text, /^ok {2}nofile \(soft\): 2,000; needed 1,104$/m);
  assert.doesNotMatch(enough.text, /LOW nofile/);
});

Deno.test("checkLimits flags exactly the limits below what N connections need", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const write = async (path: string, text: string) => {
      await Deno.mkdir(`${dir}/${path.slice(0, path.lastIndexOf("/"))}`, { recursive: true });
      await Deno.writeTextFile(`${dir}/${path}`, text);
    };
    await write(
      "limits",
      "Max open files            50000                100000               files\n",
    );
    await write("status", "CapEff:\t0000000001000000\n"); // CAP_SYS_RESOURCE only
    await write("sys/fs/nr_open", "1048576\n");
    await write("sys/fs/file-max", "60000\n");
    await write("sys/fs/file-nr", "5000\t0\t60000\n");
    await write("sys/net/core/somaxconn", "128\n");
    await write("sys/net/ipv4/tcp_max_syn_backlog", "8192\n");
    await write("sys/net/ipv4/ip_local_port_range", "40000\t40999\n");
    await write("sys/net/ipv4/tcp_mem", "10000 20000 30000\n");
    const checks = checkLimits({ connections: 60000, dials: 5000 }, {
      limits: `${dir}/limits`,
      status: `${dir}/status`,
      sys: `${dir}/sys`,
    });
    const low = checks.filter((c) => !c.ok).map((c) => c.name);
    assert.deepEqual(low, [
      "nofile (soft)",
      "fs.file-max",
      "net.core.somaxconn",
      "net.ipv4.ip_local_port_range",
      "net.ipv4.tcp_mem",
    ]);
    const soft = checks.find((c) => c.name === "nofile (soft)")!;
    assert.match(soft.fix, /ulimit -n 60104 \(up to the hard limit 100,000/);
    const hard = checks.find((c) => c.name === "nofile (hard)")!;
    assert.match(hard.fix, /this process may raise it \(CAP_SYS_RESOURCE\)/);
    assert.equal(checks.find((c) => c.name === "fs.file-max")!.value, "60,000 (5,000 in use)");
    assert.match(checks.find((c) => c.name === "net.ipv4.ip_local_port_range")!.value, /1,000/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
