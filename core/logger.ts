/**
 * A small levelled, structured logger writing JSON lines or human-readable text.
 *
 * @module
 */

/** Log levels, from most to least verbose. */
export type LogLevel = "debug" | "info" | "warn" | "error";

/** Structured fields attached to a log record. */
export type LogFields = Record<string, unknown>;

const LEVEL_RANK: Readonly<Record<LogLevel, number>> = { debug: 10, info: 20, warn: 30, error: 40 };

/** Options for {@linkcode createLogger}. */
export interface LoggerOptions {
  /** The least severe level written. @default {"info"} */
  level?: LogLevel;
  /** `"json"` writes one JSON object per line; `"pretty"` writes aligned text. @default {"json"} */
  format?: "json" | "pretty";
  /** Fields added to every record. */
  fields?: LogFields;
  /** Where each finished line goes (without its newline). @default {writes to stderr} */
  write?: (line: string) => void;
  /** The clock, for tests. @default {() => new Date()} */
  now?: () => Date;
}

/** A levelled, structured logger. */
export interface Logger {
  /** The least severe level this logger writes. */
  readonly level: LogLevel;
  /** Tells whether a record at `level` would be written (to skip building costly fields). */
  enabled(level: LogLevel): boolean;
  /** Writes a debug record. */
  debug(message: string, fields?: LogFields): void;
  /** Writes an info record. */
  info(message: string, fields?: LogFields): void;
  /** Writes a warning record. */
  warn(message: string, fields?: LogFields): void;
  /** Writes an error record. */
  error(message: string, fields?: LogFields): void;
  /** Returns a logger that adds `fields` to every record. */
  child(fields: LogFields): Logger;
}

const encoder = new TextEncoder();

function writeStderr(line: string): void {
  Deno.stderr.writeSync(encoder.encode(line + "\n"));
}

function plain(value: unknown): unknown {
  if (value instanceof Error) {
    const out: Record<string, unknown> = { name: value.name, message: value.message };
    if ("code" in value) out.code = (value as { code: unknown }).code;
    if (value.cause !== undefined) out.cause = plain(value.cause);
    return out;
  }
  if (typeof value === "bigint") return value.toString();
  return value;
}

function jsonReplacer(_key: string, value: unknown): unknown {
  return plain(value);
}

function prettyValue(value: unknown): string {
  const flat = plain(value);
  if (typeof flat === "string") return /^[^\s"=]+$/.test(flat) ? flat : JSON.stringify(flat);
  return JSON.stringify(flat, jsonReplacer) ?? String(flat);
}

/**
 * Creates a logger.
 *
 * @param options Level, format, fixed fields and the output.
 * @returns The logger.
 *
 * @example JSON lines, captured
 * ```ts
 * import { createLogger } from "@triad/core";
 * import assert from "node:assert/strict";
 *
 * const lines: string[] = [];
 * const log = createLogger({ write: (line) => lines.push(line), now: () => new Date(0) });
 * log.child({ module: "dns" }).info("listening", { port: 5353 });
 * log.debug("not written at the default level");
 * assert.deepEqual(JSON.parse(lines[0]!), {
 *   time: "1970-01-01T00:00:00.000Z",
 *   level: "info",
 *   msg: "listening",
 *   module: "dns",
 *   port: 5353,
 * });
 * assert.equal(lines.length, 1);
 * ```
 */
export function createLogger(options: LoggerOptions = {}): Logger {
  const level = options.level ?? "info";
  const format = options.format ?? "json";
  const write = options.write ?? writeStderr;
  const now = options.now ?? (() => new Date());
  const threshold = LEVEL_RANK[level];

  const make = (base: LogFields): Logger => {
    const emit = (at: LogLevel, message: string, fields?: LogFields): void => {
      if (LEVEL_RANK[at] < threshold) return;
      const time = now().toISOString();
      const all = fields === undefined ? base : { ...base, ...fields };
      if (format === "json") {
        write(JSON.stringify({ time, level: at, msg: message, ...all }, jsonReplacer));
      } else {
        let line = `${time} ${at.toUpperCase().padEnd(5)} ${message}`;
        for (const [key, value] of Object.entries(all)) line += ` ${key}=${prettyValue(value)}`;
        write(line);
      }
    };
    return {
      level,
      enabled: (at) => LEVEL_RANK[at] >= threshold,
      debug: (message, fields) => emit("debug", message, fields),
      info: (message, fields) => emit("info", message, fields),
      warn: (message, fields) => emit("warn", message, fields),
      error: (message, fields) => emit("error", message, fields),
      child: (fields) => make({ ...base, ...fields }),
    };
  };
  return make(options.fields ?? {});
}

/**
 * Parses a log level name, case-insensitively.
 *
 * @param text `debug`, `info`, `warn` (or `warning`) or `error`.
 * @returns The level, or `undefined` when the text names none.
 *
 * @example
 * ```ts
 * import { parseLogLevel } from "@triad/core";
 * import assert from "node:assert/strict";
 *
 * assert.equal(parseLogLevel("WARNING"), "warn");
 * ```
 */
export function parseLogLevel(text: string): LogLevel | undefined {
  const lower = text.toLowerCase();
  if (lower === "warning") return "warn";
  return lower in LEVEL_RANK ? lower as LogLevel : undefined;
}
