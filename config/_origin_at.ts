/**
 * Looking up where a value came from.
 *
 * @module
 */
import type { Origin } from "./origin.ts";

/** The origin of `path`, or of its nearest ancestor that has one. */
export function originAt(origins: ReadonlyMap<string, Origin>, path: string): Origin | undefined {
  for (let p = path;;) {
    const origin = origins.get(p);
    if (origin !== undefined) return origin;
    if (p === "") return undefined;
    const dot = p.lastIndexOf(".");
    p = dot === -1 ? "" : p.slice(0, dot);
  }
}
