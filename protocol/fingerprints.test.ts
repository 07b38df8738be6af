/**
 * The replay guard's fingerprints are four MurmurHash3 x86_32 hashes of the encapsulated key, seeded with each seed
 * xor the key id. Checked against the published MurmurHash3 x86_32 test vectors (SMHasher's algorithm; the values
 * commonly listed for it, e.g. "Hello, world!" with seed 0x9747b28c → 0x24884cba), for every tail length.
 */
import { describe, expect, it } from 'vitest';
import { fingerprint } from './fingerprints.ts';

const te = new TextEncoder();
const VECTORS: readonly (readonly [string | Uint8Array, number, number])[] = [
  ['', 0, 0x00000000],
  ['', 1, 0x514e28b7],
  ['', 0xffffffff, 0x81f16f39],
  [new Uint8Array(4), 0, 0x2362f9de],
  ['a', 0x9747b28c, 0x7fa09ea6],
  ['aa', 0x9747b28c, 0x5d211726],
  ['aaa', 0x9747b28c, 0x283e0130],
  ['aaaa', 0x9747b28c, 0x5a97808a],
  ['abc', 0x9747b28c, 0xc84a62dd],
  ['abcd', 0x9747b28c, 0xf0478627],
  ['test', 0x9747b28c, 0x704b81dc],
  ['Hello, world!', 0x9747b28c, 0x24884cba],
  ['The quick brown fox jumps over the lazy dog', 0x9747b28c, 0x2fa826cd],
];

describe('fingerprint', () => {
  it.each(VECTORS.map(([m, seed, h]) => [typeof m === 'string' ? JSON.stringify(m) : `${m.length} zero bytes`, m, seed, h] as const))('%s, seed %d: each word is MurmurHash3 x86_32 (word 0 with its low bit set)', (_name, m, seed, h) => {
    const enc = typeof m === 'string' ? te.encode(m) : m;
    // Key id 0 leaves the seeds as they are; each word is the hash under its own seed.
    const f = fingerprint([seed >>> 0, seed >>> 0, seed >>> 0, seed >>> 0], 0, enc);
    expect([...f]).toEqual([(h | 1) >>> 0, h, h, h]);
  });

  it('mixes the key id into every seed, and each word depends on its own seed only', () => {
    const enc = te.encode('Hello, world!');
    expect(fingerprint([0x9747b28c ^ 7, 1 ^ 7, 0, 0], 7, enc)[0]).toBe((0x24884cba | 1) >>> 0);
    const f = fingerprint([0, 0x9747b28c, 1, 0x9747b28c], 0, enc);
    expect([f[1], f[3]]).toEqual([0x24884cba, 0x24884cba]);
    expect(f[2]).not.toBe(0x24884cba);
  });
});
