/**
 * Environment variable and flag names derived from schema paths.
 *
 * @module
 */

function words(segment: string): string[] {
  return segment
    .replace(/([a-z0-9])([A-Z])/g, "$1 $2")
    .replace(/([A-Z]+)([A-Z][a-z])/g, "$1 $2")
    .split(/[^A-Za-z0-9]+/)
    .filter((w) => w !== "");
}

/**
 * The environment variable for a path: prefix, then the segments in upper snake case joined by
 * `__` (`["dns", "cache", "maxTtl"]` with prefix `APP` → `APP_DNS__CACHE__MAX_TTL`).
 *
 * @param prefix The application prefix such as `APP`, or `""` for none.
 * @param segments The path.
 * @returns The variable name.
 *
 * @example
 * ```ts
 * import { envVarName } from "@triad/config";
 * import assert from "node:assert/strict";
 *
 * assert.equal(envVarName("APP", ["dns", "cache", "size"]), "APP_DNS__CACHE__SIZE");
 * assert.equal(envVarName("APP", ["cache", "maxTtl"]), "APP_CACHE__MAX_TTL");
 * ```
 */
export function envVarName(prefix: string, segments: readonly string[]): string {
  const body = segments.map((s) => words(s).join("_").toUpperCase()).join("__");
  return prefix === "" ? body : `${prefix}_${body}`;
}

/**
 * The command-line flag for a path: segments in kebab case joined by dots
 * (`["dns", "cache", "maxTtl"]` → `--dns.cache.max-ttl`).
 *
 * @param segments The path.
 * @returns The flag, with its leading `--`.
 *
 * @example
 * ```ts
 * import { flagName } from "@triad/config";
 * import assert from "node:assert/strict";
 *
 * assert.equal(flagName(["dns", "cache", "size"]), "--dns.cache.size");
 * assert.equal(flagName(["cache", "maxTtl"]), "--cache.max-ttl");
 * ```
 */
export function flagName(segments: readonly string[]): string {
  return `--${segments.map((s) => words(s).join("-").toLowerCase()).join(".")}`;
}
