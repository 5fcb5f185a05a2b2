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
export { Action } from "./action.ts";
export { type Conn } from "./conn.ts";
export {
  type BackendName,
  type ConnHandler,
  type DialOptions,
  type EventHandler,
  type Exhaustion,
  type HandlerResult,
  type Loop,
} from "./event_handler.ts";
export { NetloopError } from "./errors.ts";
export { Engine, serve, type ServeOptions } from "./serve.ts";
export {
  checkLimits,
  formatLimits,
  type LimitCheck,
  type LimitNeeds,
  type LimitSources,
} from "./limits.ts";
export { type DialTlsOptions, type ServeTlsOptions, type TlsInfo, type TlsStats } from "./tls.ts";
export {
  type CongestionControl,
  denoQuicTransport,
  type QuicDialOptions,
  type QuicServeOptions,
  type QuicServer,
  type QuicSession,
  type QuicTransport,
} from "./quic.ts";
export { type Codec, type Inbound } from "./codec.ts";
export { CodecError } from "./codec_error.ts";
export { LengthFieldCodec, type LengthFieldCodecOptions } from "./length_field_codec.ts";
export { DelimiterCodec, type DelimiterCodecOptions } from "./delimiter_codec.ts";
export { FixedLengthCodec } from "./fixed_length_codec.ts";
