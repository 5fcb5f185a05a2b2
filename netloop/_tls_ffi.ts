/**
 * The one place netloop opens the system OpenSSL (`libssl.so.3`, `libcrypto.so.3`: Debian's
 * `libssl3`), declared with the C signatures of the calls the TLS layer makes. Opened lazily, once
 * per Worker: a loop without TLS never loads it.
 *
 * OpenSSL macros that are `SSL_CTX_ctrl`/`SSL_ctrl` calls in C are made through those, with the
 * control numbers from `ssl.h` below.
 *
 * @module
 */
import { NetloopError } from "./errors.ts";

const SSL_SYMBOLS = {
  TLS_server_method: { parameters: [], result: "pointer" },
  TLS_client_method: { parameters: [], result: "pointer" },
  SSL_CTX_new: { parameters: ["pointer"], result: "pointer" },
  SSL_CTX_free: { parameters: ["pointer"], result: "void" },
  SSL_CTX_ctrl: { parameters: ["pointer", "i32", "i64", "pointer"], result: "i64" },
  SSL_CTX_ctrl_buffer: {
    name: "SSL_CTX_ctrl",
    parameters: ["pointer", "i32", "i64", "buffer"],
    result: "i64",
  },
  SSL_CTX_set_options: { parameters: ["pointer", "u64"], result: "u64" },
  SSL_CTX_use_certificate: { parameters: ["pointer", "pointer"], result: "i32" },
  SSL_CTX_use_PrivateKey: { parameters: ["pointer", "pointer"], result: "i32" },
  SSL_CTX_check_private_key: { parameters: ["pointer"], result: "i32" },
  SSL_CTX_set_alpn_select_cb: { parameters: ["pointer", "function", "pointer"], result: "void" },
  SSL_CTX_set_max_early_data: { parameters: ["pointer", "u32"], result: "i32" },
  SSL_CTX_set_num_tickets: { parameters: ["pointer", "usize"], result: "i32" },
  SSL_CTX_set_verify: { parameters: ["pointer", "i32", "pointer"], result: "void" },
  SSL_CTX_set_default_verify_paths: { parameters: ["pointer"], result: "i32" },
  SSL_CTX_get_cert_store: { parameters: ["pointer"], result: "pointer" },
  SSL_CTX_set_session_id_context: { parameters: ["pointer", "buffer", "u32"], result: "i32" },
  SSL_new: { parameters: ["pointer"], result: "pointer" },
  SSL_free: { parameters: ["pointer"], result: "void" },
  SSL_set_bio: { parameters: ["pointer", "pointer", "pointer"], result: "void" },
  SSL_set_accept_state: { parameters: ["pointer"], result: "void" },
  SSL_set_connect_state: { parameters: ["pointer"], result: "void" },
  SSL_do_handshake: { parameters: ["pointer"], result: "i32" },
  SSL_read: { parameters: ["pointer", "buffer", "i32"], result: "i32" },
  SSL_write: { parameters: ["pointer", "buffer", "i32"], result: "i32" },
  SSL_read_early_data: { parameters: ["pointer", "buffer", "usize", "buffer"], result: "i32" },
  SSL_write_early_data: { parameters: ["pointer", "buffer", "usize", "buffer"], result: "i32" },
  SSL_get_error: { parameters: ["pointer", "i32"], result: "i32" },
  SSL_shutdown: { parameters: ["pointer"], result: "i32" },
  SSL_ctrl_buffer: {
    name: "SSL_ctrl",
    parameters: ["pointer", "i32", "i64", "buffer"],
    result: "i64",
  },
  SSL_set1_host: { parameters: ["pointer", "buffer"], result: "i32" },
  SSL_get0_param: { parameters: ["pointer"], result: "pointer" },
  SSL_set_alpn_protos: { parameters: ["pointer", "buffer", "u32"], result: "i32" },
  SSL_get0_alpn_selected: { parameters: ["pointer", "buffer", "buffer"], result: "void" },
  SSL_get_version: { parameters: ["pointer"], result: "pointer" },
  SSL_get_current_cipher: { parameters: ["pointer"], result: "pointer" },
  SSL_CIPHER_get_name: { parameters: ["pointer"], result: "pointer" },
  SSL_has_pending: { parameters: ["pointer"], result: "i32" },
  SSL_session_reused: { parameters: ["pointer"], result: "i32" },
  SSL_get_early_data_status: { parameters: ["pointer"], result: "i32" },
  SSL_is_init_finished: { parameters: ["pointer"], result: "i32" },
  SSL_get_verify_result: { parameters: ["pointer"], result: "i64" },
  SSL_get1_session: { parameters: ["pointer"], result: "pointer" },
  SSL_set_session: { parameters: ["pointer", "pointer"], result: "i32" },
  SSL_SESSION_free: { parameters: ["pointer"], result: "void" },
  SSL_SESSION_is_resumable: { parameters: ["pointer"], result: "i32" },
  SSL_SESSION_get_max_early_data: { parameters: ["pointer"], result: "u32" },
  SSL_select_next_proto: {
    parameters: ["pointer", "pointer", "buffer", "u32", "pointer", "u32"],
    result: "i32",
  },
} as const;

