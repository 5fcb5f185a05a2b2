/**
 * `deno task verify`: loads every program of every BPF object the project ships (the generated
 * `*.gen.ts` under `ebpf/bpf/`, `ebpf/bench/` and `dnsproxy/bpf/`) on the running kernel, one
 * program at a time, with the verifier's statistics on (`BPF_LOG_STATS`), and prints
 * instructions processed, peak states and verification time beside the committed budget
 * (`ebpf/verify/budget.json`, keyed by kernel `major.minor`), cross-checked against
 * `bpftool prog show` (`verified_insns`) for the same program.
 *
 * It fails when a program's instructions or peak states grow past its budget by more than the
 * margin, when the verifier rejects a program, or when the two counts disagree. A program the
 * kernel refuses for another reason than the verifier (fentry where tracing is not allowed) is
 * shown as skipped, with the reason. A kernel without its own budget is checked against the
 * highest budget recorded for any kernel; a program with no budget at all is shown as new.
 *
 * Usage: `deno task verify [--budget FILE] [--update]` (`--update` writes this kernel's figures).
 *
 * @module
 */
import { parseArgs } from "node:util";
import { BpfObject, VerifierError } from "@triad/ebpf";
import { libbpf } from "../_ffi.ts";
import { inspectObject } from "../gen/inspect.ts";

const root = new URL("../../", import.meta.url).pathname;
const DIRS = ["ebpf/bpf", "ebpf/bench", "dnsproxy/bpf"];
const BPF_LOG_STATS = 4;

/** One program's verifier figures. */
interface Figures {
  insns: number;
  peakStates: number;
}

/** The budget file. */
interface Budget {
  /** Allowed growth over the budget, as a fraction (0.25: 25 %). */
  margin: number;
  /** `object/program` → kernel `major.minor` → figures. */
  programs: Record<string, Record<string, Figures>>;
}

const { values } = parseArgs({
  args: Deno.args,
  options: {
    budget: { type: "string", default: `${root}ebpf/verify/budget.json` },
    update: { type: "boolean", default: false },
    help: { type: "boolean", short: "h", default: false },
  },
});
if (values.help) {
  console.log("Usage: deno task verify [--budget FILE] [--update]");
  Deno.exit(0);
}

const kernel = /^(\d+\.\d+)/.exec(Deno.osRelease())?.[1] ?? Deno.osRelease();
let budget: Budget = { margin: 0.25, programs: {} };
try {
  budget = JSON.parse(await Deno.readTextFile(values.budget)) as Budget;
} catch (error) {
  if (!(error instanceof Deno.errors.NotFound) || !values.update) {
    console.error(`verify: cannot read the budget ${values.budget}: ${(error as Error).message}`);
    Deno.exit(2);
  }
}

/** The shipped objects: every `*ObjectBytes` export of the generated modules. */
async function shippedObjects(): Promise<{ name: string; bytes: Uint8Array }[]> {
  const objects: { name: string; bytes: Uint8Array }[] = [];
  for (const dir of DIRS) {
    const files = [...Deno.readDirSync(`${root}${dir}`)]
      .filter((entry) => entry.isFile && entry.name.endsWith(".gen.ts"))
      .map((entry) => entry.name)
      .sort();
    for (const file of files) {
      const module = await import(`${root}${dir}/${file}`) as Record<string, unknown>;
      for (const [key, value] of Object.entries(module)) {
        if (key.endsWith("ObjectBytes") && value instanceof Uint8Array) {
          objects.push({ name: file.replace(/\.gen\.ts$/, ""), bytes: value });
        }
      }
    }
  }
  return objects;
}

function programNames(name: string, bytes: Uint8Array): string[] {
  return inspectObject(bytes, name).programs.map((program) => program.name);
}

/**
 * The kernel's count of verified instructions for a program: from `bpftool prog show` where its
 * version prints `verified_insns` (7.2+), else from the same `bpf_prog_info` field bpftool reads
 * (Linux 5.16+), marked `*`.
 */
function kernelVerifiedInsns(program: { id: number; fd: number }): string {
  const output = new Deno.Command("bpftool", {
    args: ["prog", "show", "id", String(program.id), "-j"],
    stdout: "piped",
    stderr: "piped",
  }).outputSync();
  if (output.success) {
    const info = JSON.parse(new TextDecoder().decode(output.stdout)) as {
      verified_insns?: number;
    };
    if (info.verified_insns !== undefined) return String(info.verified_insns);
  }
  const info = new Uint8Array(256);
  const length = new Uint32Array([info.length]);
  const rc = libbpf().bpf_obj_get_info_by_fd(program.fd, info, new Uint8Array(length.buffer));
  if (rc < 0 || length[0]! < 220) return "?";
  return `${new DataView(info.buffer).getUint32(216, true)}*`; // struct bpf_prog_info.verified_insns
}

