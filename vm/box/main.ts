/**
 * `deno task vm:box [--name NAME] [--force] [--no-add] [--cache DIR]`: builds the triad test box
 * offline from Debian packages and adds it to Vagrant; a second run with the same inputs is a no-op.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { buildBox } from "./build_box.ts";
import { VmError } from "../errors.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    name: { type: "string" },
    force: { type: "boolean", default: false },
    "no-add": { type: "boolean", default: false },
    cache: { type: "string" },
    help: { type: "boolean", short: "h", default: false },
  },
});
if (values.help) {
  console.log("usage: deno task vm:box [--name NAME] [--force] [--no-add] [--cache DIR]");
  Deno.exit(0);
}
const controller = new AbortController();
const onSignal = () => controller.abort();
Deno.addSignalListener("SIGINT", onSignal);
Deno.addSignalListener("SIGTERM", onSignal);
try {
  const box = await buildBox({
    ...(values.name ? { name: values.name } : {}),
    ...(values.cache ? { cacheDir: values.cache } : {}),
    force: values.force,
    add: !values["no-add"],
    log: (line) => console.error(`vm:box: ${line}`),
    signal: controller.signal,
  });
  console.log(`${box.name} ${box.cached ? "(cached)" : "(built)"} ${box.path}`);
} catch (error) {
  if (error instanceof VmError) {
    console.error(`vm:box: ${error.message}`);
    Deno.exit(1);
  }
  throw error;
}
