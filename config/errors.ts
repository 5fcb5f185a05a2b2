/**
 * The error raised by `@triad/config`.
 *
 * @module
 */
import { TriadError } from "@triad/core";
import { formatOrigin } from "./origin.ts";
import type { Origin } from "./origin.ts";

/** One problem found while loading or validating configuration. */
export interface ConfigIssue {
  /** The dotted path of the value, `""` for the root or when unknown. */
  readonly path: string;
  /** What is wrong, in sentence case. */
  readonly message: string;
  /** Where the offending value came from, when known. */
  readonly origin?: Origin;
}

/** Codes a {@linkcode ConfigError} carries. */
export type ConfigErrorCode =
  | "parse"
  | "invalid"
  | "unknown_key"
  | "not_found"
  | "secret"
  | "remote"
  | "bad_option"
  | "disposed";

/**
 * A configuration problem: the message names the file (`file:line:col`), environment variable,
 * flag or remote key, the path, the expected type and the value.
 *
 * @example
 * ```ts
 * import { ConfigError } from "@triad/config";
 * import assert from "node:assert/strict";
 *
 * const error = new ConfigError("app.yaml:3:5: port: expected integer, got \"x\"", { code: "invalid" });
 * assert.equal(error.code, "invalid");
 * assert.deepEqual(error.issues, []);
 * ```
 */
export class ConfigError extends TriadError {
  /** The problems behind this error, one per offending value. */
  readonly issues: readonly ConfigIssue[];
  /** What kind of problem: `parse`, `invalid`, `unknown_key`, `not_found`, `secret`, `remote`… */
  override readonly code: ConfigErrorCode;

  /**
   * Creates an error.
   *
   * @param message What was wrong and where.
   * @param options The code, the issues and the cause.
   */
  constructor(
    message: string,
    options: { code: ConfigErrorCode; issues?: readonly ConfigIssue[]; cause?: unknown },
  ) {
    super(message, options.cause === undefined ? { code: options.code } : options);
    this.code = options.code;
    this.issues = options.issues ?? [];
  }
}

/** A thrown value as a {@linkcode ConfigError} (code `remote` unless it is one already). */
export function asConfigError(error: unknown, context?: string): ConfigError {
  if (error instanceof ConfigError) return error;
  const message = error instanceof Error ? error.message : String(error);
  return new ConfigError(context === undefined ? message : `${context}: ${message}`, {
    code: "remote",
    cause: error,
  });
}

/** One error for several issues, its code from the most telling of them. */
export function issuesError(issues: readonly ConfigIssue[], headline: string): ConfigError {
  const lines = issues.map((issue) => {
    const where = issue.origin === undefined ? "" : `${formatOrigin(issue.origin)}: `;
    return `${where}${issue.message}`;
  });
  const code = issues.some((i) => /unknown (key|flag|environment)/.test(i.message))
    ? "unknown_key"
    : issues.some((i) => i.origin !== undefined && "line" in i.origin && i.path === "")
    ? "parse"
    : issues.some((i) => i.message.startsWith("secret reference"))
    ? "secret"
    : issues.some((i) => / not found$|^No configuration file/.test(i.message))
    ? "not_found"
    : "invalid";
  const message = lines.length === 1 ? lines[0]! : `${headline}:\n  ${lines.join("\n  ")}`;
  return new ConfigError(message, { code, issues });
}
