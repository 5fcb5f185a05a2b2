/**
 * `duration()`: a schema piece for Go-style durations (`"300ms"`, `"1m30s"`).
 *
 * @module
 */
import { parseDuration } from "@triad/core";
import { z } from "zod";
import type { ZodSchema } from "./zod_schema.ts";

/**
 * What a duration looks like, for editors and validators that read the exported JSON Schema
 * (`toJsonSchema()`); {@linkcode duration} itself checks with `parseDuration()` from
 * `@triad/core`.
 */
const DURATION_PATTERN = String.raw`^\s*(0|((\d+(\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h|d))+)\s*$`;

/**
 * A zod schema piece for a Go-style duration (`"300ms"`, `"5s"`, `"1m30s"`, `"1.5h"`; units `ns`,
 * `us`, `ms`, `s`, `m`, `h`, `d`; a bare `"0"`), read as a string from files, environment
 * variables and flags, and given to the program as milliseconds. A bad duration is reported like
 * every other bad value, with its key and where it came from (`app.yaml:3:3: timeout: expected
 * duration, got "5 sec" (invalid duration "5 sec": unexpected "5 sec" at offset 0)`), where
 * `z.string().transform(parseDuration)` would throw a bare error naming neither.
 *
 * Give a default as text with `.prefault("5s")` (zod's `.default()` takes the output, a number).
 *
 * @returns The schema: input `string`, output `number` (milliseconds).
 *
 * @example
 * ```ts
 * import { ConfigError, createConfig, duration } from "@triad/config";
 * import { z } from "zod";
import type { ZodSchema } from "./zod_schema.ts";
 * import assert from "node:assert/strict";
 *
 * const schema = z.object({ timeout: duration().prefault("2s"), idle: duration().optional() });
 * await using config = await createConfig({
 *   schema,
 *   env: { prefix: "APP", vars: { APP_IDLE: "1m30s" } },
 * });
 * assert.equal(config.get("timeout"), 2_000);
 * assert.equal(config.get("idle"), 90_000);
 *
 * await assert.rejects(
 *   createConfig({ schema, env: { prefix: "APP", vars: { APP_TIMEOUT: "5 sec" } } }),
 *   (error: unknown) =>
 *     error instanceof ConfigError &&
 *     error.message.startsWith('env APP_TIMEOUT: timeout: expected duration, got "5 sec"'),
 * );
 * ```
 */
export function duration(): ZodSchema<number, string> {
  return z.string()
    .meta({ "x-triad-type": "duration", pattern: DURATION_PATTERN })
    .transform((text, context) => {
      try {
        return parseDuration(text);
      } catch (error) {
        context.issues.push({ code: "custom", message: (error as Error).message, input: text });
        return z.NEVER;
      }
    });
}
