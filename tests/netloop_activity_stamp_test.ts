/**
 * A connection's activity stamp (when it last had traffic, for the idle timeout) must stay a small
 * integer in V8: a fractional `performance.now()` stored in a long-lived connection was a new heap
 * number on every read, and with 15,000 connections held every scavenge copied one per connection
 * active since the last (issue 23: the DNS proxy's active clients waited through those pauses).
 * The handler asks V8 itself (`%IsSmi`, in a child run with `--allow-natives-syntax`).
 */
import assert from "node:assert/strict";
import { ffi, ioUring, linux, testWith } from "./requirements.ts";

const child = new URL("./netloop_stamp_child.ts", import.meta.url).pathname;

for (const backend of ["epoll", "uring", "portable"] as const) {
  const needs = backend === "uring"
    ? [linux, ffi, ioUring]
    : backend === "epoll"
    ? [linux, ffi]
    : [];
  testWith(`${backend}: a connection's activity stamp is a small integer`, needs, async () => {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--v8-flags=--allow-natives-syntax", child, backend],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout).trim();
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    assert.equal(text, "SSS", "each read's stamp: S = small integer, H = heap number");
  });
}
