/**
 * The public-nonce pool (random-pool.ts): every byte a fill produced is served at most once, in order, and the
 * pool keeps no copy of what it served. A counting fill writes each 4-byte word as the next value of a 32-bit
 * counter, so a re-served or out-of-order byte shows as a repeated or decreasing word.
 */
import { describe, expect, it } from 'vitest';
import { POOL_MAX_REQUEST, createRandomPool, publicRandomBytes } from './random-pool.ts';

function countingFill() {
  let word = 0;
  const calls: Uint8Array[] = [];
  const fill = (b: Uint8Array) => {
    calls.push(b);
    const v = new DataView(b.buffer, b.byteOffset, b.length);
    for (let o = 0; o + 4 <= b.length; o += 4) v.setUint32(o, ++word);
  };
  return { fill, calls };
}

function words(b: Uint8Array): number[] {
  const v = new DataView(b.buffer, b.byteOffset, b.length);
  return Array.from({ length: b.length / 4 }, (_, i) => v.getUint32(4 * i));
}

describe('random pool', () => {
  it('serves each filled byte once and in order, across refills, for requests of several sizes', () => {
    const { fill, calls } = countingFill();
    const take = createRandomPool(fill, 256);
    let last = 0;
    let served = 0;
    for (let i = 0; i < 500; i++) {
      const n = [16, 12, 32, 4, 64][i % 5]!;
      const out = take(n);
      expect(out.length).toBe(n);
      for (const w of words(out)) {
        expect(w).toBeGreaterThan(last);
        last = w;
      }
      served += n;
    }
    // A request that does not fit what is left refills the whole pool (the tail is dropped, never served later).
    // Each refill drops less than the largest pooled request.
    expect(calls.length).toBeGreaterThanOrEqual(Math.ceil(served / 256));
    expect(calls.length).toBeLessThanOrEqual(Math.ceil(served / (256 - POOL_MAX_REQUEST)));
  });

  it('fills once per pool, not once per request', () => {
    const { fill, calls } = countingFill();
    const take = createRandomPool(fill, 4096);
    for (let i = 0; i < 256; i++) take(16);
    expect(calls.length).toBe(1);
    take(16);
    expect(calls.length).toBe(2);
  });

  it('zeroes what it served in the pool', () => {
    const { fill, calls } = countingFill();
    const take = createRandomPool(fill, 128);
    const a = take(16);
    const b = take(12);
    const pool = calls[0]!;
    expect(pool.subarray(0, 28).every((x) => x === 0)).toBe(true);
    expect(pool.subarray(28).some((x) => x !== 0)).toBe(true);
    expect(words(a).concat(words(b))).toEqual([1, 2, 3, 4, 5, 6, 7]);
  });

  it('gives a request longer than the pool serves its own fill, not pool bytes', () => {
    const { fill, calls } = countingFill();
    const take = createRandomPool(fill, 128);
    const out = take(POOL_MAX_REQUEST + 4);
    expect(out.length).toBe(POOL_MAX_REQUEST + 4);
    expect(calls.length).toBe(1);
    expect(calls[0]).toBe(out);
    expect(words(take(4))).toEqual([(POOL_MAX_REQUEST + 4) / 4 + 1]);
  });

  it('refuses a bad length or pool size', () => {
    const take = createRandomPool(countingFill().fill, 128);
    expect(() => take(-1)).toThrow(RangeError);
    expect(() => take(1.5)).toThrow(RangeError);
    expect(() => createRandomPool(countingFill().fill, 16)).toThrow(RangeError);
    expect(() => createRandomPool(countingFill().fill, 65_537)).toThrow(RangeError);
  });

  it('the process-wide pool never repeats a 16-byte nonce', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 5000; i++) seen.add(Buffer.from(publicRandomBytes(16)).toString('hex'));
    expect(seen.size).toBe(5000);
  });
});
