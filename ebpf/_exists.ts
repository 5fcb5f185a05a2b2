/**
 * Whether a path exists, for the feature probes and the tracer's prerequisites.
 *
 * @module
 */

/** Whether something exists at `path` (a file, a directory, a device); never throws. */
export function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}
