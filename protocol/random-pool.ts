/**
 * Public per-message randomness (the OHTTP response nonce of RFC 9458 §4.4 and of chunked OHTTP's responses, which
 * travel in the clear), served from a pool that one `crypto.getRandomValues` call fills (W3C WebCrypto §10.1.1, the
 * platform's CSPRNG). One call per few hundred nonces instead of one per nonce: a call costs about as much as the
 * 16 bytes it returns plus a few KiB more. Every byte is served once: a slice is copied out, zeroed in the pool, and
 * the pool is refilled whole when the next request does not fit. Not for secret keys or seeds (those come from their
 * own call, so no key material sits in a buffer ahead of its use).
 *
 * A process has its own pool (node:cluster starts processes, it does not fork this one's memory).
 */

/** A function filling its argument with random bytes (the default: `crypto.getRandomValues`). */
export type RandomFill = (into: Uint8Array) => unknown;

/** Largest request served from the pool; a longer one gets its own call. */
export const POOL_MAX_REQUEST = 64;
const DEFAULT_POOL_SIZE = 4096;

/** `n` fresh random bytes per call, each byte of `fill`'s output served at most once. */
export function createRandomPool(fill: RandomFill = (b) => crypto.getRandomValues(b), size = DEFAULT_POOL_SIZE): (n: number) => Uint8Array {
  // getRandomValues takes at most 65,536 bytes per call (WebCrypto §10.1.1).
  if (!Number.isInteger(size) || size < POOL_MAX_REQUEST || size > 65_536) throw new RangeError('random pool size out of range');
  const pool = new Uint8Array(size);
  let at = size; // empty until first use
  return (n: number): Uint8Array => {
    if (!Number.isInteger(n) || n < 0) throw new RangeError('random byte count must be a non-negative integer');
    if (n > POOL_MAX_REQUEST) {
      const out = new Uint8Array(n);
      fill(out);
      return out;
    }
    if (at + n > size) {
      fill(pool);
      at = 0;
    }
    const out = pool.slice(at, at + n);
    pool.fill(0, at, at + n);
    at += n;
    return out;
  };
}

/** The process-wide pool for public nonces. */
export const publicRandomBytes: (n: number) => Uint8Array = createRandomPool();