const CRYPTO_SYMBOLS = {
  BIO_s_mem: { parameters: [], result: "pointer" },
  BIO_new: { parameters: ["pointer"], result: "pointer" },
  BIO_free: { parameters: ["pointer"], result: "i32" },
  BIO_new_mem_buf: { parameters: ["buffer", "i32"], result: "pointer" },
  BIO_read: { parameters: ["pointer", "buffer", "i32"], result: "i32" },
  BIO_write: { parameters: ["pointer", "buffer", "i32"], result: "i32" },
  /** `size_t` in C; the pending byte count of a memory BIO fits 32 bits. */
  BIO_ctrl_pending: { parameters: ["pointer"], result: "u32" },
  /** `BIO_set_mem_buf` is this with `BIO_C_SET_BUF_MEM`. */
  BIO_ctrl_buffer: {
    name: "BIO_ctrl",
    parameters: ["pointer", "i32", "i64", "buffer"],
    result: "i64",
  },
  BIO_set_flags: { parameters: ["pointer", "i32"], result: "void" },
  PEM_read_bio_X509: {
    parameters: ["pointer", "pointer", "pointer", "pointer"],
    result: "pointer",
  },
  PEM_read_bio_PrivateKey: {
    parameters: ["pointer", "pointer", "pointer", "pointer"],
    result: "pointer",
  },
  X509_free: { parameters: ["pointer"], result: "void" },
  EVP_PKEY_free: { parameters: ["pointer"], result: "void" },
  X509_STORE_add_cert: { parameters: ["pointer", "pointer"], result: "i32" },
  X509_VERIFY_PARAM_set1_ip_asc: { parameters: ["pointer", "buffer"], result: "i32" },
  X509_verify_cert_error_string: { parameters: ["i64"], result: "pointer" },
  ERR_get_error: { parameters: [], result: "u64" },
  ERR_peek_error: { parameters: [], result: "u64" },
  ERR_error_string_n: { parameters: ["u64", "buffer", "usize"], result: "void" },
  ERR_clear_error: { parameters: [], result: "void" },
} as const;

