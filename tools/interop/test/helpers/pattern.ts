/** Test data that shows a lost, repeated or shifted piece: deterministic bytes from a seed. */

/** `len` bytes of a xorshift32 sequence from `seed` (different at every offset of a page). */
export function pattern(len: number, seed: number): Buffer {
  const b = Buffer.alloc(len);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < len; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x & 0xff;
  }
  return b;
}
