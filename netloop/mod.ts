/**
 * `@triad/netloop`: gnet-style event loop over io_uring, epoll or Deno.listen.
 *
 * Not built yet: this package is a placeholder in the workspace.
 *
 * @module
 */

/** The package name. */
export const PACKAGE = "@triad/netloop";
