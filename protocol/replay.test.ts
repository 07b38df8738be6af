import { describe, expect, it } from 'vitest';
import { FingerprintSet } from './fingerprints.ts';
import { RecentReplayCache, ReplayCache } from './replay.ts';

const enc = (n: number) => new Uint8Array(32).fill(n);

describe('ReplayCache', () => {
  it('accepts an encapsulated key once per key id', () => {
    const c = new ReplayCache({ maxEntries: 10, windowMs: 1000, now: () => 0 });
    c.check(1, enc(1));
    expect(() => c.check(1, enc(1))).toThrow(expect.objectContaining({ code: 'OHTTP_REPLAY' }));
    c.check(2, enc(1)); // another key configuration: a different HPKE context
    c.check(1, enc(2));
    expect(c.size).toBe(3);
  });

  it('when full, refuses new requests with a retryable code instead of forgetting entries', () => {
    const c = new ReplayCache({ maxEntries: 2, windowMs: 1000, now: () => 0 });
    c.check(1, enc(1));
    c.check(1, enc(2));
    const e = (() => {
      try {
        c.check(1, enc(3));
      } catch (x) {
        return x;
      }
    })();
    expect(e).toMatchObject({ code: 'REPLAY_CACHE_FULL', kind: 'unavailable' });
    expect(() => c.check(1, enc(1))).toThrow(expect.objectContaining({ code: 'OHTTP_REPLAY' }));
  });

  it('ties the window to the key lifetime: entries go only when the key is no longer accepted', () => {
    let now = 0;
    const c = new ReplayCache({ maxEntries: 2, windowMs: 1000, now: () => now });
    c.check(1, enc(1));
    now = 999;
    expect(() => c.check(1, enc(1))).toThrow(expect.objectContaining({ code: 'OHTTP_REPLAY' }));
    c.check(1, enc(2));
    now = 1000;
    // The key's window passed: it is refused outright, so forgetting its entries is sound.
    expect(() => c.check(1, enc(1))).toThrow(expect.objectContaining({ code: 'OHTTP_KEY_EXPIRED' }));
    expect(c.size).toBe(0);
    c.check(2, enc(1)); // the rotated key has room again
    c.retire(1);
    c.check(1, enc(1)); // a retired key id may be reused by a new configuration
    expect(c.size).toBe(2);
  });

  it('validates its options', () => {
    expect(() => new ReplayCache({ maxEntries: 0, windowMs: 1 })).toThrow(RangeError);
    expect(() => new ReplayCache({ maxEntries: 1, windowMs: 0 })).toThrow(RangeError);
  });

  it('is bounded by bytes as well as by count', () => {
    const c = new ReplayCache({ maxEntries: 1_000_000, maxBytes: 64 * 1024, windowMs: 1000, now: () => 0 });
    let refused: unknown;
    for (let i = 0; i < 100_000 && !refused; i++) {
      try {
        c.check(1, new Uint8Array(new Uint32Array([i, 7, 7, 7, 7, 7, 7, 7]).buffer));
      } catch (e) {
        refused = e;
      }
    }
    expect(refused).toMatchObject({ code: 'REPLAY_CACHE_FULL' });
    expect(c.bytes).toBeLessThanOrEqual(64 * 1024);
    expect(c.size).toBeGreaterThan(1000);
  });

  it('keeps entries compact: flat fingerprints, under 48 bytes an entry at 200k entries', () => {
    const c = new ReplayCache({ maxEntries: 1_000_000, windowMs: 1000, now: () => 0 });
    const e = new Uint8Array(32);
    const v = new DataView(e.buffer);
    for (let i = 0; i < 200_000; i++) {
      v.setUint32(0, i);
      v.setUint32(28, i * 2654435761);
      c.check(1, e);
    }
    expect(c.size).toBe(200_000);
    expect(c.bytes / c.size).toBeLessThan(48);
    v.setUint32(0, 123_456);
    v.setUint32(28, 123_456 * 2654435761);
    expect(() => c.check(1, e)).toThrow(expect.objectContaining({ code: 'OHTTP_REPLAY' }));
  });
});

describe('RecentReplayCache', () => {
  const WINDOW = 90_000; // what a request-time window of 60 s behind and 30 s ahead keeps an entry for, at most

  it('refuses a replay until the entry expires, then frees it', () => {
    let now = 1_000_000;
    const c = new RecentReplayCache({ maxEntries: 10, now: () => now });
    c.check(1, enc(1), now + 60_000);
    expect(() => c.check(1, enc(1), now + 60_000)).toThrow(expect.objectContaining({ code: 'OHTTP_REPLAY' }));
    expect(() => c.check(1, enc(1), now + 10_000)).toThrow(expect.objectContaining({ code: 'OHTTP_REPLAY' })); // any expiry
    now += 59_999;
    expect(() => c.check(1, enc(1), now + 1)).toThrow(expect.objectContaining({ code: 'OHTTP_REPLAY' }));
    now += 5_001 + 5_000; // past the entry's expiry and the end of its bucket
    c.check(1, enc(2), now + 60_000);
    expect(c.size).toBe(1);
  });

  it('a flood that fills it denies others for at most the window, then they are served', () => {
    let now = 5_000_000;
    const c = new RecentReplayCache({ maxEntries: 1000, now: () => now });
    let n = 0;
    const flood = () => {
      for (;;) {
        try {
          c.check(1, new Uint8Array(new Uint32Array([++n, 1, 2, 3, 4, 5, 6, 7]).buffer), now + WINDOW);
        } catch (e) {
          return e;
        }
      }
    };
    expect(flood()).toMatchObject({ code: 'REPLAY_CACHE_FULL', kind: 'unavailable' });
    const other = () => c.check(1, new Uint8Array(32).fill(0xee), now + 60_000);
    expect(other).toThrow(expect.objectContaining({ code: 'REPLAY_CACHE_FULL' }));
    now += WINDOW - 1;
    expect(other).toThrow(expect.objectContaining({ code: 'REPLAY_CACHE_FULL' })); // still inside the flood's window
    now += 5_001; // the flood's entries expired (plus one bucket)
    other();
    expect(c.size).toBe(1);
  });

  it('bounds memory by bytes, and refuses an expiry in the past (the time check comes first)', () => {
    const c = new RecentReplayCache({ maxEntries: 1_000_000, maxBytes: 2 * FingerprintSet.INITIAL_BYTES, now: () => 0 });
    let refused: unknown;
    for (let i = 0; i < 10_000 && !refused; i++) {
      try {
        c.check(1, new Uint8Array(new Uint32Array([i, 9, 9, 9, 9, 9, 9, 9]).buffer), 1000);
      } catch (e) {
        refused = e;
      }
    }
    expect(refused).toMatchObject({ code: 'REPLAY_CACHE_FULL' });
    expect(c.bytes).toBeLessThanOrEqual(2 * FingerprintSet.INITIAL_BYTES);
    expect(() => c.check(1, enc(5), -1)).toThrow(RangeError);
  });
});
