/**
 * `deno task trace`: the TCP connection tracer. Not built yet.
 *
 * @module
 */
console.error("deno task trace: the TCP connection tracer is not built yet (see issue 4).");
Deno.exit(2);
