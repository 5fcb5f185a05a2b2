/**
 * Checks that a test leaves nothing behind: the programs, maps and links it created are gone
 * from `bpftool prog/map/link list -j`, and this process has no more open file descriptors
 * than before.
 *
 * @module
 */
import assert from "node:assert/strict";

/** Kernel object kinds bpftool lists. */
export type BpfKind = "prog" | "map" | "link";

/**
 * Returns the ids bpftool lists for a kind. bpftool fails when an object vanishes while it walks
 * the list (other tests on the machine come and go), so a failed listing is retried.
 */
export function bpftoolIds(kind: BpfKind): Set<number> {
  let failure = "";
  for (let attempt = 0; attempt < 10; attempt++) {
    const output = new Deno.Command("bpftool", {
      args: [kind, "list", "-j"],
      stdout: "piped",
      stderr: "piped",
    }).outputSync();
    const text = new TextDecoder().decode(output.stdout).trim();
    if (output.success) {
      const list = JSON.parse(text === "" ? "[]" : text) as { id: number }[];
      return new Set(list.map((entry) => entry.id));
    }
    failure = `${new TextDecoder().decode(output.stderr)}${text}`.trim();
  }
  throw new Error(`bpftool ${kind} list failed 10 times: ${failure || "no message"}`);
}

/** Lists this process's open file descriptors with what they point at. */
function openFdList(): string[] {
  return [...Deno.readDirSync("/proc/self/fd")].map((entry) => {
    try {
      return `${entry.name} → ${Deno.readLinkSync(`/proc/self/fd/${entry.name}`)}`;
    } catch {
      return entry.name; // the descriptor readDir itself used
    }
  });
}

/** Counts this process's open file descriptors. */
export function openFds(): number {
  return [...Deno.readDirSync("/proc/self/fd")].length;
}

/** Records what a test created, to check it is released afterwards. */
export class LeakTracker {
  /** Program ids created. */
  readonly progs = new Set<number>();
  /** Map ids created. */
  readonly maps = new Set<number>();
  /** Link ids created. */
  readonly links = new Set<number>();
  readonly #fds: number;
  readonly #fdList: string[];

  /** Takes the fd baseline. */
  constructor() {
    bpftoolIds("prog"); // warm up: the first subprocess may open lasting descriptors
    this.#fds = openFds();
    this.#fdList = openFdList();
  }

  /**
   * Records kernel objects by id.
   *
   * @param kind The kind.
   * @param ids Their ids.
   */
  add(kind: BpfKind, ...ids: number[]): void {
    const set = kind === "prog" ? this.progs : kind === "map" ? this.maps : this.links;
    for (const id of ids) set.add(id);
  }

  /**
   * Records every loaded program and every map of an object.
   *
   * @param object The object, such as a skeleton's `object`.
   */
  addObject(object: {
    readonly programs: readonly { readonly loaded: boolean; readonly id: number }[];
    readonly maps: readonly { readonly id: number }[];
  }): void {
    for (const program of object.programs) if (program.loaded) this.progs.add(program.id);
    for (const map of object.maps) this.maps.add(map.id);
  }

  /**
   * Asserts every recorded object is gone (waiting a little: the kernel frees them after an RCU
   * grace period) and the fd count is back to the baseline.
   *
   * @param timeoutMs How long to wait for the kernel.
   */
  async assertReleased(timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const left: string[] = [];
      for (const kind of ["prog", "map", "link"] as const) {
        const listed = bpftoolIds(kind);
        const mine = kind === "prog" ? this.progs : kind === "map" ? this.maps : this.links;
        for (const id of mine) if (listed.has(id)) left.push(`${kind} ${id}`);
      }
      const fds = openFds();
      if (left.length === 0 && fds <= this.#fds) return;
      if (Date.now() > deadline) {
        const extra = openFdList().filter((fd) => !this.#fdList.includes(fd));
        assert.fail(
          `left behind: ${left.join(", ") || "no bpf objects"}; open fds ${fds} (baseline ` +
            `${this.#fds}; new: ${extra.join(", ") || "none"})`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}

// Deno opens descriptors of its own on the first FFI callback and nonblocking call; make both
// here so they are part of every baseline rather than counted as leaks.
{
  new Deno.UnsafeCallback({ parameters: [], result: "void" } as const, () => {}).close();
  const warmUp = Deno.dlopen("libc.so.6", {
    usleep: { parameters: ["u32"], result: "i32", nonblocking: true },
  });
  await warmUp.symbols.usleep(0);
  warmUp.close();
}
