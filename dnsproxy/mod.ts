/**
 * `@triad/dnsproxy`: caching DNS forwarding proxy on netloop.
 *
 * Not built yet: this package is a placeholder in the workspace.
 *
 * @module
 */

/** The package name. */
export const PACKAGE = "@triad/dnsproxy";
