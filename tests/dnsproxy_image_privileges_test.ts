/**
 * The privilege model of dnsproxy/deploy on a real kernel, without a container runtime: the
 * image's `deno` carries `cap_net_bind_service=+ep` (Dockerfile), and the pod runs it as uid
 * 65532 with every capability dropped but NET_BIND_SERVICE and no privilege escalation
 * (deployment.yaml). `tests/fixtures/container_exec.c` starts a process the way runc does for such
 * a pod; each case runs in a new network namespace and binds port 53.
 *
 * @module
 */
import assert from "node:assert/strict";
import { cCompiler, command, root, testWith } from "./requirements.ts";
import { compileC } from "./servers/compile_c.ts";

const NET_BIND_SERVICE = 10;

const NEEDS = [root, command("setcap", "libcap2-bin"), command("unshare", "util-linux"), cCompiler];

/**
 * Lays out what the image has, in a new world-readable directory: the runc-like launcher and a
 * copy of `deno` with the Dockerfile's file capability.
 */
async function imageLayout(
  prefix: string,
): Promise<{ dir: string; launcher: string; deno: string }> {
  const dir = await Deno.makeTempDir({ prefix });
  await Deno.chmod(dir, 0o755);
  const launcher = `${dir}/container_exec`;
  await compileC(new URL("./fixtures/container_exec.c", import.meta.url).pathname, launcher);
  const deno = `${dir}/deno`;
  await Deno.copyFile(Deno.execPath(), deno);
  const setcap = await new Deno.Command("setcap", {
    args: ["cap_net_bind_service=+ep", deno],
    stderr: "piped",
  }).output();
  assert.equal(setcap.code, 0, new TextDecoder().decode(setcap.stderr));
  return { dir, launcher, deno };
}

