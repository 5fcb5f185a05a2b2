/**
 * The number the cache's and the in-flight table's `Map`s are keyed by, instead of the key itself.
 *
 * @module
 */

/** Per process, so that names whose keys collide cannot be worked out ahead. */
const SEED = crypto.getRandomValues(new Uint32Array(1))[0]! | 0;

/**
 * Hashes a cache key (`cacheKey`) to a small integer. V8 hashes a string in C++ the first time it
 * is used as a `Map` key, and every query's key is a new string: about 200 ns for a 20-character
 * key here, more than the rest of a lookup in a 100,000-entry table; this loop over its characters
 * costs ~25 ns, and a `Map` hashes a small integer inline. Two keys may share a hash: the tables
 * compare the key of what they find (the cache chains such keys and keeps both; the in-flight
 * table lets the later one make its own upstream query), so a collision never gives a wrong answer.
 *
 * @param key The key.
 * @returns An integer in [0, 2^30), a small integer for V8 on every platform.
 */
export function keyHash(key: string): number {
  let h = SEED ^ key.length;
  for (let i = 0; i < key.length; i++) {
    h = Math.imul(h ^ key.charCodeAt(i), 0x5bd1e995);
    h ^= h >>> 15;
  }
  h = Math.imul(h ^ (h >>> 13), 0x5bd1e995);
  return (h ^ (h >>> 15)) & 0x3fffffff;
}
