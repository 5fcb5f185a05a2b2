/**
 * TLS options and what a TLS connection tells its handler.
 *
 * @module
 */

/** `serve()`'s `tls` option: terminate TLS on the loop (system OpenSSL, memory BIOs). */
export interface ServeTlsOptions {
  /** The certificate chain: PEM text, or the path of a PEM file (leaf first). */
  cert: string;
  /** The private key: PEM text, or the path of a PEM file. */
  key: string;
  /**
   * ALPN protocols the server accepts, in its order of preference. A client that offers ALPN
   * with none of them is refused (`no_application_protocol`); one that offers none gets none.
   */
  alpn?: string[];
  /**
   * Issue session tickets so clients can resume (shared by every loop). The `portable` backend
   * (`Deno.listenTls`) always resumes from its own session cache, so `false` is refused there.
   * @default {true}
   */
  sessionTickets?: boolean;
  /**
   * Accept TLS 1.3 0-RTT early data (up to 16 KiB, or this many bytes). Early data can be
   * replayed by an attacker: accept it only for requests that are safe to run twice. Bytes that
   * arrived as early data are counted in {@linkcode TlsInfo.earlyBytes}. Refused on the
   * `portable` backend (`Deno.listenTls` offers no 0-RTT). @default {false}
   */
  earlyData?: boolean | number;
  /**
   * The lowest protocol version: `"1.3"`, or `"1.2"` to also speak TLS 1.2. The `portable`
   * backend (`Deno.listenTls`) always speaks both, whatever this says (it logs a warning when
   * `"1.3"` is asked for). @default {"1.3"}
   */
  minVersion?: "1.2" | "1.3";
  /** Close a connection whose handshake has not finished in this long (ms or `"10s"`). @default {10000} */
  handshakeTimeout?: number | string;
}

/** `loop.dial()`'s `tls` option: a TLS client over the dialed TCP connection. */
export interface DialTlsOptions {
  /** The name sent as SNI and checked against the certificate. @default {the address's host} */
  serverName?: string;
  /** Trusted CA certificates (PEM text). @default {the system's store} */
  ca?: string;
  /** ALPN protocols to offer. */
  alpn?: string[];
  /** Close the connection if its handshake has not finished in this many ms. @default {10000} */
  handshakeTimeout?: number;
}

/**
 * What was negotiated on a TLS connection ({@linkcode Conn.tls}). On the `portable` backend
 * (`Deno.listenTls`/`Deno.startTls`, which tell only the ALPN protocol) `protocol`, `cipher` and
 * `resumed` are `undefined`: unknown there.
 */
export interface TlsInfo {
  /** `"TLSv1.3"` or `"TLSv1.2"`; `undefined` when the backend cannot tell (`portable`). */
  readonly protocol: string | undefined;
  /** The ALPN protocol agreed, or `undefined`. */
  readonly alpn: string | undefined;
  /**
   * The cipher suite, as OpenSSL names it (`"TLS_AES_256_GCM_SHA384"`); `undefined` when the
   * backend cannot tell (`portable`).
   */
  readonly cipher: string | undefined;
  /** Whether the session was resumed from a ticket; `undefined` when unknown (`portable`). */
  readonly resumed: boolean | undefined;
  /** Whether the peer's 0-RTT early data was accepted. */
  readonly earlyDataAccepted: boolean;
  /**
   * How many of the unconsumed bytes, from the front, arrived as 0-RTT early data (replayable:
   * handle them only if running them twice is harmless). 0 outside that case.
   */
  readonly earlyBytes: number;
}

/** TLS counters of an engine, summed over its loops ({@linkcode Engine.tlsStats}). */
export interface TlsStats {
  /** Handshakes completed. */
  handshakes: number;
  /** Of those, resumed from a ticket. */
  resumed: number;
  /** Handshakes whose 0-RTT data was accepted. */
  earlyData: number;
  /** Handshakes that failed (garbage, a refused ALPN, an oversized or bad record). */
  handshakeErrors: number;
  /** Handshakes closed for not finishing within `handshakeTimeout`. */
  handshakeTimeouts: number;
  /** Established connections closed for a bad record (oversized, failed authentication). */
  recordErrors: number;
  /** Connections that ended in the middle of a record (a reset or an EOF). */
  truncated: number;
  /** TLS connections alive now (their OpenSSL state allocated). */
  live: number;
}
