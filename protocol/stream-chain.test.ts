import { sha256 } from '@noble/hashes/sha2.js';
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { hex } from '../attestation/bytes.ts';
import { expectCode } from '../test/market-fixtures.ts';
import { checkStreamCommitment, type IncrementalSha256, STREAM_LABEL, StreamChain } from './stream-chain.ts';

const te = new TextEncoder();
const nodeSha256 = (): IncrementalSha256 => createHash('sha256');
const chainOf = (chunks: string[], create?: () => IncrementalSha256) => {
  const c = new StreamChain(create);
  for (const x of chunks) c.add(te.encode(x));
  return c.commitment;
};

/** The construction written out: SHA-256 over the label and every chunk behind its u32 big-endian length. */
function framed(chunks: Uint8Array[]): Uint8Array {
  const parts: number[] = [...STREAM_LABEL];
  for (const c of chunks) parts.push(c.length >>> 24, (c.length >>> 16) & 0xff, (c.length >>> 8) & 0xff, c.length & 0xff, ...c);
  return sha256(Uint8Array.from(parts));
}

describe('stream commitment', () => {
  // Known answers computed independently with coreutils: printf 'gm-stream-v2\x00\x00\x00\x09data: a\n\n...' | sha256sum
  it('known answers: head = SHA-256("gm-stream-v2" || u32(len) || chunk ...)', () => {
    expect(chainOf([])).toEqual({ chunks: 0, head: expect.any(Uint8Array) });
    expect(hex(chainOf([]).head)).toBe('2487842fe8c1ab292d141b36be6c88ca3fea5053a86729a6f6d2d234463698e5');
    expect(hex(chainOf(['']).head)).toBe('c4d72639a90f7e5eae058fe0265f1b205ac58dd3476534e406703f64add22cd7');
    const two = chainOf(['data: a\n\n', 'data: b\n\n']);
    expect(two.chunks).toBe(2);
    expect(hex(two.head)).toBe('93b6a9fb24ce470a5c4e6510dac62c1251ceae3f17b0c1777a458c020b454bce');
    expect(hex(chainOf(['data: a\n\n', 'data: b\n\n'], nodeSha256).head)).toBe(hex(two.head));
  });

  it('node:crypto (the enclave) and noble (the client) agree with the written-out construction, past the frame buffer size', () => {
    // Small chunks that fill the staging buffer across its boundary, chunks larger than it, and empty ones.
    const small = Array.from({ length: 300 }, (_, i) => `data: ${'t'.repeat(i % 97)}\n\n`);
    const big = ['x'.repeat(5000), 'y', '', ...small, 'z'.repeat(70_000), ...small.slice(0, 50), 'w'.repeat(4092), 'v'.repeat(4091), 'data: é\n\n'];
    const want = hex(framed(big.map((s) => te.encode(s))));
    expect(hex(chainOf(big).head)).toBe(want);
    expect(hex(chainOf(big, nodeSha256).head)).toBe(want);
    expect(chainOf(big).chunks).toBe(big.length);
  });

  it('reading the commitment does not end the chain: later chunks still count', () => {
    const c = new StreamChain(nodeSha256);
    c.add(te.encode('data: 1\n\n'));
    const first = c.commitment;
    c.add(te.encode('data: 2\n\n'));
    expect(first).toEqual(chainOf(['data: 1\n\n']));
    expect(c.commitment).toEqual(chainOf(['data: 1\n\n', 'data: 2\n\n']));
  });

  it('a dropped, added, reordered, altered, merged or re-split chunk changes the commitment', async () => {
    const sent = ['data: 1\n\n', 'data: 2\n\n', 'data: 3\n\n'];
    const signed = chainOf(sent);
    checkStreamCommitment(signed, chainOf([...sent], nodeSha256));
    const faults = [
      ['data: 1\n\n', 'data: 3\n\n'],
      [...sent, 'data: 4\n\n'],
      ['data: 2\n\n', 'data: 1\n\n', 'data: 3\n\n'],
      ['data: 1\n\n', 'data: 9\n\n', 'data: 3\n\n'],
      ['data: 1\n\ndata: 2\n\n', 'data: 3\n\n'],
      // Same bytes and the same count, split differently: only the length framing tells these apart.
      ['data: 1\n\ndata: 2\n\n', 'data: ', '3\n\n'],
    ];
    for (const got of faults) {
      await expectCode(() => checkStreamCommitment(signed, chainOf(got)), 'RECEIPT_STREAM_MISMATCH');
    }
    await expectCode(() => checkStreamCommitment(undefined, chainOf(sent)), 'RECEIPT_STREAM_MISSING');
  });
});
