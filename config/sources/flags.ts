/**
 * The command-line layer: one flag per schema leaf, names derived from the schema.
 *
 * @module
 */
import { issuesError } from "../errors.ts";
import type { ConfigIssue } from "../errors.ts";
import type { Layer } from "../layer.ts";
import type { Source, SourceLayer } from "../source.ts";
import { flagName } from "../names.ts";
import type { Origin } from "../origin.ts";
import { getAt, setAt } from "../_path.ts";
import { coerce } from "../_coerce.ts";
import { closest, type JsonSchema, type SchemaInfo } from "../_schema_info.ts";

/** What the command line said. */
interface FlagsResult {
  readonly layer: Layer;
  readonly issues: ConfigIssue[];
  readonly help: boolean;
  readonly profile: string | undefined;
  readonly configFiles: string[];
  readonly positionals: string[];
}

/** Special flags that are not configuration values. */
interface FlagNames {
  /** Flag that names the profile (without `--`), `undefined` for none. */
  readonly profile: string | undefined;
  /** Flag that names configuration files (without `--`), `undefined` for none. */
  readonly config: string | undefined;
  /** Extra names for paths (without `--`): `{ listen: "server.listen" }`. */
  readonly aliases: Readonly<Record<string, string>>;
}

/** Parses `--dns.cache.size=10`, `--dns.cache.size 10`, `--flag`, `--no-flag`, repeated arrays. */
export function buildFlagsLayer(
  info: SchemaInfo,
  argv: readonly string[],
  names: FlagNames,
): FlagsResult {
  const byFlag = new Map<string, { segments: string[]; node: JsonSchema }>();
  // Deriving every flag name costs time on big schemas: only when there are flags to match.
  const hasFlags = argv.some((arg) => arg.startsWith("--") && arg !== "--");
  for (const leaf of hasFlags ? info.leaves() : []) {
    const entry = { segments: [...leaf.segments], node: leaf.node };
    byFlag.set(flagName(leaf.segments), entry);
    byFlag.set(`--${leaf.segments.join(".")}`, entry);
  }
  for (const [alias, path] of Object.entries(names.aliases)) {
    const segments = path.split(".");
    byFlag.set(`--${alias}`, { segments, node: info.nodeAt(segments) ?? {} });
  }
  const tree: Record<string, unknown> = {};
  const origins = new Map<string, Origin>();
  const issues: ConfigIssue[] = [];
  const positionals: string[] = [];
  const configFiles: string[] = [];
  let help = false;
  let profile: string | undefined;
  const open = info.root === undefined;

  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === "--") {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (arg === "-h" || arg === "--help") {
      help = true;
      continue;
    }
    if (!arg.startsWith("--") || arg === "--") {
      positionals.push(arg);
      continue;
    }
    const eq = arg.indexOf("=");
    let flag = eq === -1 ? arg : arg.slice(0, eq);
    const inline: string | undefined = eq === -1 ? undefined : arg.slice(eq + 1);
    const takeValue = (): string | undefined => {
      if (inline !== undefined) return inline;
      const next = argv[i + 1];
      if (next === undefined || (next.startsWith("--") && next.length > 2)) return undefined;
      i++;
      return next;
    };
    if (names.profile !== undefined && flag === `--${names.profile}`) {
      profile = takeValue();
      continue;
    }
    if (names.config !== undefined && flag === `--${names.config}`) {
      const file = takeValue();
      if (file !== undefined) configFiles.push(file);
      continue;
    }
    let entry = byFlag.get(flag);
    let negated = false;
    if (entry === undefined && flag.startsWith("--no-")) {
      const positive = byFlag.get(`--${flag.slice(5)}`);
      if (positive !== undefined && info.typeOf(positive.node) === "boolean") {
        entry = positive;
        negated = true;
        flag = `--${flag.slice(5)}`;
      }
    }
    if (entry === undefined && open) {
      const segments = flag.slice(2).split(".");
      entry = { segments, node: {} };
    }
    if (entry === undefined) {
      const hint = closest(flag, byFlag.keys());
      issues.push({
        path: "",
        message: `unknown flag ${flag}${hint ? `, did you mean ${hint}?` : ""}`,
        origin: { layer: "flags", flag },
      });
      if (inline === undefined && argv[i + 1] !== undefined && !argv[i + 1]!.startsWith("--")) i++;
      continue;
    }
    const type = info.typeOf(entry.node);
    const path = entry.segments.join(".");
    const origin: Origin = { layer: "flags", flag };
    let value: unknown;
    if (type === "boolean") {
      if (negated) value = false;
      else if (inline !== undefined) value = coerce(inline, entry.node, info);
      else if (/^(true|false)$/.test(argv[i + 1] ?? "")) value = argv[++i] === "true";
      else value = true;
    } else {
      const text = takeValue();
      if (text === undefined) {
        issues.push({ path, message: `flag ${flag} needs a value`, origin });
        continue;
      }
      value = coerce(text, entry.node, info);
      if (type === "array") {
        const previous = getAt(tree, entry.segments);
        if (Array.isArray(previous) && Array.isArray(value)) value = [...previous, ...value];
      }
    }
    setAt(tree, entry.segments, value);
    origins.set(path, origin);
  }
  return {
    layer: { kind: "flags", name: "flags", tree, origins },
    issues,
    help,
    profile,
    configFiles,
    positionals,
  };
}

/**
 * The command line as a {@linkcode Source}: one flag per schema leaf. Reading it also says
 * whether `--help` was given, the profile and `--config` files it names, and the positionals.
 */
export class FlagsSource implements Source {
  readonly name = "flags";
  readonly #info: SchemaInfo;
  readonly #argv: readonly string[];
  readonly #names: FlagNames;
  /** What the last read found besides the layer. */
  help = false;
  profile: string | undefined;
  configFiles: string[] = [];
  positionals: string[] = [];

  constructor(info: SchemaInfo, argv: readonly string[], names: FlagNames) {
    this.#info = info;
    this.#argv = argv;
    this.#names = names;
    // The command line is known now: the profile and `--config` files it names are available to
    // the other sources before any of them loads (`load()` reports the problems).
    this.read([]);
  }

  /** @throws {ConfigError} Naming every unknown flag and bad value. */
  load(): Promise<SourceLayer> {
    const issues: ConfigIssue[] = [];
    const layer = this.read(issues);
    if (issues.length > 0) return Promise.reject(issuesError(issues, "Bad command line"));
    return Promise.resolve(layer);
  }

  /** Reads the layer, adding every problem to `issues`. */
  read(issues: ConfigIssue[]): Layer {
    const result = buildFlagsLayer(this.#info, this.#argv, this.#names);
    issues.push(...result.issues);
    this.help = result.help;
    this.profile = result.profile;
    this.configFiles = result.configFiles;
    this.positionals = result.positionals;
    return result.layer;
  }
}
