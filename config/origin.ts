/**
 * Where a configuration value came from.
 *
 * @module
 */

/** The layers a value can come from, lowest priority first in the default order. */
export type LayerName =
  | "defaults"
  | "files"
  | "profile"
  | "configDir"
  | "remote"
  | "env"
  | "flags"
  | "set";

/** Where one value came from: a layer, and within it a file position, a variable, a flag or a key. */
export type Origin =
  | { readonly layer: "defaults" }
  | { readonly layer: "schema" }
  | { readonly layer: "set" }
  | {
    readonly layer: "files" | "profile" | "configDir";
    readonly file: string;
    readonly line: number;
    readonly column: number;
  }
  | {
    readonly layer: "remote";
    readonly source: string;
    readonly key: string;
    readonly revision?: number;
  }
  | { readonly layer: "env"; readonly name: string; readonly file?: string }
  | { readonly layer: "flags"; readonly flag: string };

/**
 * Formats an origin for people: `config/app.yaml:3:5`, `env APP_DNS__CACHE__SIZE`,
 * `flag --dns.cache.size`, `etcd key /app/dns/cache/size (revision 12)`, `defaults`.
 *
 * @param origin The origin.
 * @returns One short phrase.
 *
 * @example
 * ```ts
 * import { formatOrigin } from "@triad/config";
 * import assert from "node:assert/strict";
 *
 * assert.equal(formatOrigin({ layer: "env", name: "APP_PORT" }), "env APP_PORT");
 * assert.equal(formatOrigin({ layer: "files", file: "app.yaml", line: 3, column: 5 }), "app.yaml:3:5");
 * ```
 */
export function formatOrigin(origin: Origin): string {
  switch (origin.layer) {
    case "defaults":
      return "defaults";
    case "schema":
      return "schema default";
    case "set":
      return "set()";
    case "files":
    case "profile":
    case "configDir":
      return `${origin.file}:${origin.line}:${origin.column}`;
    case "remote":
      return `${origin.source} key ${origin.key}${
        origin.revision === undefined ? "" : ` (revision ${origin.revision})`
      }`;
    case "env":
      return origin.file === undefined
        ? `env ${origin.name}`
        : `env ${origin.name} (file ${origin.file})`;
    case "flags":
      return `flag ${origin.flag}`;
  }
}
