/**
 * The answer unbound gives the benchmarks' A queries, made without unbound.
 *
 * @module
 */

/** The tail of unbound's answer after the question: one A record (TTL 300), then an OPT record. */
const TAIL = [
  ...[0xc0, 12, 0, 1, 0, 1, 0, 0, 1, 44, 0, 4, 10, 9, 9, 9],
  ...[0, 0, 41, 4, 208, 0, 0, 0, 0, 0, 0],
];

/**
 * unbound's answer to `query` (an A query ending in an 11-byte OPT record): its header and question,
 * one A record with TTL 300, an OPT record.
 *
 * @param query The query.
 * @param into A buffer to write it into (a view of it is returned), or a new one.
 * @returns The answer.
 */
export function unboundAnswer(query: Uint8Array, into?: Uint8Array): Uint8Array {
  const questionEnd = query.length - 11; // before the query's OPT
  const out = into ?? new Uint8Array(questionEnd + TAIL.length);
  out.set(query.subarray(0, questionEnd));
  out.set(TAIL, questionEnd);
  out[2] = 0x81;
  out[3] = 0x80;
  out[7] = 1;
  out[11] = 1;
  return out.subarray(0, questionEnd + TAIL.length);
}
