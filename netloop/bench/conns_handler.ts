/**
 * The echo handler `conns_server.ts` runs: the echo example's `onTraffic`, and a `heap` message
 * that makes the loop report its isolate's heap (after a full collection when `gc` is exposed).
 *
 * @module
 */
import { Action, type Loop } from "../mod.ts";
import { heapUsed } from "./_heap_report.ts";

export { onTraffic } from "../examples/echo_handler.ts";

let loop: Loop | undefined;

/** Keeps the loop to answer on. */
export function onBoot(booted: Loop): Action {
  loop = booted;
  return Action.None;
}

/** `"heap"`: posts `{ heapUsed }` of this loop's isolate. */
export function onMessage(data: unknown): Action {
  if (data === "heap") loop?.postMessage({ heapUsed: heapUsed() });
  return Action.None;
}
