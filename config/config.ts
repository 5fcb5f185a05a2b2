/**
 * `createConfig()` and the {@linkcode Config} it returns.
 *
 * @module
 */
import { createLogger, parseDuration } from "@triad/core";
import type { Logger } from "@triad/core";
import { diffConfig } from "./diff.ts";
import type { ConfigChange } from "./diff.ts";
import { asConfigError, ConfigError, issuesError } from "./errors.ts";
import type { ConfigIssue } from "./errors.ts";
import { dumpAt, explainAt } from "./explain.ts";
import type { DumpOptions, Explanation } from "./explain.ts";
import { denoFileSystem } from "./file_system.ts";
import type { ConfigFileSystem } from "./file_system.ts";
import { formatHelp } from "./_help.ts";
import type { Layer } from "./layer.ts";
import type { ArrayStrategy } from "./merge.ts";
import type { LayerName, Origin } from "./origin.ts";
import type { Source, SourceContext, SourceLayer } from "./source.ts";
import type { SchemaInput, SchemaOutput, StandardSchema } from "./standard_schema.ts";
import { DefaultsSource } from "./sources/defaults.ts";
import { EnvSource } from "./sources/env.ts";
import { FileSource } from "./sources/file.ts";
import type { FileSearch } from "./sources/file.ts";
import { FlagsSource } from "./sources/flags.ts";
import { baseOf, changedIn, dirOf, watchFilesIn } from "./watch.ts";
import type { DirectoryWatcher } from "./watch.ts";
import { childPath, getAt, isPlainObject, mapTree, readPath, setAt, splitPath } from "./_path.ts";
import type { ConfigPath, ConfigPathValue } from "./_path.ts";
import { coerce } from "./_coerce.ts";
import { SchemaInfo, standardJsonSchema } from "./_schema_info.ts";
import type { JsonSchema } from "./_schema_info.ts";
import { resolveSecretReferences } from "./_secrets.ts";
import { runPipeline } from "./_pipeline.ts";
import { checkNameCollisions, checkReservedNames } from "./_name_checks.ts";
import type { PipelineResult, State } from "./_pipeline.ts";

export type { ConfigLeaf, ConfigPath, ConfigPathDepth, ConfigPathValue } from "./_path.ts";

/** The default layer order, lowest priority first. */
export const DEFAULT_LAYER_ORDER: readonly LayerName[] = [
  "defaults",
  "files",
  "profile",
  "configDir",
  "remote",
  "env",
  "flags",
  "set",
];

/** A deep partial of a configuration type, for `defaults` and `set()`. */
export type DeepPartial<T> = T extends readonly (infer E)[] ? readonly E[]
  : T extends Record<string, unknown> ? { [K in keyof T]?: DeepPartial<T[K]> }
  : T;

/** Environment options. */
export interface EnvOptions {
  /** Variable prefix: `APP` gives `APP_DNS__CACHE__SIZE`. `""` for none. */
  readonly prefix: string;
  /** The variables (default: `Deno.env.toObject()` at each load). */
  readonly vars?: Readonly<Record<string, string | undefined>>;
  /**
   * Reject variables under the prefix that match no key: `createConfig()` (and every reload)
   * fails naming them. When `false`, each is reported once through `logger.warn`, naming the
   * variable and the closest key, and ignored, so that an `APP_ENV=production` next to the
   * configuration's variables does no harm. @default {false}
   */
  readonly strict?: boolean;
}

/** Command-line options. */
export interface ArgsOptions {
  /** The arguments, such as `Deno.args`. */
  readonly argv: readonly string[];
  /** Extra flag names for paths: `{ listen: "server.listen" }` makes `--listen` set `server.listen`. */
  readonly aliases?: Readonly<Record<string, string>>;
  /** Flag naming the profile, `false` for none. @default {"profile"} */
  readonly profileFlag?: string | false;
  /** Flag naming configuration files (replacing `files`), `false` for none. @default {"config"} */
  readonly configFlag?: string | false;
}

