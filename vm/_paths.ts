/**
 * Where the harness keeps things between runs, and where its own files are.
 *
 * @module
 */

/** The cache directory: `$TRIAD_VM_CACHE`, else `$XDG_CACHE_HOME/triad/vm`, else `~/.cache/triad/vm`. */
export function defaultCacheDir(): string {
  const explicit = Deno.env.get("TRIAD_VM_CACHE");
  if (explicit) return explicit;
  const xdg = Deno.env.get("XDG_CACHE_HOME");
  if (xdg) return `${xdg}/triad/vm`;
  return `${Deno.env.get("HOME") ?? "/root"}/.cache/triad/vm`;
}

/** The `vm/` folder of this checkout. */
export const VM_DIR: string = new URL(".", import.meta.url).pathname.replace(/\/$/, "");

/** The repository root. */
export const REPO_ROOT: string = new URL("..", import.meta.url).pathname.replace(/\/$/, "");

/** The default box name. */
export const DEFAULT_BOX = "triad/debian12";

/** The Deno version provisioned in the guest. */
export const DENO_VERSION = "2.9.6";
