/**
 * `deno task gen`: bpf2ts. For every `*.bpf.c` under `ebpf/bpf/`, `tests/ebpf_bpf/`,
 * `ebpf/bench/` and `dnsproxy/bpf/` (or the folders given), generate `vmlinux.h` from the running
 * kernel's BTF, compile with clang (CO-RE), strip DWARF, and write `<name>.gen.ts`.
 *
 * `--check` regenerates in memory and fails on any difference from the committed files (CI).
 * When the committed files were generated against another kernel's BTF or another clang, the
 * embedded bytes may differ legitimately: the check then compares everything else and says so.
 *
 * Usage: `deno task gen [--check] [--type NAME]... [DIR]...`
 *
 * @module
 */
import { parseArgs } from "node:util";
import { generateModule, KERNEL_BTF_LINE } from "./bpf2ts.ts";
import { compileBpf, GenError, prepareToolchain, sha256 } from "./compile.ts";
import { inspectObject } from "./inspect.ts";

const root = new URL("../../", import.meta.url).pathname;
const DEFAULT_DIRS = ["ebpf/bpf", "tests/ebpf_bpf", "ebpf/bench", "dnsproxy/bpf"];

const { values, positionals } = parseArgs({
  args: Deno.args,
  options: {
    check: { type: "boolean", default: false },
    type: { type: "string", multiple: true, default: [] },
    help: { type: "boolean", short: "h", default: false },
  },
  allowPositionals: true,
});

if (values.help) {
  console.log("Usage: deno task gen [--check] [--type NAME]... [DIR]...");
  Deno.exit(0);
}

const dirs = positionals.length > 0 ? positionals : DEFAULT_DIRS.map((dir) => `${root}${dir}`);
const sources: string[] = [];
for (const dir of dirs) {
  try {
    for (const entry of Deno.readDirSync(dir)) {
      if (entry.isFile && entry.name.endsWith(".bpf.c")) {
        sources.push(`${dir.replace(/\/$/, "")}/${entry.name}`);
      }
    }
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound) || positionals.length > 0) throw error;
  }
}
sources.sort();

async function format(text: string): Promise<string> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["fmt", "--ext", "ts", "-"],
    cwd: root,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(text));
  await writer.close();
  const output = await child.output();
  if (!output.success) {
    throw new Error(
      `deno fmt failed on generated code:\n${new TextDecoder().decode(output.stderr)}`,
    );
  }
  return new TextDecoder().decode(output.stdout);
}

/** `// bpf2ts: needs kernel MAJOR.MINOR` in a source. */
const NEEDS_KERNEL = /^\/\/ bpf2ts: needs kernel (\d+)\.(\d+)\s*$/m;

let toolchain;
try {
  toolchain = await prepareToolchain();
} catch (error) {
  console.error(`bpf2ts: ${(error as Error).message}`);
  Deno.exit(1);
}
let failures = 0;
try {
  for (const source of sources) {
    const file = source.slice(source.lastIndexOf("/") + 1);
    const name = file.replace(/\.bpf\.c$/, "");
    const target = source.replace(/\.bpf\.c$/, ".gen.ts");
    // A source may name the kernel whose types it needs (`// bpf2ts: needs kernel 6.4`): on an
    // older kernel its vmlinux.h lacks them, so --check leaves it out and says so; the committed
    // module stays as generated on a kernel that has them.
    const needs = NEEDS_KERNEL.exec(await Deno.readTextFile(source));
    if (values.check && needs !== null && olderKernel(Number(needs[1]), Number(needs[2]))) {
      console.error(
        `bpf2ts --check: ${file} skipped: it needs kernel ${needs[1]}.${needs[2]} types, this ` +
          `kernel is ${Deno.osRelease()}`,
      );
      continue;
    }
    let object: Uint8Array<ArrayBuffer>;
    try {
      object = await compileBpf(source, toolchain);
    } catch (error) {
      if (!(error instanceof GenError)) throw error;
      console.error(`bpf2ts: ${error.message}`);
      failures++;
      continue;
    }
    const spec = inspectObject(object, name);
    const text = await format(generateModule({
      name,
      object,
      spec,
      types: values.type,
      provenance: {
        source: file,
        sourceHash: await sha256(await Deno.readFile(source)),
        compiler: toolchain.compiler,
        kernelBtfHash: toolchain.kernelBtfHash,
      },
    }));
    const relative = target.startsWith(root) ? target.slice(root.length) : target;
    if (!values.check) {
      await Deno.writeTextFile(target, text);
      console.error(`bpf2ts: wrote ${relative} (${object.length} byte object)`);
      continue;
    }
    let committed: string;
    try {
      committed = await Deno.readTextFile(target);
    } catch {
      console.error(`bpf2ts --check: ${relative} is missing: run deno task gen`);
      failures++;
      continue;
    }
    if (committed === text) {
      console.error(`bpf2ts --check: ${relative} is up to date`);
      continue;
    }
    const committedKernel = KERNEL_BTF_LINE.exec(committed)?.[0];
    const currentKernel = KERNEL_BTF_LINE.exec(text)?.[0];
    const committedCompiler = /^\/\/ Compiler: .*$/m.exec(committed)?.[0];
    const currentCompiler = /^\/\/ Compiler: .*$/m.exec(text)?.[0];
    if (committedKernel !== currentKernel || committedCompiler !== currentCompiler) {
      // Another kernel's vmlinux.h (or clang) changes the object's bytes; everything else must match.
      if (stripObject(committed) === stripObject(text)) {
        console.error(
          `bpf2ts --check: ${relative}: types and skeleton are up to date; the embedded object ` +
            `was built against another kernel BTF or compiler, so its bytes were not compared`,
        );
        continue;
      }
    }
    failures++;
    const a = committed.split("\n");
    const b = text.split("\n");
    const line = a.findIndex((l, i) => l !== b[i]);
    console.error(
      `bpf2ts --check: ${relative} differs from what ${file} generates (first at line ${
        line + 1
      }:` +
        `\n  committed: ${a[line]?.slice(0, 120)}\n  generated: ${b[line]?.slice(0, 120)}):` +
        ` run deno task gen and commit the result`,
    );
  }
} finally {
  await Deno.remove(toolchain.includeDir, { recursive: true });
}
if (failures > 0) Deno.exit(1);

/** Whether the running kernel is older than `major.minor`. */
function olderKernel(major: number, minor: number): boolean {
  const [have, haveMinor] = Deno.osRelease().split(".").map(Number) as [number, number];
  return have < major || (have === major && haveMinor < minor);
}

function stripObject(text: string): string {
  return text.replace(/^\/\/ (Kernel BTF|Compiler).*$/gm, "")
    .replace(/ObjectBytes[^\n]*= decodeObjectBytes\(\[[\s\S]*?\]\.join\(""\)\);/, "")
    .replace(/\/\*\* The compiled object \(\d+ bytes\)\. \*\//, "");
}
