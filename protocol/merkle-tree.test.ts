import fc from 'fast-check';
import { sha256 } from '@noble/hashes/sha2.js';
import { describe, expect, it } from 'vitest';
import { merkleRoot } from './best-execution.ts';
import { MerkleTree } from './merkle-tree.ts';

const leaf = (n: number): Uint8Array => sha256(Uint8Array.of(0, n & 255, (n >> 8) & 255, (n >> 16) & 255));

describe('MerkleTree (incremental RFC 6962 MTH)', () => {
  it('equals the one-shot MTH for every size from 0 to 70', () => {
    for (let n = 0; n <= 70; n++) {
      const leaves = Array.from({ length: n }, (_, i) => leaf(i));
      expect(new MerkleTree(leaves).root()).toEqual(merkleRoot(leaves));
    }
  });

  it('after any sequence of inserts and removes, with roots taken in between or not, equals the MTH of the leaves', () => {
    const op = fc.record({ insert: fc.boolean(), at: fc.nat(), root: fc.boolean() });
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 40 }), fc.array(op, { maxLength: 60 }), (start, ops) => {
        const mirror = Array.from({ length: start }, (_, i) => leaf(i));
        const t = new MerkleTree(mirror);
        let next = start;
        for (const o of ops) {
          if (o.insert || mirror.length === 0) {
            const at = o.at % (mirror.length + 1);
            const l = leaf(next++);
            mirror.splice(at, 0, l);
            t.insert(at, l);
          } else {
            const at = o.at % mirror.length;
            mirror.splice(at, 1);
            t.remove(at);
          }
          if (o.root) expect(t.root()).toEqual(merkleRoot(mirror));
        }
        expect(t.size).toBe(mirror.length);
        expect(t.root()).toEqual(merkleRoot(mirror));
      }),
      { numRuns: 300 },
    );
  });

  it('a change near the end rehashes only the blocks that reach it', () => {
    let calls = 0;
    const counting = (b: Uint8Array): Uint8Array => {
      calls++;
      return sha256(b);
    };
    const t = new MerkleTree(Array.from({ length: 1024 }, (_, i) => leaf(i)), counting);
    t.root();
    expect(calls).toBe(1023);
    calls = 0;
    t.insert(1020, leaf(5000));
    t.root();
    // Blocks reaching leaf 1020 or beyond: 3 + 2 + 1 + ... per level up to the top ones, plus the new spine.
    expect(calls).toBeLessThan(30);
    calls = 0;
    t.remove(0);
    t.root();
    expect(calls).toBe(1023);
  });

  it('refuses positions outside the tree and leaves that are not 32 bytes', () => {
    const t = new MerkleTree([leaf(1)]);
    expect(() => t.insert(2, leaf(2))).toThrow(RangeError);
    expect(() => t.insert(0, new Uint8Array(31))).toThrow(RangeError);
    expect(() => t.remove(1)).toThrow(RangeError);
  });
});
