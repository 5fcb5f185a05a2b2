/**
 * The file source: configuration files found by search paths, profiles and the config directory,
 * each parsed (YAML, JSON or TOML, see `parsers.ts`) into a {@linkcode Layer} that keeps the
 * `file:line:col` of every key.
 *
 * @module
 */
import { asConfigError, ConfigError, issuesError } from "../errors.ts";
import type { ConfigIssue } from "../errors.ts";
import type { ConfigFileSystem } from "../file_system.ts";
import type { Layer } from "../layer.ts";
import type { Source, SourceContext, SourceLayer } from "../source.ts";
import { baseOf, changedIn, dirOf, watchFilesIn } from "../watch.ts";
import type { DirectoryWatcher } from "../watch.ts";
import type { Origin } from "../origin.ts";
import { isPlainObject } from "../_path.ts";
import { type ConfigFormat, ParseFailure, PARSERS } from "./parsers.ts";

/** File extensions and their format, in search order. */
const CONFIG_EXTENSIONS: readonly (readonly [string, ConfigFormat])[] = [
  [".yaml", "yaml"],
  [".yml", "yaml"],
  [".json", "json"],
  [".toml", "toml"],
];

/** Returns the format of a file from its extension, `undefined` when it is none of ours. */
export function formatOfFile(path: string): ConfigFormat | undefined {
  const lower = path.toLowerCase();
  return CONFIG_EXTENSIONS.find(([ext]) => lower.endsWith(ext))?.[1];
}

/** The layers a configuration file can belong to. */
type FileLayerKind = "files" | "profile" | "configDir";

/**
 * Parses configuration text into a layer, with the position of every key.
 *
 * @param text The file's contents.
 * @param format YAML, JSON or TOML.
 * @param file The file name used in origins and errors.
 * @param kind The layer the file belongs to.
 * @returns The layer.
 * @throws {ConfigError} With code `parse`, naming `file:line:col`.
 *
 * @example
 * ```ts
 * import { parseConfigText } from "./file.ts";
 * import assert from "node:assert/strict";
 *
 * const layer = parseConfigText("dns:\n  port: 53\n", "yaml", "app.yaml");
 * assert.deepEqual(layer.tree, { dns: { port: 53 } });
 * assert.deepEqual(layer.origins.get("dns.port"), { layer: "files", file: "app.yaml", line: 2, column: 3 });
 * ```
 */
export function parseConfigText(
  text: string,
  format: ConfigFormat,
  file: string,
  kind: FileLayerKind = "files",
): Layer {
  const origins = new Map<string, Origin>();
  const at = (line: number, column: number): Origin => ({ layer: kind, file, line, column });
  let tree: unknown;
  try {
    tree = PARSERS[format].parse(text, (path, line, column) => origins.set(path, at(line, column)));
  } catch (error) {
    if (error instanceof ParseFailure) {
      throw parseError(file, error.line, error.column, error.message);
    }
    throw error;
  }
  if (!isPlainObject(tree)) {
    throw new ConfigError(`${file}:1:1: expected a mapping of keys at the top level`, {
      code: "parse",
      issues: [{ path: "", message: "expected a mapping at the top level", origin: at(1, 1) }],
    });
  }
  return { kind, name: file, tree, origins };
}

function parseError(file: string, line: number, column: number, message: string): ConfigError {
  const text = message.charAt(0).toLowerCase() + message.slice(1);
  return new ConfigError(`${file}:${line}:${column}: ${text}`, {
    code: "parse",
    issues: [{ path: "", message: text, origin: { layer: "files", file, line, column } }],
  });
}

/** Search for `<name>.{yaml,yml,json,toml}` in directories: the first directory with a hit wins. */
export interface FileSearch {
  /** The file name without extension, such as `"app"`. */
  readonly name: string;
  /** Directories to search, in order, such as `[".", "/etc/app"]`. */
  readonly paths: readonly string[];
  /** Fail when no file is found. @default {false} */
  readonly required?: boolean;
}

/** What to read: the files option, the config directory, the profile, `--config` files. */
export interface FilePlan {
  readonly files?: readonly string[] | FileSearch | undefined;
  readonly configDir?: string | undefined;
  readonly profile?: string | undefined;
  /** Files named by `--config`: they replace `files`. */
  readonly configFiles: readonly string[];
}

/** Directories to watch and the file names in them that matter (`<dir>/*`: every file). */
export interface WatchTargets {
  readonly dirs: Set<string>;
  readonly names: Set<string>;
}

