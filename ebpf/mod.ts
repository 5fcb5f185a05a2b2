/**
 * `@triad/ebpf`: eBPF loader over Deno FFI to the system libbpf.
 *
 * Not built yet: this package is a placeholder in the workspace.
 *
 * @module
 */

/** The package name. */
export const PACKAGE = "@triad/ebpf";