/** Options of {@linkcode createConfig}. */
export interface CreateConfigOptions<S extends StandardSchema> {
  /** The schema: any Standard Schema validator (zod 4 in triad). */
  readonly schema: S;
  /**
   * The JSON Schema of the input, for validators that do not offer Standard JSON Schema. Env and
   * flag names, coercion, unknown-key checks and help text come from it.
   */
  readonly jsonSchema?: Record<string, unknown>;
  /** The lowest layer: values used when nothing else sets them. */
  readonly defaults?: DeepPartial<SchemaInput<S>>;
  /** Configuration files: explicit paths (each must exist), or a search. */
  readonly files?: readonly string[] | FileSearch;
  /**
   * The profile (`prod` loads `app.prod.yaml` next to `app.yaml`). By default read from the
   * `--profile` flag, then `<PREFIX>_PROFILE`; `false` disables profiles.
   */
  readonly profile?: string | false;
  /** A directory whose `*.yaml|yml|json|toml` files are merged in name order (conf.d style). */
  readonly configDir?: string;
  /** Environment variables; `false` to ignore the environment. @default {{ prefix: "APP" }} */
  readonly env?: EnvOptions | false;
  /** Command-line arguments, or options with aliases. */
  readonly args?: readonly string[] | ArgsOptions;
  /** Remote sources (`etcdSource()`, `consulSource()`), merged in the given order. */
  readonly remote?: readonly Source[];
  /**
   * Sources of your own (see {@linkcode Source}): each layer goes where its `kind` is in the
   * order, after the built-in layers of that kind and the `remote` sources.
   */
  readonly sources?: readonly Source[];
  /** Array merge strategies by path (`*` for array indices). */
  readonly arrays?: Readonly<Record<string, ArrayStrategy>>;
  /** The layer order, lowest priority first. @default {DEFAULT_LAYER_ORDER} */
  readonly order?: readonly LayerName[];
  /** Reject keys the schema does not declare. @default {true} */
  readonly strict?: boolean;
  /** How long file events must be quiet before a reload, ms or a duration. @default {50} */
  readonly debounce?: number | string;
  /** The file system (injectable for tests). */
  readonly fs?: ConfigFileSystem;
  /** The `fetch` remote sources use (injectable for tests). */
  readonly fetch?: typeof fetch;
  /** The program name in `--help` text. */
  readonly program?: string;
  /**
   * Where warnings go (unknown environment variables outside `env.strict`).
   * @default {createLogger() from @triad/core: JSON lines on stderr}
   */
  readonly logger?: Logger;
}

/** The event `on("change")` listeners receive. */
export interface ConfigChangeEvent<T> {
  /** What changed, one entry per changed value, paths typed from the schema. */
  readonly changes: readonly ConfigChange<T>[];
  /** The snapshot before. */
  readonly previous: T;
  /** The snapshot after. */
  readonly current: T;
  /** What caused it: `file app.yaml`, `etcd …`, `reload()`, `set()`. */
  readonly cause: string;
  /** Whether `path`, something under it or something above it changed. */
  changed(path: ConfigPath<T>): boolean;
}

/** Listener types by event name. */
export interface ConfigEvents<T> {
  /** A new configuration is in place. */
  change: (event: ConfigChangeEvent<T>) => void;
  /** A reload failed; the last good configuration stays in place. */
  error: (error: ConfigError) => void;
}

/** A live, read-only view of a configuration or of part of it. */
export interface ConfigView<T> {
  /** The current snapshot, deeply frozen. A reload replaces it; it never changes in place. */
  readonly value: T;
  /**
   * Reads the value at a dotted path.
   *
   * @param path Such as `"dns.cache.size"`; array items by index (`"upstreams.0.name"`).
   */
  get<P extends ConfigPath<T>>(path: P): ConfigPathValue<T, P>;
  /** Says which layer set the value at `path` and what it overrode. */
  explain(path: ConfigPath<T> | ""): Explanation;
  /** The configuration as YAML or JSON text, secrets redacted by default. */
  dump(options?: DumpOptions): string;
  /** A live view of the subtree at `path`: reads always see the latest configuration. */
  sub<P extends ConfigPath<T>>(path: P): ConfigView<NonNullable<ConfigPathValue<T, P>>>;
  /**
   * Adds a listener; returns a function that removes it.
   *
   * @param event `change` or `error`.
   * @param listener The listener.
   */
  on<E extends keyof ConfigEvents<T>>(event: E, listener: ConfigEvents<T>[E]): () => void;
}

const LAYER_KINDS = new Set<LayerName>(DEFAULT_LAYER_ORDER);

/** Each source's layers as read, and with their secret references resolved, by index. */
interface SourceLayers {
  readonly read: (readonly SourceLayer[] | undefined)[];
  readonly resolved: (readonly SourceLayer[] | undefined)[];
}

let startConfig: (config: Config<unknown>) => Promise<void>;