testWith(
  "dnsproxy/deploy's image and pod bind port 53 as uid 65532 only with both grants",
  NEEDS,
  async (t) => {
    const { dir, launcher, deno: withFileCap } = await imageLayout("triad-privileges-");
    try {
      const script = `${dir}/bind.ts`;
      await Deno.writeTextFile(
        script,
        'using l = Deno.listen({ hostname: "0.0.0.0", port: 53 });\n' +
          'console.log("bound", (l.addr as Deno.NetAddr).port, Deno.uid());\n',
      );
      await Deno.mkdir(`${dir}/deno_dir`, { mode: 0o777 });
      await Deno.chmod(`${dir}/deno_dir`, 0o777);
      const run = async (capabilities: string, deno: string) => {
        const { code, stdout, stderr } = await new Deno.Command("unshare", {
          args: [
            "--net",
            "--",
            launcher,
            "65532",
            capabilities,
            deno,
            "run",
            "--allow-net",
            "--allow-sys=uid",
            script,
          ],
          env: { DENO_DIR: `${dir}/deno_dir`, HOME: dir, NO_COLOR: "1" },
          cwd: dir,
          stdout: "piped",
          stderr: "piped",
        }).output();
        const decoder = new TextDecoder();
        return { code, out: decoder.decode(stdout) + decoder.decode(stderr) };
      };
      await t.step("file capability + the pod's NET_BIND_SERVICE: bound, as 65532", async () => {
        const { code, out } = await run(String(NET_BIND_SERVICE), withFileCap);
        assert.equal(code, 0, out);
        assert.match(out, /^bound 53 65532$/m);
      });
      await t.step("file capability without the pod's grant: the exec itself fails", async () => {
        const { code, out } = await run("-", withFileCap);
        assert.notEqual(code, 0);
        assert.match(out, /execv: Operation not permitted/);
      });
      await t.step("the pod's grant without the file capability: EACCES on bind", async () => {
        const { code, out } = await run(String(NET_BIND_SERVICE), Deno.execPath());
        assert.notEqual(code, 0);
        assert.match(out, /PermissionDenied: Permission denied/);
      });
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

/** What the pod's container runs (the Dockerfile's ENTRYPOINT after `deno`). */
async function entrypoint(): Promise<string[]> {
  const dockerfile = await Deno.readTextFile(
    new URL("../dnsproxy/deploy/Dockerfile", import.meta.url),
  );
  const line = /^ENTRYPOINT (\[[^\]]*\])/m.exec(dockerfile.replaceAll("\\\n", ""))?.[1];
  assert.ok(line, "an exec-form ENTRYPOINT in dnsproxy/deploy/Dockerfile");
  const words = JSON.parse(line) as string[];
  assert.equal(words[0], "deno");
  return words.slice(1);
}

testWith(
  "dnsproxy/deploy's entrypoint serves port 53 as uid 65532 with a read-only code and cache",
  [...NEEDS, command("ip", "iproute2")],
  async () => {
    const { dir, launcher, deno } = await imageLayout("triad-pod-");
    try {
      const repository = new URL("../", import.meta.url).pathname;
      // the image's `RUN deno cache dnsproxy/main.ts`, into a cache of its own
      const cache = await new Deno.Command(Deno.execPath(), {
        args: ["cache", "dnsproxy/main.ts"],
        cwd: repository,
        env: { DENO_DIR: `${dir}/deno_dir`, NO_COLOR: "1" },
        stdout: "null",
        stderr: "piped",
      }).output();
      assert.equal(cache.code, 0, new TextDecoder().decode(cache.stderr));
      const probe = `${dir}/probe.ts`;
      await Deno.writeTextFile(
        probe,
        `import dgram from "node:dgram";
const deadline = Date.now() + 20000;
for (;;) {
  const status = await fetch("http://127.0.0.1:9153/health/live").then((r) => r.status, () => 0);
  if (status === 200) break;
  if (Date.now() > deadline) { console.log("not live"); Deno.exit(1); }
  await new Promise((r) => setTimeout(r, 100));
}
const socket = dgram.createSocket("udp4");
const query = new Uint8Array([0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 97, 4, 116, 101, 115, 116, 0, 0, 1, 0, 1]);
const reply = await new Promise((resolve) => {
  socket.on("message", (m) => resolve(m));
  setTimeout(() => resolve(null), 5000);
  socket.send(query, 53, "127.0.0.1");
});
socket.close();
console.log(reply === null ? "no answer" : \`answered id \${reply[0] * 256 + reply[1]}\`);
console.log(Deno.readTextFileSync("/proc/net/udp").includes(":0035 ") ? "udp 53 bound" : "not bound");
`,
      );
      const args = await entrypoint();
      const script = [
        "set -e",
        "ip link set lo up",
        `mount --bind ${dir}/deno_dir ${dir}/deno_dir`,
        `mount -o remount,ro,bind ${dir}/deno_dir`,
        `mount --bind ${repository} ${repository}`,
        `mount -o remount,ro,bind ${repository}`,
        `cd ${repository}`,
        `DENO_DIR=${dir}/deno_dir NO_COLOR=1 ${launcher} 65532 ${NET_BIND_SERVICE} ${deno} ${
          args.join(" ")
        } --listen 0.0.0.0:53 --metrics 127.0.0.1:9153 --upstream 127.0.0.1:9 2>${dir}/proxy.log &`,
        "pid=$!",
        `${Deno.execPath()} run -A ${probe} || true`,
        "kill $pid; wait $pid || true",
        `cat ${dir}/proxy.log >&2`,
      ].join("\n");
      const { code, stdout, stderr } = await new Deno.Command("unshare", {
        args: ["--mount", "--net", "--", "sh", "-c", script],
        stdout: "piped",
        stderr: "piped",
      }).output();
      const out = new TextDecoder().decode(stdout);
      const log = new TextDecoder().decode(stderr);
      assert.equal(code, 0, log);
      assert.match(out, /^answered id 4660$/m, log);
      assert.match(out, /^udp 53 bound$/m, log);
      assert.match(log, /"msg":"listening","app":"dnsproxy","address":"0\.0\.0\.0:53"/);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);
