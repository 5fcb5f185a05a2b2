/**
 * Privileged tests of multi-attach on the real kernel: one `uprobe.multi` link on two functions of
 * a small C program compiled here (`fixtures/multi_target.c`), with the fallback to one uprobe per
 * function; `kprobe.multi` where kprobes exist (skipped with the reason where they are compiled
 * out).
 *
 * @module
 */
import assert from "node:assert/strict";
import { features, UnsupportedFeatureError } from "@triad/ebpf";
import {
  bpfCapabilities,
  bpfTest,
  btf,
  command,
  kernelAtLeast,
  libbpf,
  type Requirement,
  testWith,
  uprobes,
} from "./requirements.ts";
import { LeakTracker } from "./ebpf_leak_check.ts";
import { compileWithClang } from "./support.ts";
import { MultiObject } from "./ebpf_bpf/multi.gen.ts";

const SOURCE = new URL("./fixtures/multi_target.c", import.meta.url).pathname;

const kprobes: Requirement = {
  name: "kprobes",
  check: () => {
    try {
      features.requireAttach("kprobe");
      return undefined;
    } catch (error) {
      return `kprobe.multi: ${(error as Error).message}`;
    }
  },
};
const needs = [...bpfTest, command("clang"), uprobes];

/** Compiles the target program into a fresh directory. */
async function compileTarget(directory: string): Promise<string> {
  const binary = `${directory}/multi_target`;
  await compileWithClang(SOURCE, binary, ["-O1", "-g"]);
  return binary;
}

async function run(binary: string, a: number, b: number): Promise<void> {
  const status = await new Deno.Command(binary, { args: [String(a), String(b)] }).output();
  assert.ok(status.success);
}

function counts(obj: MultiObject): bigint[] {
  return [0, 1, 2].map((i) => obj.maps.calls.lookup(i) ?? 0n);
}

testWith("Program.attachUprobeMulti() counts calls to several functions", needs, async (t) => {
  const tracker = new LeakTracker();
  const directory = await Deno.makeTempDir({ prefix: "triad-multi-" });
  try {
    const binary = await compileTarget(directory);
    using obj = MultiObject.open({ autoload: { count_kernel_calls: false } });
    await obj.load();
    tracker.addObject(obj.object);

    const multiSkip = kernelAtLeast(6, 6, "uprobe_multi links").check();
    if (multiSkip !== undefined) console.error(`SKIP one uprobe_multi link: ${multiSkip}`);
    await t.step({
      name: "one uprobe_multi link, a cookie per function",
      ignore: multiSkip !== undefined,
      fn: async () => {
        const fallbacks: string[] = [];
        {
          using link = obj.programs.count_calls.attachUprobeMulti(
            binary,
            ["triad_target_a", "triad_target_b"],
            { onFallback: (reason) => fallbacks.push(reason) },
          );
          tracker.add("link", link.id);
          await run(binary, 3, 5);
          assert.deepEqual(fallbacks, []);
          assert.deepEqual(counts(obj), [3n, 5n, 0n]);
        }
        await run(binary, 2, 2);
        assert.deepEqual(counts(obj), [3n, 5n, 0n], "detached on close");
      },
    });

    await t.step("the fallback: one uprobe per function, with the reason told", async () => {
      // A program loaded as a plain uprobe cannot take a uprobe_multi link: the kernel refuses,
      // the loader falls back to one uprobe per function and says why.
      const fallbacks: string[] = [];
      const before = counts(obj);
      {
        using link = obj.programs.count_calls_plain.attachUprobeMulti(
          binary,
          ["triad_target_b", "triad_target_a"],
          { cookies: [2n, 1n], onFallback: (reason) => fallbacks.push(reason) },
        );
        assert.match(link.description, /one uprobe each/);
        await run(binary, 4, 1);
      }
      assert.equal(fallbacks.length, 1);
      assert.match(
        fallbacks[0]!,
        /refused a uprobe_multi link \(EINVAL.*attaching 2 uprobes instead/,
      );
      const after = counts(obj);
      assert.deepEqual([after[1]! - before[1]!, after[2]! - before[2]!], [4n, 1n]);
      await run(binary, 1, 1);
      assert.deepEqual(counts(obj), after, "every uprobe detached on close");
    });

    await t.step("without onFallback the fallback's reason is logged as a warning", () => {
      const warned: string[] = [];
      const warn = console.warn;
      console.warn = (...args: unknown[]) => warned.push(args.join(" "));
      try {
        using _link = obj.programs.count_calls_plain.attachUprobeMulti(binary, ["triad_target_a"]);
      } finally {
        console.warn = warn;
      }
      assert.equal(warned.length, 1);
      assert.match(warned[0]!, /^@triad\/ebpf: uprobe\.multi .*refused a uprobe_multi link/);
    });

    await t.step("a function the binary lacks is named", () => {
      assert.throws(
        () => obj.programs.count_calls.attachUprobeMulti(binary, ["triad_target_a", "nope"]),
        /multi_target: no function symbol nope/,
      );
    });
  } finally {
    await Deno.remove(directory, { recursive: true });
  }
  await tracker.assertReleased();
});

/** kprobe.multi links need fprobe (CONFIG_FPROBE); Debian's 6.1 kernel has kprobes without it. */
const fprobe: Requirement = {
  name: "CONFIG_FPROBE",
  check: () => {
    let config: string;
    try {
      config = Deno.readTextFileSync(`/boot/config-${Deno.osRelease()}`);
    } catch {
      return undefined; // no config to read: the attach itself decides
    }
    return /^CONFIG_FPROBE=y$/m.test(config)
      ? undefined
      : `needs kprobe.multi links (CONFIG_FPROBE), which kernel ${Deno.osRelease()} was built without`;
  },
};

testWith("Program.attachKprobeMulti() attaches one link to many kernel functions", [
  bpfCapabilities,
  btf,
  libbpf,
  kprobes,
  fprobe,
], async () => {
  using obj = MultiObject.open({ autoload: { count_calls: false, count_calls_plain: false } });
  await obj.load();
  using _link = obj.programs.count_kernel_calls.attachKprobeMulti("__x64_sys_getppid");
});

/** Met where kprobes are compiled out (where they exist, the test above runs instead). */
const noKprobes: Requirement = {
  name: "no kprobes",
  check: () =>
    features.attach("kprobe")
      ? "kprobes exist here: attachKprobeMulti is tested attaching instead"
      : undefined,
};

testWith("Program.attachKprobeMulti() says kprobes are compiled out", [
  bpfCapabilities,
  libbpf,
  noKprobes,
], async () => {
  using obj = MultiObject.open({
    autoload: { count_calls: false, count_calls_plain: false, count_kernel_calls: false },
  });
  await obj.load();
  assert.throws(
    () => obj.programs.count_kernel_calls.attachKprobeMulti(["a", "b"]),
    (error: unknown) =>
      error instanceof UnsupportedFeatureError && /kprobe\.multi/.test(error.message) &&
      /CONFIG_KPROBE_EVENTS/.test(error.message),
  );
});