/**
 * Loads layered configuration and validates it against a schema. Layers, lowest to highest by
 * default: `defaults` < `files` < `profile` < `configDir` < `remote` < `env` < `flags` < `set()`.
 * Environment variable and flag names are derived from the schema (`APP_DNS__CACHE__SIZE`,
 * `--dns.cache.size`), so every key binds without declaring it.
 *
 * @param options The schema and the sources.
 * @returns The loaded configuration; call `watch()` to follow changes, dispose it to stop.
 * @throws {ConfigError} When a file does not parse (`file:line:col`), a value is invalid (path,
 * expected type, value and origin), a key is unknown ("did you mean"), or a required source is
 * missing or unreachable.
 *
 * @example
 * ```ts
 * import { createConfig } from "@triad/config";
 * import { z } from "zod";
 * import assert from "node:assert/strict";
 *
 * const schema = z.object({
 *   dns: z.object({
 *     listen: z.string().default("127.0.0.1:5353"),
 *     cache: z.object({ size: z.number().int().positive().default(10_000) }).default({ size: 10_000 }),
 *   }),
 * });
 * await using config = await createConfig({
 *   schema,
 *   defaults: { dns: { listen: "127.0.0.1:53" } },
 *   env: { prefix: "APP", vars: { APP_DNS__CACHE__SIZE: "500" } },
 *   args: ["--dns.listen", "[::1]:5300"],
 * });
 * assert.equal(config.get("dns.cache.size"), 500);
 * assert.equal(config.get("dns.listen"), "[::1]:5300");
 * assert.equal(String(config.explain("dns.cache.size")), "dns.cache.size = 500 from env APP_DNS__CACHE__SIZE");
 * ```
 */
export async function createConfig<S extends StandardSchema>(
  options: CreateConfigOptions<S>,
): Promise<Config<SchemaOutput<S>>> {
  const config = new Config<SchemaOutput<S>>(options as CreateConfigOptions<StandardSchema>);
  await startConfig(config as Config<unknown>);
  return config;
}

/**
 * Layered, validated configuration: read it with `get()`/`value`, follow it with `on("change")`
 * after `watch()`, release it with `await using` or `[Symbol.asyncDispose]()`.
 * Made by {@linkcode createConfig}.
 */
