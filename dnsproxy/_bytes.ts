/**
 * Reading a stream whole, with a bound, and joining chunks.
 *
 * @module
 */

/**
 * Joins chunks into one buffer.
 *
 * @param chunks The chunks.
 * @param total Their total length.
 * @returns A new buffer.
 */
export function concat(chunks: readonly Uint8Array[], total: number): Uint8Array {
  const out = new Uint8Array(total);
  let at = 0;
  for (const chunk of chunks) {
    out.set(chunk, at);
    at += chunk.length;
  }
  return out;
}

/**
 * Reads a whole stream, at most `limit` bytes.
 *
 * @param stream The stream.
 * @param limit Most bytes kept; beyond, `undefined`.
 * @returns The bytes up to the peer's FIN.
 */
export async function readAll(
  stream: ReadableStream<Uint8Array>,
  limit: number,
): Promise<Uint8Array | undefined> {
  const chunks: Uint8Array[] = [];
  let total = 0;
  for await (const chunk of stream) {
    total += chunk.length;
    if (total > limit) return undefined;
    chunks.push(chunk);
  }
  return concat(chunks, total);
}
