/**
 * Debounced directory watching for the files in a directory that matter: the file source's
 * configuration files and the configuration's secret files.
 *
 * @module
 */
import type { ConfigFileSystem, ConfigFsWatcher } from "./file_system.ts";

/** A running directory watcher. */
export interface DirectoryWatcher {
  /** Stops watching; no callback runs afterwards. */
  close(): void;
}

/**
 * Watches a directory (not its files: editors replace files by renaming, and Kubernetes swaps
 * a ConfigMap's or Secret's `..data` symlink, both of which a watch on the file itself would miss)
 * and, once events have been quiet for `debounceMs`, calls `onChange` with the first event path
 * that concerns a watched file: its own name, else a Kubernetes `..` name (`..data`, a timestamped
 * directory) that stands for every file of the volume. A burst touching neither calls nothing.
 *
 * @param fs The file system.
 * @param dir The directory.
 * @param debounceMs The quiet period.
 * @param watched Whether a file name (without directory) is one that matters.
 * @param onChange Called after each relevant burst with the relevant path.
 * @returns The watcher, or `undefined` when the directory cannot be watched (missing, or a
 * file system that cannot watch).
 */
export function watchFilesIn(
  fs: ConfigFileSystem,
  dir: string,
  debounceMs: number,
  watched: (name: string) => boolean,
  onChange: (relevant: string) => void,
): DirectoryWatcher | undefined {
  let watcher: ConfigFsWatcher;
  try {
    watcher = fs.watch([dir]);
  } catch {
    return undefined; // A directory that does not exist has nothing to watch.
  }
  let timer: ReturnType<typeof setTimeout> | undefined;
  let closed = false;
  let pending = new Set<string>();
  const fire = () => {
    timer = undefined;
    if (closed) return;
    const paths = [...pending];
    pending = new Set();
    const relevant = paths.find((path) => watched(baseOf(path))) ??
      paths.find((path) => baseOf(path).startsWith(".."));
    if (relevant !== undefined) onChange(relevant);
  };
  (async () => {
    try {
      for await (const event of watcher) {
        if (closed) break;
        if (event.kind === "access") continue;
        for (const path of event.paths) pending.add(path);
        if (timer !== undefined) clearTimeout(timer);
        timer = setTimeout(fire, debounceMs);
      }
    } catch {
      // The watcher closed under us (directory removed or disposal).
    }
  })();
  return {
    close() {
      closed = true;
      if (timer !== undefined) clearTimeout(timer);
      try {
        watcher.close();
      } catch {
        // Already closed.
      }
    },
  };
}

/**
 * The files in `dir` whose contents differ between two reads (or that appeared or went), sorted:
 * what a change's cause names rather than the `..data` swap's timestamped directory.
 */
export function changedIn(
  dir: string,
  before: ReadonlyMap<string, string>,
  after: ReadonlyMap<string, string>,
): string[] {
  const out: string[] = [];
  for (const path of new Set([...before.keys(), ...after.keys()])) {
    if (dirOf(path) === dir && before.get(path) !== after.get(path)) out.push(path);
  }
  return out.sort();
}

/** The directory of a file path (`.` for a bare name). */
export function dirOf(path: string): string {
  const slash = path.lastIndexOf("/");
  return slash === -1 ? "." : slash === 0 ? "/" : path.slice(0, slash);
}

/** The last component of a path. */
export function baseOf(path: string): string {
  return path.slice(path.lastIndexOf("/") + 1);
}
