/**
 * `@triad/vm`: Vagrant harness running the privileged suite in a Linux VM.
 *
 * Not built yet: this package is a placeholder in the workspace.
 *
 * @module
 */

/** The package name. */
export const PACKAGE = "@triad/vm";
