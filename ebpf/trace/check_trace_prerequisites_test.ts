import assert from "node:assert/strict";
import { checkTracePrerequisites, TracePrerequisiteError } from "./check_trace_prerequisites.ts";

async function withFiles(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "trace-preflight-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function rejectsWith(promise: Promise<void>, code: string, message: RegExp) {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof TracePrerequisiteError);
    assert.equal(error.code, code);
    assert.match(error.message, message);
    return true;
  });
}

Deno.test("checkTracePrerequisites() names the fix for what is missing", async (t) => {
  await withFiles(async (dir) => {
    const status = (capEff: string) => {
      Deno.writeTextFileSync(`${dir}/status`, `Name:\tdeno\nCapEff:\t${capEff}\n`);
      return `${dir}/status`;
    };
    Deno.mkdirSync(`${dir}/btf`);
    Deno.writeTextFileSync(`${dir}/btf/vmlinux`, "");
    Deno.mkdirSync(`${dir}/tracing/events`, { recursive: true });
    const paranoid = (level: number) => {
      Deno.writeTextFileSync(`${dir}/paranoid-${level}`, `${level}\n`);
      return `${dir}/paranoid-${level}`;
    };
    const present = {
      btf: `${dir}/btf/vmlinux`,
      tracefs: `${dir}/tracing`,
      perfEventParanoid: paranoid(2),
    };

    await t.step("no capabilities: privileges", async () => {
      await rejectsWith(
        checkTracePrerequisites({ ...present, status: status("0000000000000000") }),
        "privileges",
        /needs root, or CAP_BPF and CAP_PERFMON.*sudo/,
      );
    });
    await t.step("CAP_BPF without CAP_PERFMON: privileges", async () => {
      await rejectsWith(
        checkTracePrerequisites({ ...present, status: status((1n << 39n).toString(16)) }),
        "privileges",
        /CAP_PERFMON/,
      );
    });
    const bpfPerfmon = ((1n << 39n) | (1n << 38n)).toString(16);
    await t.step("no BTF", async () => {
      await rejectsWith(
        checkTracePrerequisites({ ...present, btf: `${dir}/none`, status: status(bpfPerfmon) }),
        "btf",
        /Kernel BTF is missing at .*none: .*CONFIG_DEBUG_INFO_BTF/,
      );
    });
    await t.step("tracefs missing and not allowed to mount it", async () => {
      await rejectsWith(
        checkTracePrerequisites({
          ...present,
          tracefs: `${dir}/nothing`,
          debugfsTracing: `${dir}/nothing`,
          status: status(bpfPerfmon),
        }),
        "tracefs",
        /tracefs is not mounted at .*nothing: mount it with mount -t tracefs/,
      );
    });
    await t.step("CAP_BPF + CAP_PERFMON with BTF and tracefs: passes", async () => {
      await checkTracePrerequisites({ ...present, status: status(bpfPerfmon) });
    });
    await t.step("perf_event_paranoid 3 without CAP_SYS_ADMIN: names the sysctl", async () => {
      await rejectsWith(
        checkTracePrerequisites({
          ...present,
          perfEventParanoid: paranoid(3),
          status: status(bpfPerfmon),
        }),
        "perf_event_paranoid",
        /kernel.perf_event_paranoid is 3: .*set sysctl kernel.perf_event_paranoid=2/,
      );
    });
    await t.step("perf_event_paranoid 3 with CAP_SYS_ADMIN: passes", async () => {
      await checkTracePrerequisites({
        ...present,
        perfEventParanoid: paranoid(3),
        status: status((1n << 21n).toString(16)),
      });
    });
    await t.step("tracefs under debugfs is accepted", async () => {
      await checkTracePrerequisites({
        ...present,
        tracefs: `${dir}/nothing`,
        debugfsTracing: `${dir}/tracing`,
        status: status(bpfPerfmon),
      });
    });
  });
});
