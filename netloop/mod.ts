/**
 * `@triad/netloop`: a gnet-style network engine for Deno. A handler module implements
 * `onBoot`/`onOpen`/`onTraffic`/`onClose`/`onTick`; `serve()` runs it on N event loops, one Worker
 * each with its own `SO_REUSEPORT` listener, over io_uring (driven from TypeScript through FFI),
 * epoll, or Deno's own networking.
 *
 * @example
 * ```ts
 * import { serve } from "@triad/netloop";
 * import assert from "node:assert/strict";
 *
 * const handler = `data:text/javascript,export function onTraffic(c) { c.write(c.next()); }`;
 * await using engine = await serve(handler, { backend: "portable", loops: 1 });
 * assert.ok(engine.address.port > 0);
 * ```
 *
 * @module
 */
export * from "./action.ts";
export * from "./conn.ts";
export * from "./event_handler.ts";
export * from "./errors.ts";
export * from "./serve.ts";
export * from "./tls.ts";
export * from "./quic.ts";
export * from "./codec.ts";
export * from "./codec_error.ts";
export * from "./length_field_codec.ts";
export * from "./delimiter_codec.ts";
export * from "./fixed_length_codec.ts";
