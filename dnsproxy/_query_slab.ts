/**
 * The slab size of the byte pools whose copies live as long as an upstream exchange.
 *
 * @module
 */

/**
 * Bytes per slab for copies kept until a query is answered: one query waiting for its timeout
 * keeps its whole slab alive, so slabs stay small (4 KiB still saves dozens of mallocs each).
 */
export const QUERY_SLAB = 4096;