const rows: string[][] = [[
  "program",
  "insns",
  "budget",
  "peak states",
  "budget",
  "time (µs)",
  "bpftool",
  "result",
]];
let failures = 0;
const measured: Record<string, Figures> = {};
for (const object of await shippedObjects()) {
  const names = programNames(object.name, object.bytes);
  for (const name of names) {
    const key = `${object.name}/${name}`;
    const autoload = Object.fromEntries(names.map((other) => [other, other === name]));
    let loaded: BpfObject | undefined;
    try {
      loaded = BpfObject.open(object.bytes, {
        name: object.name,
        autoload,
        logLevel: BPF_LOG_STATS,
      });
      await loaded.load();
    } catch (error) {
      loaded?.close();
      const rejected = error instanceof VerifierError;
      if (rejected) failures++;
      const why = (error as Error).message.split("\n")[0];
      rows.push([
        key,
        "-",
        "-",
        "-",
        "-",
        "-",
        "-",
        `${rejected ? "FAIL: rejected" : "skipped"}: ${why}`,
      ]);
      continue;
    }
    try {
      const program = loaded.program(name);
      const log = program.verifierLog;
      const insns = Number(/processed (\d+) insns/.exec(log)?.[1] ?? NaN);
      const peakStates = Number(/peak_states (\d+)/.exec(log)?.[1] ?? NaN);
      const time = /verification time (\d+) usec/.exec(log)?.[1] ?? "?";
      const verified = kernelVerifiedInsns(program);
      measured[key] = { insns, peakStates };
      const perKernel = budget.programs[key] ?? {};
      const limit: Figures | undefined = perKernel[kernel] ?? Object.values(perKernel).reduce<
        Figures | undefined
      >(
        (max, f) => ({
          insns: Math.max(max?.insns ?? 0, f.insns),
          peakStates: Math.max(max?.peakStates ?? 0, f.peakStates),
        }),
        undefined,
      );
      const problems: string[] = [];
      if (!Number.isFinite(insns) || !Number.isFinite(peakStates)) {
        problems.push(`no statistics in the verifier log: ${JSON.stringify(log.slice(0, 200))}`);
      }
      if (verified !== "?" && Number(verified.replace("*", "")) !== insns) {
        problems.push(`the kernel says ${verified} verified insns, the log ${insns}`);
      }
      let note = "";
      if (limit === undefined) {
        note = " (new: no budget on any kernel yet; deno task verify --update records one)";
      } else {
        const margin = 1 + budget.margin;
        if (insns > limit.insns * margin) {
          problems.push(`insns ${insns} > ${limit.insns} + ${budget.margin * 100}%`);
        }
        if (peakStates > limit.peakStates * margin) {
          problems.push(
            `peak states ${peakStates} > ${limit.peakStates} + ${budget.margin * 100}%`,
          );
        }
      }
      if (problems.length > 0 && !values.update) failures++;
      rows.push([
        key,
        String(insns),
        limit === undefined ? "-" : String(limit.insns),
        String(peakStates),
        limit === undefined ? "-" : String(limit.peakStates),
        time,
        verified,
        problems.length === 0 || values.update ? `ok${note}` : `FAIL: ${problems.join("; ")}`,
      ]);
    } finally {
      loaded.close();
    }
  }
}

const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)));
console.log(`kernel ${Deno.osRelease()} (budget key ${kernel}, margin ${budget.margin * 100}%)`);
for (const row of rows) {
  console.log(
    row.map((cell, i) => i === row.length - 1 ? cell : cell.padEnd(widths[i]!)).join("  "),
  );
}
console.log(
  "bpftool: verified_insns from bpftool prog show (* where this bpftool does not print it: the same bpf_prog_info field)",
);
if (values.update) {
  for (const [key, figures] of Object.entries(measured)) {
    budget.programs[key] = { ...budget.programs[key], [kernel]: figures };
  }
  const sorted: Budget = {
    margin: budget.margin,
    programs: Object.fromEntries(
      Object.entries(budget.programs).sort(([a], [b]) => a < b ? -1 : 1),
    ),
  };
  await Deno.writeTextFile(values.budget, JSON.stringify(sorted, null, 2) + "\n");
  console.log(`verify: wrote kernel ${kernel}'s figures to ${values.budget}`);
} else if (failures > 0) {
  console.error(`verify: ${failures} program(s) over budget or not loading`);
  Deno.exit(1);
}
