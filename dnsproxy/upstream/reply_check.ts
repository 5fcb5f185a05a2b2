/**
 * The anti-spoofing check on an upstream reply: ID, QR and the question must match the query.
 *
 * @module
 */
import { parseMessage } from "../wire/message.ts";
import type { MessageInfo } from "../wire/message.ts";

/** Why a reply was refused. */
export type MismatchReason = "source" | "id" | "question" | "malformed";

/** A reply that passed {@linkcode checkReply}. */
export interface AcceptedReply {
  /** The reply bytes. */
  readonly bytes: Uint8Array;
  /** The parsed reply. */
  readonly info: MessageInfo;
}

/**
 * Checks a reply against the query sent: it must parse strictly, be a response, carry the ID sent
 * and echo the question (name compared case-insensitively, type and class exactly).
 *
 * @param reply The bytes received.
 * @param id The ID sent.
 * @param query The parsed query sent.
 * @returns The accepted reply, or the reason it was refused.
 *
 * @example
 * ```ts
 * import { buildQuery, parseMessage } from "@triad/dnsproxy";
 * import { checkReply } from "./reply_check.ts";
 * import assert from "node:assert/strict";
 *
 * const query = buildQuery({ id: 77, name: "a.", type: 1 });
 * const reply = query.slice();
 * reply[2] = 0x81;
 * assert.equal(typeof checkReply(reply, 77, parseMessage(query)), "object");
 * assert.equal(checkReply(reply, 78, parseMessage(query)), "id");
 * ```
 */
export function checkReply(
  reply: Uint8Array,
  id: number,
  query: MessageInfo,
): AcceptedReply | MismatchReason {
  const info = checkReplyInfo(reply, id, query);
  return typeof info === "string" ? info : { bytes: reply, info };
}

/**
 * {@linkcode checkReply} for a caller that keeps a copy of the reply rather than `reply` itself
 * (a receive buffer): the parsed reply alone, without an object around it for each reply.
 *
 * @param reply The bytes received.
 * @param id The ID sent.
 * @param query The parsed query sent.
 * @returns The parsed reply, or the reason it was refused.
 */
export function checkReplyInfo(
  reply: Uint8Array,
  id: number,
  query: MessageInfo,
): MessageInfo | MismatchReason {
  if (reply.length < 12) return "malformed";
  if (((reply[0]! << 8) | reply[1]!) !== id) return "id";
  let info: MessageInfo;
  try {
    info = parseMessage(reply);
  } catch {
    return "malformed";
  }
  if ((info.flags & 0x8000) === 0 || info.opcode !== query.opcode) return "malformed";
  const asked = query.question!;
  const echoed = info.question;
  if (
    echoed === undefined || echoed.key !== asked.key || echoed.type !== asked.type ||
    echoed.class !== asked.class
  ) {
    return "question";
  }
  return info;
}
