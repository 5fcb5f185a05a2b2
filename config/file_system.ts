/**
 * The file system as configuration sees it, injectable for tests.
 *
 * @module
 */

/** One directory entry. */
export interface ConfigDirEntry {
  /** The entry's name. */
  readonly name: string;
  /** Whether it is a regular file (or a symlink to one). */
  readonly isFile: boolean;
}

/** A file system watcher: events until closed. */
export interface ConfigFsWatcher extends AsyncIterable<{ kind: string; paths: string[] }> {
  /** Stops watching. */
  close(): void;
}

/**
 * What configuration reads from the file system. Missing files must throw
 * `Deno.errors.NotFound`. The default is {@linkcode denoFileSystem}.
 */
export interface ConfigFileSystem {
  /** Reads a whole file as UTF-8. */
  readTextFile(path: string): Promise<string>;
  /** Lists a directory. */
  readDir(path: string): AsyncIterable<ConfigDirEntry>;
  /** Watches directories (not recursively). */
  watch(paths: string[]): ConfigFsWatcher;
}

/**
 * The real file system through `Deno`.
 *
 * @example
 * ```ts
 * import { denoFileSystem } from "@triad/config";
 * import assert from "node:assert/strict";
 *
 * const path = await Deno.makeTempFile();
 * await Deno.writeTextFile(path, "port: 1");
 * assert.equal(await denoFileSystem.readTextFile(path), "port: 1");
 * await Deno.remove(path);
 * ```
 */
export const denoFileSystem: ConfigFileSystem = {
  readTextFile: (path) => Deno.readTextFile(path),
  async *readDir(path) {
    for await (const entry of Deno.readDir(path)) {
      let isFile = entry.isFile;
      if (entry.isSymlink) {
        try {
          isFile = (await Deno.stat(`${path}/${entry.name}`)).isFile;
        } catch {
          isFile = false;
        }
      }
      yield { name: entry.name, isFile };
    }
  },
  watch: (paths) => Deno.watchFs(paths, { recursive: false }),
};
