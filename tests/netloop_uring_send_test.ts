/**
 * The uring backend's TCP sends: a SEND issued with MSG_DONTWAIT that completes silently when
 * whole. A reply far larger than the socket buffer makes it go out short; the rest must follow,
 * whole and in order, and the connection must keep working afterwards. Run with fast sends on
 * and off (TRIAD_NETLOOP_URING_DISABLE=fastsend).
 */
import assert from "node:assert/strict";
import { createLogger } from "@triad/core";
import { serve } from "@triad/netloop";
import { ioUring, linux, testWith } from "./requirements.ts";
import { readExactly } from "./netloop_support.ts";
import { bigReply } from "./netloop_big_reply_handler.ts";

function concat(parts: Uint8Array[]): Uint8Array {
  const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    all.set(part, at);
    at += part.length;
  }
  return all;
}

/** Compares without assert.deepEqual's per-byte diff (megabytes). */
function sameBytes(got: Uint8Array, want: Uint8Array, what: string): void {
  assert.equal(got.length, want.length, `${what}: length`);
  for (let i = 0; i < want.length; i++) {
    if (got[i] !== want[i]) assert.fail(`${what}: byte ${i} is ${got[i]}, expected ${want[i]}`);
  }
}

testWith(
  "uring: replies larger than the socket buffer arrive whole and in order",
  [linux, ioUring],
  async (t) => {
    for (const disable of ["", "fastsend"]) {
      await t.step(`fast sends ${disable === "" ? "on" : "off"}`, async () => {
        Deno.env.set("TRIAD_NETLOOP_URING_DISABLE", disable);
        try {
          const engine = await serve(new URL("./netloop_big_reply_handler.ts", import.meta.url), {
            backend: "uring",
            loops: 1,
            logger: createLogger({ level: "warn" }),
            logLevel: "warn",
          });
          try {
            const conn = await Deno.connect({ hostname: "127.0.0.1", port: engine.address.port });
            try {
              for (const ask of [[1], [2, 3], [0]]) {
                await conn.write(new Uint8Array(ask));
                const want = concat(ask.map(bigReply));
                let timer: ReturnType<typeof setTimeout> | undefined;
                const late = new Promise<never>((_, reject) => {
                  timer = setTimeout(
                    () => reject(new Error(`reply to [${ask}] not whole within 20 s`)),
                    20_000,
                  );
                });
                try {
                  const got = await Promise.race([readExactly(conn, want.length), late]);
                  sameBytes(got, want, `reply to [${ask}]`);
                } finally {
                  clearTimeout(timer);
                }
              }
            } finally {
              conn.close();
            }
          } finally {
            await engine.stop();
          }
        } finally {
          Deno.env.delete("TRIAD_NETLOOP_URING_DISABLE");
        }
      });
    }
  },
);
