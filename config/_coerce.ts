/**
 * Coercion of strings (environment variables, flags, etcd/Consul keys) to the schema's types.
 *
 * @module
 */
import type { JsonSchema, SchemaInfo } from "./_schema_info.ts";

const TRUE = new Set(["true", "1", "yes", "on", "y"]);
const FALSE = new Set(["false", "0", "no", "off", "n"]);

/**
 * Converts `text` to the type the schema expects at that node. A string that does not convert is
 * returned unchanged, so validation reports it with its origin.
 */
export function coerce(text: string, node: JsonSchema | undefined, info: SchemaInfo): unknown {
  const types = info.typesOf(node);
  const trimmed = text.trim();
  for (const type of types) {
    switch (type) {
      case "integer":
      case "number": {
        if (
          trimmed !== "" && /^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$|^0x[0-9a-fA-F]+$/.test(trimmed)
        ) {
          return Number(trimmed);
        }
        break;
      }
      case "boolean": {
        const lower = trimmed.toLowerCase();
        if (TRUE.has(lower)) return true;
        if (FALSE.has(lower)) return false;
        break;
      }
      case "null":
        if (trimmed === "null" || trimmed === "") return null;
        break;
      case "array": {
        if (trimmed.startsWith("[")) {
          try {
            return JSON.parse(trimmed);
          } catch {
            return text;
          }
        }
        const items = node === undefined ? undefined : info.child(node, 0);
        if (trimmed === "") return [];
        return trimmed.split(",").map((part) => coerce(part.trim(), items, info));
      }
      case "object": {
        if (trimmed.startsWith("{")) {
          try {
            return JSON.parse(trimmed);
          } catch {
            return text;
          }
        }
        break;
      }
      case "string":
        return text;
      case "unknown":
        break;
    }
  }
  return text;
}
