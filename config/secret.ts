/**
 * A secret configuration value that never prints itself.
 *
 * @module
 */

import { z } from "zod";
import type { ZodSchema } from "./zod_schema.ts";

const REDACTED = "[redacted]";
const values = new WeakMap<Secret, string>();

/**
 * A secret string (a password, a token) that is redacted in `toString`, `JSON.stringify`,
 * `Deno.inspect`, `console.log`, `explain()` and `dump()`. Read it with {@linkcode Secret.reveal}.
 *
 * `${env:NAME}` and `${file:/run/secrets/x}` references in any layer, and `<VAR>_FILE`
 * environment variables, resolve into a `Secret`. To get a `Secret` from a zod schema field, use
 * {@linkcode secret}.
 *
 * @example
 * ```ts
 * import { Secret } from "@triad/config";
 * import assert from "node:assert/strict";
 *
 * const password = new Secret("hunter2");
 * assert.equal(String(password), "[redacted]");
 * assert.equal(JSON.stringify({ password }), '{"password":"[redacted]"}');
 * assert.ok(!Deno.inspect(password).includes("hunter2"));
 * assert.equal(password.reveal(), "hunter2");
 * ```
 */
export class Secret {
  /**
   * Wraps a secret string.
   *
   * @param value The secret.
   */
  constructor(value: string) {
    values.set(this, value);
    Object.freeze(this);
  }

  /**
   * Returns the secret itself.
   *
   * @returns The secret string.
   */
  reveal(): string {
    return values.get(this)!;
  }

  /**
   * Returns whether two secrets hold the same string.
   *
   * @param other The other secret.
   * @returns `true` when equal.
   */
  equals(other: Secret): boolean {
    return values.get(this) === values.get(other);
  }

  /** Returns `"[redacted]"`. */
  toString(): string {
    return REDACTED;
  }

  /** Returns `"[redacted]"`. */
  toJSON(): string {
    return REDACTED;
  }

  /** Deno.inspect and console.log show `Secret([redacted])`. */
  [Symbol.for("Deno.customInspect")](): string {
    return `Secret(${REDACTED})`;
  }

  /** node:util inspect shows `Secret([redacted])`. */
  [Symbol.for("nodejs.util.inspect.custom")](): string {
    return `Secret(${REDACTED})`;
  }
}

/** The text every redacted value is replaced with. */
export const REDACTED_TEXT: string = REDACTED;

/**
 * A zod schema piece for a secret string (a password, a token): the program gets a
 * {@linkcode Secret}, and the value is redacted everywhere configuration shows it — `explain()`,
 * `dump()`, and error messages, which keep the key and where the value came from but print
 * `[redacted]` for the value (`app.yaml:4:3: db.password: expected string, got [redacted] (…)`).
 * Set it directly, or from `${env:NAME}`, `${file:/run/secrets/x}` or a `<VAR>_FILE` variable.
 *
 * A value YAML reads as a number (`password: 0123`) is an error rather than a string that lost
 * its leading zero: quote it.
 *
 * @returns The schema: input `string` (JSON Schema `writeOnly`), output {@linkcode Secret}.
 *
 * @example
 * ```ts
 * import { ConfigError, createConfig, secret } from "@triad/config";
 * import { z } from "zod";
import type { ZodSchema } from "./zod_schema.ts";
 * import assert from "node:assert/strict";
 *
 * const schema = z.object({ token: secret() });
 * await using config = await createConfig({
 *   schema,
 *   env: { prefix: "APP", vars: { APP_TOKEN: "hunter2" } },
 * });
 * assert.equal(config.get("token").reveal(), "hunter2");
 * assert.equal(String(config.explain("token")), "token = [redacted] from env APP_TOKEN");
 *
 * await assert.rejects(
 *   createConfig({ schema, env: { prefix: "APP", vars: {} } }),
 *   (error: unknown) =>
 *     error instanceof ConfigError && /^token: missing, expected string/.test(error.message),
 * );
 * ```
 */
export function secret(): ZodSchema<Secret, string> {
  return z.string().meta({ writeOnly: true }).transform((text) => new Secret(text));
}
