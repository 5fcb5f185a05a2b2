/**
 * `@triad/config`: layered, schema-validated, hot-reloaded configuration.
 *
 * Not built yet: this package is a placeholder in the workspace.
 *
 * @module
 */

/** The package name. */
export const PACKAGE = "@triad/config";