export class Config<T> implements ConfigView<T>, AsyncDisposable {
  readonly #options: CreateConfigOptions<StandardSchema>;
  readonly #info: SchemaInfo;
  readonly #fs: ConfigFileSystem;
  readonly #order: readonly LayerName[];
  readonly #prefix: string;
  readonly #abort = new AbortController();
  readonly #changeListeners = new Set<(event: ConfigChangeEvent<T>) => void>();
  readonly #errorListeners = new Set<(error: ConfigError) => void>();
  /**
   * Every source, in the order their layers of one kind are merged: the built-in ones the options
   * stand for (defaults, files, environment, flags), then `remote`, then `sources`. Each one's
   * last layers by index, as read (to resolve them again when a secret file changes) and with
   * their secret references resolved; the watched ones, and their tasks.
   */
  readonly #sources: readonly Source[];
  #readLayers: (readonly SourceLayer[] | undefined)[] = [];
  #sourceLayers: (readonly SourceLayer[] | undefined)[] = [];
  #sourcesWatched = new Set<number>();
  #sourceTasks: Promise<void>[] = [];
  #state: State | undefined;
  #queue: Promise<unknown> = Promise.resolve();
  /** The watchers of the directories of secret files. */
  #watchers: DirectoryWatcher[] = [];
  #watching = false;
  #disposed = false;
  /**
   * How the built-in sources are read so that they report every problem they find, not only the
   * first one `load()` would throw.
   */
  readonly #reporting = new Map<Source, (issues: ConfigIssue[]) => Promise<Layer | Layer[]>>();
  /** Built-in sources kept by name for what they tell besides layers (help, variables, files). */
  readonly #env: EnvSource;
  readonly #flags: FlagsSource;
  readonly #files: FileSource;
  #profile: string | undefined;
  /** Files read for secrets (`${file:…}`, `NAME_FILE`), and the directories watched for them. */
  #secretFiles = new Set<string>();
  /** Per watched directory, the names of the secret files in it. */
  #secretDirs = new Map<string, Set<string>>();
  /** The contents of the secret files last read, to name the ones a reload found changed. */
  #secretTexts = new Map<string, string>();
  /** How long a watched directory's events must be quiet before a reload. */
  readonly #debounceMs: number;
  /** The file system, recording the files read for secrets. */
  readonly #secretFs: ConfigFileSystem = {
    readTextFile: async (path) => {
      this.#secretFiles.add(path);
      try {
        const text = await this.#fs.readTextFile(path);
        this.#secretTexts.set(path, text);
        return text;
      } catch (error) {
        this.#secretTexts.delete(path);
        throw error;
      }
    },
    readDir: (path) => this.#fs.readDir(path),
    watch: (paths) => this.#fs.watch(paths),
  };
  #setLayer: Record<string, unknown> = {};
  #setLayers: readonly Layer[] = [];
  #writeOnly: string[] | undefined;
  #defaultLogger: Logger | undefined;

  /** @internal Use {@linkcode createConfig}. */
  constructor(options: CreateConfigOptions<StandardSchema>) {
    this.#options = options;
    const jsonSchema = options.jsonSchema ?? standardJsonSchema(options.schema);
    this.#info = new SchemaInfo(jsonSchema as JsonSchema | undefined);
    this.#fs = options.fs ?? denoFileSystem;
    this.#order = options.order ?? DEFAULT_LAYER_ORDER;
    for (const kind of this.#order) {
      if (!LAYER_KINDS.has(kind)) {
        throw new ConfigError(`Unknown layer "${kind}" in order`, { code: "bad_option" });
      }
    }
    this.#prefix = options.env === false ? "" : options.env?.prefix ?? "APP";
    this.#debounceMs = options.debounce === undefined
      ? 50
      : typeof options.debounce === "number"
      ? options.debounce
      : parseDuration(options.debounce);
    const defaults = new DefaultsSource(options.defaults);
    this.#env = new EnvSource({
      info: this.#info,
      enabled: options.env !== false,
      prefix: this.#prefix,
      vars: options.env === false ? undefined : options.env?.vars,
      strict: options.env !== false && options.env?.strict === true,
      logger: () => this.#logger(),
      fs: this.#secretFs,
    });
    const args = this.#argsOptions();
    this.#flags = new FlagsSource(this.#info, args.argv, {
      profile: args.profileFlag === false || options.profile === false
        ? undefined
        : args.profileFlag ?? "profile",
      config: args.configFlag === false ? undefined : args.configFlag ?? "config",
      aliases: args.aliases ?? {},
    });
    // The profile: the option, else the flag, else the variable.
    this.#profile = typeof options.profile === "string"
      ? options.profile
      : options.profile === false
      ? undefined
      : this.#flags.profile ??
        (this.#prefix === "" ? undefined : this.#env.vars()[`${this.#prefix}_PROFILE`]);
    this.#files = new FileSource(this.#fs, () => ({
      files: options.files,
      configDir: options.configDir,
      profile: this.#profile,
      configFiles: this.#flags.configFiles,
    }), this.#debounceMs);
    this.#reporting.set(defaults, () => Promise.resolve(defaults.read()));
    this.#reporting.set(this.#files, (issues) => this.#files.read(issues));
    this.#reporting.set(this.#env, (issues) => this.#env.read(issues));
    this.#reporting.set(this.#flags, (issues) => Promise.resolve(this.#flags.read(issues)));
    // The options are sugar over this list; a user's own sources join it last.
    this.#sources = [
      defaults,
      this.#files,
      this.#env,
      this.#flags,
      ...(options.remote ?? []),
      ...(options.sources ?? []),
    ];
    const names = {
      env: options.env !== false,
      prefix: this.#prefix,
      profile: options.profile,
      args: options.args === undefined ? undefined : this.#argsOptions(),
    };
    checkNameCollisions(this.#info, names);
    checkReservedNames(this.#info, names);
  }

  static {
    // createConfig() may start a Config; nothing else can.
    startConfig = (config) => config.#start();
  }

  /** Loads every layer; called once by {@linkcode createConfig}. */
  async #start(): Promise<void> {
    const unreachable: number[] = [];
    const found = this.#sources.map((): ConfigIssue[] => []);
    this.#readLayers = this.#sources.map(() => undefined);
    this.#sourceLayers = this.#sources.map(() => undefined);
    await Promise.all(this.#sources.map(async (source, index) => {
      const read = await this.#load(source, found[index]!, "start");
      if (read === "unreachable") unreachable.push(index);
      if (read === undefined || read === "unreachable") return;
      this.#readLayers[index] = read;
      this.#sourceLayers[index] = await this.#resolve(read, found[index]!);
    }));
    const issues = found.flat(); // in the sources' order, whichever finished first
    if (issues.length > 0) throw issuesError(issues, "Cannot load configuration");
    this.#state = (await this.#compute(undefined)).next;
    // Sources unreachable at start keep retrying in the background, with backoff.
    for (const index of unreachable.sort((a, b) => a - b)) this.#watchSource(index);
  }

  /** The current snapshot, deeply frozen. A reload swaps it; it never changes in place. */
  get value(): T {
    return this.#current().value as T;
  }

  /** Whether `--help` or `-h` was on the command line (print {@linkcode Config.help} then). */
  get helpRequested(): boolean {
    return this.#flags.help;
  }

  /** The active profile, if any. */
  get profile(): string | undefined {
    return this.#profile;
  }

  /** Command-line arguments that are not flags. */
  get positionals(): readonly string[] {
    return this.#flags.positionals;
  }

  /**
   * Reads the value at a dotted path, typed from the schema.
   *
   * @param path Such as `"dns.cache.size"`; array items by index (`"upstreams.0.name"`).
   * @returns The value, `undefined` where the path does not exist.
   */
  get<P extends ConfigPath<T>>(path: P): ConfigPathValue<T, P> {
    return readPath(this.#current().value, path) as ConfigPathValue<T, P>;
  }

  /**
   * Says which layer set the value at `path` (`file:line:col`, env variable, flag, remote key,
   * defaults, schema default) and what it overrode.
   *
   * @param path The dotted path.
   * @returns The explanation; `String(explanation)` is one readable line.
   */
  explain(path: ConfigPath<T> | ""): Explanation {
    return explainAt(this.#current(), path);
  }

  /**
   * The configuration as YAML (default) or JSON text.
   *
   * @param options `redact` (default `true`) replaces secrets with `[redacted]`.
   * @returns The text.
   */
  dump(options: DumpOptions = {}): string {
    return dumpAt(this.#current(), "", options);
  }

  /**
   * A live view of the subtree at `path`: `get`, `value`, `explain`, `dump` and `on("change")`
   * always see the latest configuration, from every layer (env and flags included).
   *
   * @param path The subtree.
   * @returns The view.
   */
  sub<P extends ConfigPath<T>>(path: P): ConfigView<NonNullable<ConfigPathValue<T, P>>> {
    return this.#view(path) as ConfigView<NonNullable<ConfigPathValue<T, P>>>;
  }

  /**
   * Adds a listener: `change` gets the diff after every successful reload that changed
   * something; `error` gets every failed reload (the last good configuration stays). With no
   * `error` listener, failures are printed to stderr.
   *
   * @param event `change` or `error`.
   * @param listener The listener.
   * @returns A function that removes the listener.
   */
  on<E extends keyof ConfigEvents<T>>(event: E, listener: ConfigEvents<T>[E]): () => void {
    const set = (event === "change" ? this.#changeListeners : this.#errorListeners) as Set<
      ConfigEvents<T>[E]
    >;
    set.add(listener);
    return () => set.delete(listener);
  }

  /** The `--help` text generated from the schema: flags, types, defaults, descriptions, env names. */
  help(): string {
    const args = this.#options.args;
    return formatHelp(this.#info, {
      prefix: this.#prefix,
      program: this.#options.program ?? "app",
      aliases: args !== undefined && !isArgv(args) ? args.aliases ?? {} : {},
      defaults: this.#sourceLayers.flatMap((layers) => layers ?? [])
        .find((layer) => layer.kind === "defaults")?.tree ?? {},
    });
  }

  /**
   * Starts following changes: every source that can watch — the configuration files (their
   * directories, so editors' rename-on-save and Kubernetes ConfigMap symlink swaps are seen),
   * remote sources, sources of your own — and the secret files read. Idempotent.
   */
  watch(): Promise<void> {
    this.#assertOpen();
    if (this.#watching) return Promise.resolve();
    this.#watching = true;
    this.#watchSecrets();
    this.#sources.forEach((_, index) => this.#watchSource(index));
    return Promise.resolve();
  }

  /**
   * Re-reads every layer (files, environment, remote), validates, and swaps the result in. A
   * watched source that cannot be read keeps its last layers (its watch reports the failure).
   *
   * @returns The changes (empty when nothing changed).
   * @throws {ConfigError} When the new configuration is invalid; the last good one stays.
   */
  reload(): Promise<readonly ConfigChange<T>[]> {
    this.#assertOpen();
    return this.#enqueue(async () => {
      const issues: ConfigIssue[] = [];
      const layers = await this.#reread("reload", issues);
      this.#watchSecrets();
      if (issues.length > 0) throw issuesError(issues, "Cannot reload configuration");
      return await this.#apply("reload()", layers);
    });
  }

  /**
   * Sets a value in the highest layer (`set()`), validates, and swaps the result in.
   *
   * @param path The dotted path.
   * @param value The new value (strings are coerced to the schema's type).
   * @returns The changes.
   * @throws {ConfigError} When the result is invalid; nothing changes then.
   */
  set<P extends ConfigPath<T>>(path: P, value: unknown): Promise<readonly ConfigChange<T>[]> {
    this.#assertOpen();
    return this.#enqueue(() => {
      const segments = splitPath(path);
      const tree = structuredCloneTree(this.#setLayer);
      const coerced = typeof value === "string"
        ? coerce(value, this.#info.nodeAt(segments), this.#info)
        : value;
      setAt(tree, segments, coerced);
      const previous = this.#setLayer;
      const previousLayers = this.#setLayers;
      return this.#apply("set()", undefined, () => {
        this.#setLayer = tree;
        this.#setLayers = [{ kind: "set", name: "set()", tree, origins: setOrigins(tree) }];
      }, () => {
        this.#setLayer = previous;
        this.#setLayers = previousLayers;
      });
    });
  }

  /** Stops watching files and remote sources and waits for them; reads keep working. */
  async [Symbol.asyncDispose](): Promise<void> {
    if (this.#disposed) return;
    this.#disposed = true;
    this.#abort.abort();
    for (const watcher of this.#watchers) watcher.close();
    this.#watchers = [];
    await Promise.allSettled(this.#sourceTasks);
    await this.#queue.catch(() => {});
  }

  // ---- pipeline ----

  #current(): State {
    if (this.#state === undefined) {
      throw new ConfigError("Configuration is not loaded", { code: "disposed" });
    }
    return this.#state;
  }

  #assertOpen() {
    if (this.#disposed) {
      throw new ConfigError("Configuration is disposed", { code: "disposed" });
    }
  }

  #enqueue<R>(task: () => Promise<R> | R): Promise<R> {
    const run = this.#queue.then(task, task);
    this.#queue = run.catch(() => {});
    return run;
  }

  /** Runs the pipeline over the layers in order. */
  #compute(previous: State | undefined): Promise<PipelineResult> {
    const ordered: Layer[] = [];
    for (const kind of this.#order) {
      for (const layers of this.#sourceLayers) {
        for (const layer of layers ?? []) if (layer.kind === kind) ordered.push(layer);
      }
      if (kind === "set") ordered.push(...this.#setLayers);
    }
    return runPipeline(ordered, previous, {
      schema: this.#options.schema,
      info: this.#info,
      arrays: this.#options.arrays,
      strict: this.#options.strict,
      envPrefix: this.#options.env === false ? undefined : this.#prefix,
    });
  }

  /**
   * Puts new source layers (and any other `update`) in place, validates, swaps, emits; reverts
   * when invalid.
   */
  async #apply(
    cause: string,
    layers: SourceLayers | undefined,
    update?: () => void,
    revert?: () => void,
  ): Promise<readonly ConfigChange<T>[]> {
    const saved = { read: this.#readLayers, resolved: this.#sourceLayers };
    if (layers !== undefined) {
      this.#readLayers = layers.read;
      this.#sourceLayers = layers.resolved;
    }
    update?.();
    const previous = this.#current();
    let result: PipelineResult;
    try {
      result = await this.#compute(previous);
    } catch (error) {
      this.#readLayers = saved.read;
      this.#sourceLayers = saved.resolved;
      revert?.();
      throw error;
    }
    const { next } = result;
    const changes = result.changes as readonly ConfigChange<T>[];
    this.#state = next;
    if (changes.length > 0) this.#emitChange(previous.value as T, next.value as T, changes, cause);
    return changes;
  }

  // ---- sources ----

  #argsOptions(): ArgsOptions {
    const args = this.#options.args;
    if (args === undefined) return { argv: [] };
    return isArgv(args) ? { argv: args } : args;
  }

  #logger(): Logger {
    return this.#options.logger ?? (this.#defaultLogger ??= createLogger());
  }

  async #secrets(layer: Layer, issues: ConfigIssue[]): Promise<Layer> {
    const vars = this.#env.vars();
    const result = await resolveSecretReferences(layer, (name) => vars[name], this.#secretFs);
    issues.push(...result.issues);
    return result.layer;
  }

  /**
   * Loads one source: its layers as read. A source that reports every problem (the built-in
   * ones) adds them all to `issues`; another one's failure is an issue when it is required or
   * does not parse, else the source is `"unreachable"` (at start) or keeps its last layers
   * (`undefined`, later); a watched one keeps them whatever the failure, as its watch reports it.
   */
  async #load(
    source: Source,
    issues: ConfigIssue[],
    when: "start" | "reload" | "watched",
  ): Promise<readonly SourceLayer[] | "unreachable" | undefined> {
    const reporting = this.#reporting.get(source);
    if (reporting !== undefined) return layersOf(await reporting(issues));
    try {
      return layersOf(await source.load(this.#sourceContext()));
    } catch (error) {
      if (when === "watched") return undefined;
      if (when === "reload") {
        if (source.required) issues.push({ path: "", message: asConfigError(error).message });
        return undefined;
      }
      const configError = asConfigError(error, `Remote source ${source.name}`);
      if (!source.required && configError.code !== "parse") return "unreachable";
      issues.push({
        path: "",
        message: `${configError.message}${source.required ? " (required source)" : ""}`,
      });
      return undefined;
    }
  }

  /**
   * The layers of every source after reading them again (`reload`), or after a secret file
   * changed (`secrets`): then the sources that no watch keeps current are read again, and the
   * others' last layers have their secret references resolved again. A source that failed
   * without it being an issue keeps its last layers.
   */
  async #reread(why: "reload" | "secrets", issues: ConfigIssue[]): Promise<SourceLayers> {
    const read = [...this.#readLayers];
    const resolved = [...this.#sourceLayers];
    const found = this.#sources.map((): ConfigIssue[] => []);
    await Promise.all(this.#sources.map(async (source, index) => {
      const watched = this.#sourcesWatched.has(index);
      const layers = why === "secrets" && watched
        ? read[index]
        : await this.#load(source, found[index]!, watched ? "watched" : "reload");
      if (layers === undefined || layers === "unreachable") return;
      read[index] = layers;
      resolved[index] = await this.#resolve(layers, found[index]!);
    }));
    issues.push(...found.flat()); // in the sources' order, whichever finished first
    return { read, resolved };
  }

  /** Resolves the secret references of layers, keeping each one's `coerce`. */
  async #resolve(
    layers: readonly SourceLayer[],
    issues: ConfigIssue[],
  ): Promise<readonly SourceLayer[]> {
    const resolved: SourceLayer[] = [];
    for (const layer of layers) {
      const secret = await this.#secrets(layer, issues);
      resolved.push(layer.coerce === undefined ? secret : { ...secret, coerce: layer.coerce });
    }
    return resolved;
  }

  /**
   * Reloads after a secret file in `dir` changed: any source may refer to it. The change's cause
   * names the secret files in that directory whose contents changed (a Kubernetes `..data` swap
   * only touches `..` names: the timestamped directory, `..data_tmp`, `..data`), else the event's
   * path.
   */
  #reloadSecrets(dir: string, relevant: string): Promise<void> {
    return this.#enqueue(async () => {
      if (this.#disposed) return;
      const issues: ConfigIssue[] = [];
      const before = new Map(this.#secretTexts);
      const layers = await this.#reread("secrets", issues);
      const changed = changedIn(dir, before, this.#secretTexts);
      const cause = `secret file ${changed.length > 0 ? changed.join(", ") : relevant}`;
      this.#watchSecrets();
      if (issues.length > 0) {
        this.#emitError(issuesError(issues, "Cannot reload configuration"));
        return;
      }
      try {
        await this.#apply(cause, layers);
      } catch (error) {
        this.#emitError(asConfigError(error));
      }
    });
  }

  /**
   * Watches the directories of the files read for secrets (once watching), so that a rotated
   * secret (rewritten, renamed over, or a Kubernetes Secret's `..data` swap) reloads the layers
   * that can hold one.
   */
  #watchSecrets(): void {
    if (!this.#watching || this.#disposed) return;
    for (const path of this.#secretFiles) {
      const dir = dirOf(path);
      const known = this.#secretDirs.get(dir);
      if (known !== undefined) {
        known.add(baseOf(path));
        continue;
      }
      const names = new Set([baseOf(path)]);
      this.#secretDirs.set(dir, names);
      const watcher = watchFilesIn(
        this.#fs,
        dir,
        this.#debounceMs,
        (name) => names.has(name),
        (relevant) => void this.#reloadSecrets(dir, relevant),
      );
      if (watcher !== undefined) this.#watchers.push(watcher);
    }
  }

  #sourceContext(): SourceContext {
    return { fetch: this.#options.fetch ?? fetch, signal: this.#abort.signal, fs: this.#fs };
  }

  /**
   * Follows a source with a `watch()` (the same way for files, etcd, Consul and a user's own);
   * one without is read at start and by `reload()`.
   */
  #watchSource(index: number) {
    if (this.#sourcesWatched.has(index) || this.#disposed) return;
    const source = this.#sources[index];
    if (source?.watch === undefined) return;
    this.#sourcesWatched.add(index);
    const task = source.watch(
      this.#sourceContext(),
      (loaded, cause) => {
        void this.#enqueue(async () => {
          if (this.#disposed) return;
          const issues: ConfigIssue[] = [];
          const read = layersOf(loaded);
          const resolved = await this.#resolve(read, issues);
          this.#watchSecrets();
          if (issues.length > 0) {
            this.#emitError(issuesError(issues, `Cannot apply ${cause ?? source.name}`));
            return;
          }
          try {
            await this.#apply(cause ?? source.name, {
              read: this.#readLayers.with(index, read),
              resolved: this.#sourceLayers.with(index, resolved),
            });
          } catch (error) {
            this.#emitError(asConfigError(error));
          }
        });
      },
      (error) => this.#emitError(error),
    ).catch((error) => {
      if (!this.#disposed) this.#emitError(asConfigError(error, `Remote source ${source.name}`));
    });
    this.#sourceTasks.push(task);
  }

  // ---- events ----

  #emitChange(previous: T, current: T, changes: readonly ConfigChange<T>[], cause: string) {
    const event: ConfigChangeEvent<T> = {
      changes,
      previous,
      current,
      cause,
      changed: (path) => changes.some((c) => overlaps(c.path as string, path)),
    };
    for (const listener of this.#changeListeners) {
      try {
        listener(event);
      } catch (error) {
        this.#emitError(
          new ConfigError(`A change listener threw: ${(error as Error).message}`, {
            code: "invalid",
            cause: error,
          }),
        );
      }
    }
  }

  #emitError(error: ConfigError) {
    if (this.#disposed) return;
    if (this.#errorListeners.size === 0) {
      console.error(`config: ${error.message}`);
      return;
    }
    for (const listener of this.#errorListeners) {
      try {
        listener(error);
      } catch {
        // An error listener that throws must not stop the others.
      }
    }
  }

  // ---- reading helpers shared with views ----

  #view(prefix: string): ConfigView<unknown> {
    const full = (path: string) => (path === "" ? prefix : childPath(prefix, path));
    const view: ConfigView<unknown> = {
      get: ((path: string) => getAt(this.#current().value, splitPath(full(path)))) as never,
      explain: ((path: string) => explainAt(this.#current(), full(path))) as never,
      dump: (options: DumpOptions = {}) => dumpAt(this.#current(), prefix, options),
      sub: ((path: string) => this.#view(full(path))) as never,
      on: ((event: "change" | "error", listener: (arg: unknown) => void) => {
        if (event === "error") return this.on("error", listener as never);
        return this.on("change", (event) => {
          const segments = splitPath(prefix);
          const previous = getAt(event.previous, segments);
          const current = getAt(event.current, segments);
          const changes = diffConfig(previous, current);
          if (changes.length === 0) return;
          listener({
            changes,
            previous,
            current,
            cause: event.cause,
            changed: (path: string) => changes.some((c) => overlaps(c.path, path)),
          });
        });
      }) as never,
      get value() {
        return undefined;
      },
    };
    Object.defineProperty(view, "value", {
      get: () => getAt(this.#current().value, splitPath(prefix)),
      enumerable: true,
    });
    return view;
  }
}

// ---- small helpers ----

/** A source's layer, or layers, as an array. */
function layersOf(loaded: SourceLayer | readonly SourceLayer[]): readonly SourceLayer[] {
  return Array.isArray(loaded) ? loaded : [loaded as SourceLayer];
}

function isArgv(args: readonly string[] | ArgsOptions): args is readonly string[] {
  return Array.isArray(args);
}

/** Whether a change at `changed` touches `path` (same, below or above). */
function overlaps(changed: string, path: string): boolean {
  return changed === path || path === "" || changed === "" ||
    changed.startsWith(`${path}.`) || path.startsWith(`${changed}.`);
}

function structuredCloneTree(value: unknown): Record<string, unknown> {
  const out = mapTree(value, (leaf) => leaf);
  return isPlainObject(out) ? out : {};
}

function setOrigins(_tree: Record<string, unknown>): Map<string, Origin> {
  return new Map([["", { layer: "set" }]]);
}