/** Control numbers and return codes from `ssl.h`, `tls1.h`, `bio.h`. */
export const SSL = {
  ERROR_NONE: 0,
  ERROR_SSL: 1,
  ERROR_WANT_READ: 2,
  ERROR_WANT_WRITE: 3,
  ERROR_SYSCALL: 5,
  ERROR_ZERO_RETURN: 6,
  CTRL_MODE: 33,
  CTRL_SET_TLSEXT_HOSTNAME: 55,
  CTRL_SET_TLSEXT_TICKET_KEYS: 59,
  CTRL_CHAIN_CERT: 89,
  CTRL_SET_MIN_PROTO_VERSION: 123,
  CTRL_SET_MAX_PROTO_VERSION: 124,
  MODE_ENABLE_PARTIAL_WRITE: 1,
  MODE_RELEASE_BUFFERS: 0x10,
  OP_NO_TICKET: 1n << 14n,
  TLSEXT_ERR_OK: 0,
  TLSEXT_ERR_ALERT_FATAL: 2,
  TLSEXT_ERR_NOACK: 3,
  TLSEXT_NAMETYPE_HOST_NAME: 0,
  VERIFY_PEER: 1,
  READ_EARLY_DATA_ERROR: 0,
  READ_EARLY_DATA_SUCCESS: 1,
  READ_EARLY_DATA_FINISH: 2,
  EARLY_DATA_ACCEPTED: 2,
  TLS1_2_VERSION: 0x0303,
  TLS1_3_VERSION: 0x0304,
  OPENSSL_NPN_NEGOTIATED: 1,
  BIO_C_SET_BUF_MEM: 114,
  BIO_NOCLOSE: 0,
  BIO_FLAGS_MEM_RDONLY: 0x200,
} as const;

/** The libssl and libcrypto symbols netloop calls. */
export type OpenSsl =
  & Deno.DynamicLibrary<typeof SSL_SYMBOLS>["symbols"]
  & Deno.DynamicLibrary<typeof CRYPTO_SYMBOLS>["symbols"];

let symbols: OpenSsl | undefined;

/**
 * Opens libssl.so.3 and libcrypto.so.3 (once per Worker).
 *
 * @returns The symbols.
 * @throws {NetloopError} `backend_unavailable`, naming the Debian package, when they are missing.
 */
export function openssl(): OpenSsl {
  if (symbols === undefined) {
    let crypto: Deno.DynamicLibrary<typeof CRYPTO_SYMBOLS>;
    let ssl: Deno.DynamicLibrary<typeof SSL_SYMBOLS>;
    const name = Deno.env.get("TRIAD_NETLOOP_LIBSSL") ?? "libssl.so.3";
    const cryptoName = Deno.env.get("TRIAD_NETLOOP_LIBCRYPTO") ?? "libcrypto.so.3";
    try {
      crypto = Deno.dlopen(cryptoName, CRYPTO_SYMBOLS);
      ssl = Deno.dlopen(name, SSL_SYMBOLS);
    } catch (cause) {
      throw new NetloopError(
        `TLS needs OpenSSL 3 (${name}, ${cryptoName}; Debian package libssl3), which could not ` +
          `be opened: ${(cause as Error).message}`,
        { code: "backend_unavailable", cause },
      );
    }
    symbols = { ...crypto.symbols, ...ssl.symbols } as OpenSsl;
  }
  return symbols;
}

const errorText = new Uint8Array(256);

/**
 * Takes OpenSSL's error queue of this thread as one string (empty when it is empty).
 *
 * @param lib The symbols.
 * @returns The reasons, joined by "; ".
 */
export function takeErrors(lib: OpenSsl): string {
  const reasons: string[] = [];
  for (let i = 0; i < 8; i++) {
    const code = lib.ERR_get_error();
    if (code === 0n) break;
    lib.ERR_error_string_n(code, errorText, BigInt(errorText.length));
    const end = errorText.indexOf(0);
    reasons.push(new TextDecoder().decode(errorText.subarray(0, end < 0 ? undefined : end)));
  }
  lib.ERR_clear_error();
  return reasons.join("; ");
}

/**
 * Reads a C string.
 *
 * @param pointer The string, or null.
 * @returns The text ("" for null).
 */
export function cString(pointer: Deno.PointerValue): string {
  return pointer === null ? "" : Deno.UnsafePointerView.getCString(pointer);
}

/**
 * A NUL-terminated copy of a string, for `buffer` arguments that C reads as `const char *`.
 *
 * @param text The string.
 * @returns Its UTF-8 bytes and a NUL.
 */
export function cBytes(text: string): Uint8Array<ArrayBuffer> {
  const bytes = new TextEncoder().encode(text);
  const out = new Uint8Array(bytes.length + 1);
  out.set(bytes);
  return out;
}
