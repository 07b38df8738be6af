import { sha256 } from '@noble/hashes/sha2.js';
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { hex } from '../attestation/bytes.ts';
import { expectCode } from '../test/market-fixtures.ts';
import { checkStreamCommitment, STREAM_CHAIN_START, StreamChain } from './stream-chain.ts';

const te = new TextEncoder();
const chainOf = (chunks: string[], hash?: (b: Uint8Array) => Uint8Array) => {
  const c = new StreamChain(hash);
  for (const x of chunks) c.add(te.encode(x));
  return c.commitment;
};

describe('stream hash chain', () => {
  it('link_i = SHA-256(link_{i-1} || chunk_i) from SHA-256("gm-stream-v1")', () => {
    expect(hex(STREAM_CHAIN_START)).toBe(hex(sha256(te.encode('gm-stream-v1'))));
    const l1 = sha256(new Uint8Array([...STREAM_CHAIN_START, ...te.encode('data: a\n\n')]));
    const l2 = sha256(new Uint8Array([...l1, ...te.encode('data: b\n\n')]));
    expect(chainOf(['data: a\n\n', 'data: b\n\n'])).toEqual({ chunks: 2, head: l2 });
    // node:crypto (the enclave's) and noble (the client's) agree, also past the reused buffer's first size.
    const big = ['x'.repeat(5000), 'y', 'z'.repeat(70_000)];
    expect(hex(chainOf(big, (b) => new Uint8Array(createHash('sha256').update(b).digest())).head)).toBe(hex(chainOf(big).head));
  });

  it('a dropped, added, reordered, altered or merged chunk changes the final link', async () => {
    const sent = ['data: 1\n\n', 'data: 2\n\n', 'data: 3\n\n'];
    const signed = chainOf(sent);
    checkStreamCommitment(signed, chainOf([...sent]));
    for (const got of [['data: 1\n\n', 'data: 3\n\n'], [...sent, 'data: 4\n\n'], ['data: 2\n\n', 'data: 1\n\n', 'data: 3\n\n'], ['data: 1\n\n', 'data: 9\n\n', 'data: 3\n\n'], ['data: 1\n\ndata: 2\n\n', 'data: 3\n\n']]) {
      await expectCode(() => checkStreamCommitment(signed, chainOf(got)), 'RECEIPT_STREAM_MISMATCH');
    }
    await expectCode(() => checkStreamCommitment(undefined, chainOf(sent)), 'RECEIPT_STREAM_MISSING');
  });
});
