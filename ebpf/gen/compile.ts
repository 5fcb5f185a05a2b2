/**
 * The compile step of bpf2ts: `vmlinux.h` from the running kernel's BTF (bpftool), then
 * `clang -target bpf -O2 -g` (CO-RE) and `llvm-strip -g` (DWARF out, `.BTF`/`.BTF.ext` kept).
 * Output is deterministic: the source is compiled from its own directory by file name, and both
 * that directory and the temporary include directory are mapped away from the paths in BTF, so
 * every checkout produces the same bytes.
 *
 * @module
 */
import { TriadError } from "@triad/core";
import { elfSections } from "../_elf.ts";

/** Raised when a gen-time tool is missing or fails. */
export class GenError extends TriadError {
  /**
   * Creates the error.
   *
   * @param message What failed.
   */
  constructor(message: string) {
    super(message, { code: "gen" });
  }
}

/** The programs bpf2ts runs, with the Debian package of each (as in `.ci/packages.tsv`). */
export const TOOL_PACKAGES: Readonly<Record<"clang" | "bpftool" | "llvm-strip", string>> = {
  clang: "clang",
  bpftool: "bpftool",
  "llvm-strip": "llvm",
};

async function run(
  command: keyof typeof TOOL_PACKAGES,
  args: string[],
  cwd?: string,
): Promise<Uint8Array> {
  let output: Deno.CommandOutput;
  try {
    output = await new Deno.Command(command, {
      args,
      ...(cwd ? { cwd } : {}),
      stdout: "piped",
      stderr: "piped",
    })
      .output();
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new GenError(`bpf2ts needs ${command}: apt-get install ${TOOL_PACKAGES[command]}`);
    }
    throw error;
  }
  if (!output.success) {
    throw new GenError(
      `${command} ${args.join(" ")} failed (exit ${output.code}):\n` +
        new TextDecoder().decode(output.stderr).trimEnd(),
    );
  }
  return output.stdout;
}

/** The toolchain bpf2ts found. */
interface Toolchain {
  /** clang's version line. */
  compiler: string;
  /** The directory holding `vmlinux.h`. */
  includeDir: string;
  /** sha256 of `vmlinux.h`. */
  kernelBtfHash: string;
}

/** Returns the hex sha256 of bytes. */
export async function sha256(bytes: Uint8Array<ArrayBuffer>): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", bytes);
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Generates `vmlinux.h` from the running kernel's BTF into a temporary directory.
 *
 * @param btfPath The BTF to dump (default: the running kernel's).
 * @returns The toolchain description; remove `includeDir` when done.
 */
export async function prepareToolchain(btfPath = "/sys/kernel/btf/vmlinux"): Promise<Toolchain> {
  const version = new TextDecoder().decode(await run("clang", ["--version"]));
  const includeDir = await Deno.makeTempDir({ prefix: "bpf2ts-" });
  try {
    const header = await run(
      "bpftool",
      ["btf", "dump", "file", btfPath, "format", "c"],
    );
    await Deno.writeFile(`${includeDir}/vmlinux.h`, header);
    return {
      compiler: version.split("\n")[0]!.trim(),
      includeDir,
      kernelBtfHash: await sha256(new Uint8Array(header)),
    };
  } catch (error) {
    await Deno.remove(includeDir, { recursive: true });
    throw error;
  }
}

const TARGET_ARCH: Record<string, string> = { x86_64: "x86", aarch64: "arm64" };

/**
 * Compiles one `*.bpf.c` and strips its DWARF, keeping BTF.
 *
 * @param source The source path.
 * @param toolchain From {@linkcode prepareToolchain}.
 * @returns The object bytes.
 */
export async function compileBpf(
  source: string,
  toolchain: Toolchain,
): Promise<Uint8Array<ArrayBuffer>> {
  const slash = source.lastIndexOf("/");
  const dir = slash === -1 ? "." : source.slice(0, slash);
  const file = source.slice(slash + 1);
  const output = `${toolchain.includeDir}/${file.replace(/\.c$/, ".o")}`;
  await run(
    "clang",
    [
      "-target",
      "bpf",
      `-D__TARGET_ARCH_${TARGET_ARCH[Deno.build.arch] ?? "x86"}`,
      "-O2",
      "-g",
      "-Wall",
      `-fdebug-prefix-map=${toolchain.includeDir}=.`,
      // BTF line info names the source by its absolute path: map the source's directory away too,
      // or the object would differ between checkouts.
      `-fdebug-prefix-map=${Deno.realPathSync(dir)}=.`,
      "-I",
      toolchain.includeDir,
      "-I",
      ".",
      "-c",
      file,
      "-o",
      output,
    ],
    dir,
  );
  await run("llvm-strip", ["-g", output]);
  const bytes = await Deno.readFile(output);
  await Deno.remove(output);
  const names = elfSections(bytes, file).map((section) => section.name);
  if (!names.includes(".BTF")) {
    throw new GenError(`${source}: the object has no .BTF section after strip`);
  }
  if (names.some((name) => name.startsWith(".debug_"))) {
    throw new GenError(`${source}: DWARF sections remain after llvm-strip -g`);
  }
  return bytes;
}
