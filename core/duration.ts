/**
 * Go-style duration strings (`"300ms"`, `"5s"`, `"1m30s"`) to milliseconds and back.
 *
 * @module
 */
import { TriadError } from "./error.ts";

const UNIT_MS: Readonly<Record<string, number>> = {
  ns: 1e-6,
  us: 1e-3,
  "µs": 1e-3,
  ms: 1,
  s: 1_000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
};

const PART = /(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h|d)/y;

/**
 * Parses a duration such as `"300ms"`, `"5s"`, `"1m30s"` or `"1.5h"` into milliseconds.
 * Units: `ns`, `us` (or `µs`), `ms`, `s`, `m`, `h`, `d`. A bare `"0"` is zero; any other number
 * needs a unit, so `"5"` is rejected rather than guessed.
 *
 * @param text The duration to parse.
 * @returns The duration in milliseconds (fractional below one millisecond).
 * @throws {TriadError} With code `bad_duration`, naming the input and what is wrong with it.
 *
 * @example
 * ```ts
 * import { parseDuration } from "@triad/core";
 * import assert from "node:assert/strict";
 *
 * assert.equal(parseDuration("300ms"), 300);
 * assert.equal(parseDuration("1m30s"), 90_000);
 * ```
 */
export function parseDuration(text: string): number {
  const input = text.trim();
  if (input === "0") return 0;
  if (input === "") {
    throw new TriadError('Invalid duration "": expected a number with a unit such as "5s"', {
      code: "bad_duration",
    });
  }
  let total = 0;
  let at = 0;
  while (at < input.length) {
    PART.lastIndex = at;
    const match = PART.exec(input);
    if (match === null) {
      const hint = /^\d+(\.\d+)?$/.test(input)
        ? "a unit is missing (ns, us, ms, s, m, h, d)"
        : `unexpected "${input.slice(at)}" at offset ${at}`;
      throw new TriadError(`Invalid duration "${text}": ${hint}`, { code: "bad_duration" });
    }
    total += Number(match[1]) * UNIT_MS[match[2]!]!;
    at = PART.lastIndex;
  }
  if (!Number.isFinite(total)) {
    throw new TriadError(`Invalid duration "${text}": too large`, { code: "bad_duration" });
  }
  return total;
}

/**
 * Formats milliseconds as the shortest exact Go-style duration (`90000` → `"1m30s"`).
 *
 * @param ms The duration in milliseconds; must be finite and not negative.
 * @returns The duration as text, `"0s"` for zero.
 *
 * @example
 * ```ts
 * import { formatDuration } from "@triad/core";
 * import assert from "node:assert/strict";
 *
 * assert.equal(formatDuration(90_000), "1m30s");
 * assert.equal(formatDuration(0.5), "500us");
 * ```
 */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) {
    throw new TriadError(`Cannot format duration ${ms}: expected a finite, non-negative number`, {
      code: "bad_duration",
    });
  }
  if (ms === 0) return "0s";
  let rest = Math.round(ms * 1e6); // nanoseconds, exact for anything a timer can express
  let out = "";
  for (
    const [unit, size] of [["h", 3_600e9], ["m", 60e9], ["s", 1e9], ["ms", 1e6], [
      "us",
      1e3,
    ]] as const
  ) {
    const count = Math.floor(rest / size);
    if (count > 0) {
      out += `${count}${unit}`;
      rest -= count * size;
    }
  }
  if (rest > 0) out += `${rest}ns`;
  return out;
}
