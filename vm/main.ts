/**
 * `deno task test:vm [--provider P] [--box NAME] [--keep] [-- deno test args]`: runs the
 * privileged suite in a VM and exits with the suite's exit code (2 when the VM itself failed,
 * 130 on SIGINT).
 *
 * @module
 */
import { HARNESS_USAGE, parseHarnessArgs } from "./options.ts";
import { runSuite } from "./run_suite.ts";
import { VmError } from "./errors.ts";

let options;
try {
  options = parseHarnessArgs(Deno.args);
} catch (error) {
  console.error(`test:vm: ${(error as Error).message}`);
  Deno.exit(2);
}
if (options.help) {
  console.log(HARNESS_USAGE);
  Deno.exit(0);
}

const controller = new AbortController();
let interrupted = false;
const onSignal = () => {
  if (interrupted) return;
  interrupted = true;
  console.error("test:vm: interrupted, removing the VM and everything made for it");
  controller.abort();
};
Deno.addSignalListener("SIGINT", onSignal);
Deno.addSignalListener("SIGTERM", onSignal);

const started = Date.now();
const log = (line: string) =>
  console.error(`test:vm: [${Math.round((Date.now() - started) / 1000)} s] ${line}`);
try {
  const result = await runSuite({ ...options, log, signal: controller.signal });
  const { passed, failed, skipped, failures } = result.summary;
  if (result.skips.length > 0) {
    console.error(`test:vm: skipped on kernel ${result.kernel}:`);
    for (const line of result.skips) console.error(`test:vm:   ${line}`);
  }
  for (const name of failures) console.error(`test:vm: FAILED ${name}`);
  console.error(
    `test:vm: ${result.provider} (${result.accel}), kernel ${result.kernel}: boot ${result.seconds.boot} s, ` +
      `suite ${result.seconds.suite} s, total ${result.seconds.total} s; results in ${result.outDir}`,
  );
  console.log(
    `vm tests (kernel ${result.kernel}): ${passed} passed, ${failed} failed, ${skipped} skipped; exit ${result.exitCode}`,
  );
  Deno.exit(interrupted ? 130 : result.exitCode);
} catch (error) {
  if (interrupted) {
    console.error(`test:vm: interrupted${error instanceof Error ? `: ${error.message}` : ""}`);
    Deno.exit(130);
  }
  if (error instanceof VmError) {
    console.error(`test:vm: ${error.message}`);
    if (error.serialLog) {
      console.error("test:vm: ---- guest serial console (last lines) ----");
      console.error(error.serialLog);
      console.error("test:vm: ---- end of serial console ----");
    }
    Deno.exit(2);
  }
  throw error;
}
