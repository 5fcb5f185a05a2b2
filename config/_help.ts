/**
 * Help text formatting shared by `helpText()` and `Config.help()`.
 *
 * @module
 */
import { envVarName, flagName } from "./names.ts";
import { getAt } from "./_path.ts";
import type { SchemaInfo } from "./_schema_info.ts";

/** Formats help text from schema information. */
export function formatHelp(
  info: SchemaInfo,
  options: {
    program: string;
    prefix: string;
    aliases: Readonly<Record<string, string>>;
    defaults: Record<string, unknown>;
  },
): string {
  const rows: [string, string][] = [];
  const aliasesOf = new Map<string, string[]>();
  for (const [alias, path] of Object.entries(options.aliases)) {
    aliasesOf.set(path, [...(aliasesOf.get(path) ?? []), `--${alias}`]);
  }
  for (const leaf of info.leaves()) {
    const path = leaf.segments.join(".");
    const type = info.typeOf(leaf.node);
    const enumValues = leaf.node["enum"];
    const named = leaf.node["x-triad-type"]; // a schema piece's own type name, such as "duration"
    const placeholder = typeof named === "string"
      ? named
      : Array.isArray(enumValues)
      ? enumValues.join("|")
      : type === "unknown"
      ? "value"
      : type === "array"
      ? `${info.typeOf(info.child(leaf.node, 0))}[,…]`
      : type === "object"
      ? "json"
      : type;
    const flags = [flagName(leaf.segments), ...(aliasesOf.get(path) ?? [])].join(", ");
    const left = type === "boolean" ? flags : `${flags} <${placeholder}>`;
    const notes: string[] = [];
    const fromDefaults = getAt(options.defaults, leaf.segments);
    const fallback = fromDefaults !== undefined ? fromDefaults : leaf.node["default"];
    if (fallback !== undefined) notes.push(`default ${JSON.stringify(fallback)}`);
    notes.push(`env ${envVarName(options.prefix, leaf.segments)}`);
    if (leaf.node["writeOnly"] === true) notes.push("secret");
    const description = typeof leaf.node["description"] === "string"
      ? `${leaf.node["description"]} `
      : "";
    rows.push([left, `${description}(${notes.join("; ")})`]);
  }
  rows.push(["--profile <name>", "Load <name>.<profile>.yaml over the configuration files"]);
  rows.push(["--config <file>", "Read this configuration file (repeatable)"]);
  rows.push(["-h, --help", "Show this help"]);
  const width = Math.min(40, Math.max(...rows.map(([left]) => left.length)) + 2);
  const lines = rows.map(([left, right]) =>
    left.length >= width
      ? `  ${left}\n  ${" ".repeat(width)}${right}`
      : `  ${left.padEnd(width)}${right}`
  );
  return `Usage: ${options.program} [flags]\n\nFlags:\n${lines.join("\n")}\n`;
}