/** A configuration file to read, for one layer; `text` when the search read it already. */
interface FileCandidate {
  readonly path: string;
  readonly kind: "files" | "profile" | "configDir";
  readonly required: boolean;
  /** The contents, when the search already read them (read once, never twice). */
  readonly text?: string;
}

/**
 * Which files to read: `--config` files, explicit files, or the first search hit; then the
 * profile's file beside each, then the config directory's files in name order. Adds what to
 * watch to `watch`.
 *
 * @throws {ConfigError} With code `not_found` when a required search finds nothing.
 */
export async function findConfigFiles(
  fs: ConfigFileSystem,
  plan: FilePlan,
  watch: WatchTargets,
): Promise<FileCandidate[]> {
  const out: FileCandidate[] = [];
  const { files, profile } = plan;
  const remember = (path: string) => {
    watch.dirs.add(dirOf(path));
    watch.names.add(baseOf(path));
  };
  const profileOf = (path: string) => {
    const format = formatOfFile(path);
    const ext = CONFIG_EXTENSIONS.find(([e]) => path.toLowerCase().endsWith(e))?.[0] ?? "";
    return format === undefined
      ? undefined
      : `${path.slice(0, path.length - ext.length)}.${profile}${ext}`;
  };
  const explicit = plan.configFiles.length > 0
    ? plan.configFiles
    : Array.isArray(files)
    ? files as readonly string[]
    : undefined;
  if (explicit !== undefined) {
    for (const path of explicit) {
      out.push({ path, kind: "files", required: true });
      remember(path);
      if (profile !== undefined) {
        const profilePath = profileOf(path);
        if (profilePath !== undefined) {
          out.push({ path: profilePath, kind: "profile", required: false });
          remember(profilePath);
        }
      }
    }
  } else if (files !== undefined) {
    const search = files as FileSearch;
    let found = false;
    for (const dir of search.paths) {
      for (const [ext] of CONFIG_EXTENSIONS) {
        remember(`${dir}/${search.name}${ext}`);
        if (profile !== undefined) remember(`${dir}/${search.name}.${profile}${ext}`);
      }
      if (found) continue;
      for (const [ext] of CONFIG_EXTENSIONS) {
        const path = `${dir}/${search.name}${ext}`;
        const text = await tryRead(fs, path);
        if (text !== undefined) {
          out.push({ path, kind: "files", required: false, text });
          found = true;
          break;
        }
      }
      if (found && profile !== undefined) {
        for (const [ext] of CONFIG_EXTENSIONS) {
          const path = `${dir}/${search.name}.${profile}${ext}`;
          const text = await tryRead(fs, path);
          if (text !== undefined) {
            out.push({ path, kind: "profile", required: false, text });
            break;
          }
        }
      }
    }
    if (!found && search.required === true) {
      throw new ConfigError(
        `No configuration file ${search.name}.{yaml,yml,json,toml} in ${search.paths.join(", ")}`,
        { code: "not_found" },
      );
    }
  }
  const configDir = plan.configDir;
  if (configDir !== undefined) {
    watch.dirs.add(configDir);
    watch.names.add(`${configDir}/*`);
    const names: string[] = [];
    try {
      for await (const entry of fs.readDir(configDir)) {
        if (entry.isFile && !entry.name.startsWith(".") && formatOfFile(entry.name)) {
          names.push(entry.name);
        }
      }
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
    names.sort();
    for (const name of names) {
      out.push({ path: `${configDir}/${name}`, kind: "configDir", required: false });
      watch.names.add(name);
    }
  }
  return out;
}

async function tryRead(fs: ConfigFileSystem, path: string): Promise<string | undefined> {
  try {
    return await fs.readTextFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
}

/**
 * Reads and parses the files {@linkcode findConfigFiles} names into layers (their secret
 * references are resolved by the configuration, as every source's are), the texts read into
 * `texts`; every problem is added to `issues`.
 */
export async function readConfigFiles(
  fs: ConfigFileSystem,
  plan: FilePlan,
  watch: WatchTargets,
  issues: ConfigIssue[],
  texts: Map<string, string>,
): Promise<Layer[]> {
  let candidates: FileCandidate[];
  try {
    candidates = await findConfigFiles(fs, plan, watch);
  } catch (error) {
    issues.push({ path: "", message: asConfigError(error).message });
    return [];
  }
  const layers = await Promise.all(candidates.map(async (candidate) => {
    const format = formatOfFile(candidate.path);
    if (format === undefined) {
      issues.push({
        path: "",
        message: `${candidate.path}: unknown format, expected .yaml, .yml, .json or .toml`,
      });
      return undefined;
    }
    let text: string;
    try {
      text = candidate.text ?? await fs.readTextFile(candidate.path);
    } catch (error) {
      if (error instanceof Deno.errors.NotFound && !candidate.required) return undefined;
      issues.push({
        path: "",
        message: error instanceof Deno.errors.NotFound
          ? `Configuration file ${candidate.path} not found`
          : `Cannot read ${candidate.path}: ${(error as Error).message}`,
      });
      return undefined;
    }
    texts.set(candidate.path, text);
    try {
      return parseConfigText(text, format, candidate.path, candidate.kind);
    } catch (error) {
      issues.push(...(error instanceof ConfigError ? error.issues : []));
      if (!(error instanceof ConfigError)) throw error;
      return undefined;
    }
  }));
  return layers.filter((layer): layer is Layer => layer !== undefined);
}

/**
 * The configuration files as a {@linkcode Source}: the files option (explicit, or a search), the
 * profile's file beside each, the config directory; one layer per file. It remembers what to
 * watch and the texts it read, so that a change names the files whose contents changed.
 */
export class FileSource implements Source {
  readonly name = "files";
  /** Directories to watch and the names in them that matter; grows with each read. */
  readonly watchTargets: WatchTargets = { dirs: new Set(), names: new Set() };
  /** The texts the last read found, by path. */
  texts: ReadonlyMap<string, string> = new Map();
  readonly #fs: ConfigFileSystem;
  readonly #plan: () => FilePlan;
  readonly #debounceMs: number;

  /**
   * @param fs The file system.
   * @param plan What to read, asked at each read (the profile and `--config` come from flags).
   * @param debounceMs How long a directory's events must be quiet before `watch()` reads again.
   */
  constructor(fs: ConfigFileSystem, plan: () => FilePlan, debounceMs = 50) {
    this.#fs = fs;
    this.#plan = plan;
    this.#debounceMs = debounceMs;
  }

  /** @throws {ConfigError} Naming every file that is missing, unreadable or invalid. */
  async load(): Promise<readonly SourceLayer[]> {
    const issues: ConfigIssue[] = [];
    const layers = await this.read(issues);
    if (issues.length > 0) throw issuesError(issues, "Cannot read configuration files");
    return layers;
  }

  /** Reads every file into a layer, adding every problem to `issues`. */
  async read(issues: ConfigIssue[]): Promise<Layer[]> {
    const texts = new Map<string, string>();
    try {
      return await readConfigFiles(
        this.#fs,
        this.#plan(),
        this.watchTargets,
        issues,
        texts,
      );
    } finally {
      this.texts = texts;
    }
  }

  /**
   * Watches the directories of the files the reads so far looked for (not the files: editors
   * replace them by renaming, Kubernetes swaps a ConfigMap's `..data` symlink) until
   * `context.signal` aborts. After each burst of events touching one of those files (or a `..`
   * name), debounced, it reads every file again and hands over the layers, with a cause naming
   * the files in that directory whose contents changed (`file /etc/app/app.yaml`), else the
   * event's path; or, when a file is missing or invalid, an error naming every problem. A
   * directory that cannot be watched is skipped.
   */
  async watch(
    context: SourceContext,
    onLayer: (layers: readonly SourceLayer[], cause: string) => void,
    onError: (error: ConfigError) => void,
  ): Promise<void> {
    const { signal } = context;
    if (signal.aborted) return;
    let reading = Promise.resolve();
    const readAgain = (dir: string, relevant: string) => {
      reading = reading.then(async () => {
        if (signal.aborted) return;
        const before = this.texts;
        const issues: ConfigIssue[] = [];
        const layers = await this.read(issues);
        if (signal.aborted) return;
        if (issues.length > 0) {
          onError(issuesError(issues, "Cannot reload configuration"));
          return;
        }
        const changed = changedIn(dir, before, this.texts);
        onLayer(layers, `file ${changed.length > 0 ? changed.join(", ") : relevant}`);
      }).catch((error) => onError(asConfigError(error)));
    };
    const { dirs, names } = this.watchTargets;
    const watchers: DirectoryWatcher[] = [];
    for (const dir of dirs) {
      const watcher = watchFilesIn(
        this.#fs,
        dir,
        this.#debounceMs,
        (name) => names.has(name) || names.has(`${dir}/*`),
        (relevant) => readAgain(dir, relevant),
      );
      if (watcher !== undefined) watchers.push(watcher);
    }
    await new Promise<void>((resolve) => signal.addEventListener("abort", () => resolve()));
    for (const watcher of watchers) watcher.close();
    await reading;
  }
}
