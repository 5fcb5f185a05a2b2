/**
 * A secret configuration value that never prints itself.
 *
 * @module
 */

const REDACTED = "[redacted]";
const values = new WeakMap<Secret, string>();

/**
 * A secret string (a password, a token) that is redacted in `toString`, `JSON.stringify`,
 * `Deno.inspect`, `console.log`, `explain()` and `dump()`. Read it with {@linkcode Secret.reveal}.
 *
 * `${env:NAME}` and `${file:/run/secrets/x}` references in any layer, and `<VAR>_FILE`
 * environment variables, resolve into a `Secret`. To get a `Secret` from a zod schema field, use
 * `z.string().meta({ writeOnly: true }).transform((s) => new Secret(s))`.
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
