import { describe, expect, it } from 'vitest';
import { ReplayCache } from './replay.ts';

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
});
