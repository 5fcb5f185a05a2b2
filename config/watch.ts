/**
 * Debounced directory watching: one callback per burst of file system events.
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
 * Watches directories (not their files: editors replace files by renaming, and Kubernetes swaps
 * a ConfigMap's `..data` symlink, both of which a watch on the file itself would miss) and calls
 * `onQuiet` with the paths seen once events have been quiet for `debounceMs`.
 *
 * @param fs The file system.
 * @param dirs The directories; missing ones are skipped.
 * @param debounceMs The quiet period.
 * @param onQuiet Called after each burst with the paths that had events.
 * @returns The watcher, or `undefined` when no directory exists.
 */
export function watchDirectories(
  fs: ConfigFileSystem,
  dirs: readonly string[],
  debounceMs: number,
  onQuiet: (paths: string[]) => void,
): DirectoryWatcher | undefined {
  const watchers: ConfigFsWatcher[] = [];
  for (const dir of dirs) {
    try {
      watchers.push(fs.watch([dir]));
    } catch {
      // A directory that does not exist has nothing to watch.
    }
  }
  if (watchers.length === 0) return undefined;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let closed = false;
  let pending = new Set<string>();
  const fire = () => {
    timer = undefined;
    if (closed) return;
    const paths = [...pending];
    pending = new Set();
    onQuiet(paths);
  };
  for (const watcher of watchers) {
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
  }
  return {
    close() {
      closed = true;
      if (timer !== undefined) clearTimeout(timer);
      for (const watcher of watchers) {
        try {
          watcher.close();
        } catch {
          // Already closed.
        }
      }
    },
  };
}
