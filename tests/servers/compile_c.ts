/**
 * Compiles a benchmark's small C peer (a native server or load generator) at bench time, with any
 * C compiler on `PATH`: `cc` where one is installed, else clang (which CI installs for eBPF) or
 * gcc.
 *
 * @module
 */

/**
 * Compiles one C file with `-O2`.
 *
 * @param source The `.c` file.
 * @param output The executable to write.
 * @param libs Libraries to link (`["ssl", "crypto"]`: `-lssl -lcrypto`).
 * @throws {Error} When no compiler is installed, or with the compiler's messages when it fails.
 */
export async function compileC(
  source: string,
  output: string,
  libs: string[] = [],
): Promise<void> {
  const path = (Deno.env.get("PATH") ?? "").split(":");
  const compiler = ["cc", "clang", "gcc"].find((name) =>
    path.some((dir) => {
      try {
        return Deno.statSync(`${dir}/${name}`).isFile;
      } catch {
        return false;
      }
    })
  );
  if (compiler === undefined) throw new Error("no C compiler found (apt-get install clang or gcc)");
  const { code, stderr } = await new Deno.Command(compiler, {
    args: ["-O2", "-o", output, source, ...libs.map((l) => `-l${l}`)],
    stderr: "piped",
  }).output();
  if (code !== 0) {
    throw new Error(`${compiler} ${source}: ${new TextDecoder().decode(stderr)}`);
  }
}
