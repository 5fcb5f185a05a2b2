/**
 * Checks of the names derived from a schema, made once when a configuration is created: keys whose
 * flag or variable is reserved, and keys that share a variable.
 *
 * @module
 */
import type { ArgsOptions } from "./config.ts";
import { ConfigError } from "./errors.ts";
import { envVarName, flagName } from "./names.ts";
import type { SchemaInfo } from "./_schema_info.ts";

/** The options the checks depend on. */
interface NameOptions {
  /** Whether there is an environment layer. */
  readonly env: boolean;
  /** The variable prefix. */
  readonly prefix: string;
  /** The `profile` option. */
  readonly profile: string | false | undefined;
  /** The command line's options, when there is one. */
  readonly args: ArgsOptions | undefined;
}

/**
 * Fails when a key's (or an alias's) flag or variable is one the configuration itself reads:
 * `--config`, `--profile`, `<PREFIX>_PROFILE`, `--help`; the key could never be set through it.
 */
export function checkReservedNames(info: SchemaInfo, names: NameOptions): void {
  type Purpose = "config" | "profile" | "help";
  const reservedFlags = new Map<string, Purpose>();
  const args = names.args;
  if (args !== undefined) {
    reservedFlags.set("--help", "help");
    if (args.configFlag !== false) {
      reservedFlags.set(`--${args.configFlag ?? "config"}`, "config");
    }
    if (args.profileFlag !== false && names.profile !== false) {
      reservedFlags.set(`--${args.profileFlag ?? "profile"}`, "profile");
    }
  }
  const profileVar = names.profile === undefined && names.env &&
      names.prefix !== ""
    ? `${names.prefix}_PROFILE`
    : undefined;
  const hits = new Map<string, { purpose: Purpose; alias: boolean; names: string[] }>();
  const hit = (subject: string, alias: boolean, purpose: Purpose, name: string) => {
    const entry = hits.get(subject) ?? { purpose, alias, names: [] };
    entry.names.push(name);
    hits.set(subject, entry);
  };
  for (const { segments } of info.leaves()) {
    const path = segments.join(".");
    for (const flag of new Set([flagName(segments), `--${path}`])) {
      const purpose = reservedFlags.get(flag);
      if (purpose !== undefined) hit(`Key ${path}`, false, purpose, `flag ${flag}`);
    }
    if (profileVar !== undefined && envVarName(names.prefix, segments) === profileVar) {
      hit(`Key ${path}`, false, "profile", `environment variable ${profileVar}`);
    }
  }
  for (const [alias, path] of Object.entries(args?.aliases ?? {})) {
    const purpose = reservedFlags.get(`--${alias}`);
    if (purpose !== undefined) {
      hit(`Alias --${alias} (for ${path})`, true, purpose, `flag --${alias}`);
    }
  }
  if (hits.size === 0) return;
  const lines = [...hits].map(([subject, { purpose, alias, names }]) => {
    const several = names.length > 1;
    const what = names.join(" and ");
    const does = purpose === "help"
      ? "asks for the help text"
      : `${several ? "name" : "names"} ${
        purpose === "profile" ? "the profile" : "configuration files"
      }`;
    const free = purpose === "help"
      ? ""
      : `, or free ${several ? "them" : "it"} with ${
        purpose === "config"
          ? "args.configFlag (another name, or false)"
          : names.every((n) => n.startsWith("flag "))
          ? "args.profileFlag (another name, or false)"
          : names.some((n) => n.startsWith("flag "))
          ? "args.profileFlag and the profile option (a name, or false)"
          : "the profile option (a name, or false)"
      }`;
    return `${subject} collides with the reserved ${what}, which ${does}: rename the ${
      alias ? "alias" : "key"
    }${free}`;
  });
  throw new ConfigError(
    lines.length === 1
      ? lines[0]!
      : `Schema keys collide with reserved names:\n  ${lines.join("\n  ")}`,
    { code: "bad_option" },
  );
}

/** Fails when two keys map to the same environment variable. */
export function checkNameCollisions(info: SchemaInfo, names: NameOptions): void {
  if (!names.env) return;
  const seen = new Map<string, string>();
  for (const leaf of info.leaves()) {
    const name = envVarName(names.prefix, leaf.segments);
    const path = leaf.segments.join(".");
    const other = seen.get(name);
    if (other !== undefined) {
      throw new ConfigError(
        `Keys ${other} and ${path} both map to environment variable ${name}; rename one`,
        { code: "bad_option" },
      );
    }
    seen.set(name, path);
  }
}
