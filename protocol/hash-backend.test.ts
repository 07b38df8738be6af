/**
 * The hash primitives of both CryptoBackends: HMAC-SHA256 (RFC 2104; node's is built on its one-shot SHA-256, so it
 * is checked here against node's own createHmac and @noble/hashes, two independent implementations, across the key
 * lengths where RFC 2104 §2 changes path: empty, shorter than, exactly, and longer than the 64-byte block), SHA3-256
 * (FIPS 202), and the X25519 agreement through the node backend's PEM key import against @noble/curves.
 */
import { createHash, createHmac } from 'node:crypto';
import { hmac } from '@noble/hashes/hmac.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { sha3_256 } from '@noble/hashes/sha3.js';
import { x25519 } from '@noble/curves/ed25519.js';
import { describe, expect, it } from 'vitest';
import { hex } from '../attestation/bytes.ts';
import { webCryptoBackend, type CryptoBackend } from './backend.ts';
import { nodeBackend } from './node/backend-node.ts';

const backends: CryptoBackend[] = [webCryptoBackend, nodeBackend];
const bytes = (n: number, seed: number) => Uint8Array.from({ length: n }, (_, i) => (i * 131 + seed * 17 + 7) & 0xff);

describe('HMAC-SHA256 and SHA3-256 on both backends', () => {
  for (const b of backends) {
    it(`${b.name}: HMAC-SHA256 equals node createHmac and noble for keys of 0..1136 bytes and texts past the scratch block`, () => {
      for (const kl of [0, 1, 31, 32, 63, 64, 65, 100, 131, 1136]) {
        for (const dl of [0, 1, 55, 56, 64, 119, 300, 4096, 4097, 70_000]) {
          const key = bytes(kl, kl);
          const data = bytes(dl, dl + 1);
          const got = hex(b.hmacSha256(key, data));
          expect(got).toBe(createHmac('sha256', key).update(data).digest('hex'));
          expect(got).toBe(hex(hmac(sha256, key, data)));
        }
      }
    });

    it(`${b.name}: HMAC-SHA256 leaves its inputs as they were`, () => {
      const key = bytes(32, 3);
      const data = bytes(40, 4);
      b.hmacSha256(key, data);
      expect(key).toEqual(bytes(32, 3));
      expect(data).toEqual(bytes(40, 4));
    });

    it(`${b.name}: SHA3-256 equals node and noble`, () => {
      for (const n of [0, 134, 136, 137, 1000]) {
        const d = bytes(n, 9);
        expect(hex(b.sha3_256(d))).toBe(createHash('sha3-256').update(d).digest('hex'));
        expect(hex(b.sha3_256(d))).toBe(hex(sha3_256(d)));
      }
    });

    it(`${b.name}: X25519 agrees with @noble/curves, for a fresh peer key every time and for a repeated one`, async () => {
      const sk = bytes(32, 5);
      const k = await b.x25519Import(sk);
      for (let i = 0; i < 4; i++) {
        const peer = x25519.getPublicKey(bytes(32, 10 + (i % 2)));
        expect(hex(await b.x25519(k, peer))).toBe(hex(x25519.getSharedSecret(sk, peer)));
      }
      // The node backend agrees with an ephemeral peer key as text and parses any other once, then serves it parsed
      // (the last one used recognized by its bytes): two repeated keys in turn, the same keys as ephemeral ones, and
      // fresh ephemeral keys between them must all agree the same.
      const repeated = x25519.getPublicKey(bytes(32, 40));
      const other = x25519.getPublicKey(bytes(32, 41));
      for (let i = 0; i < 6; i++) {
        const fresh = x25519.getPublicKey(bytes(32, 50 + i));
        expect(hex(await b.x25519(k, repeated))).toBe(hex(x25519.getSharedSecret(sk, repeated)));
        expect(hex(await b.x25519(k, repeated, true))).toBe(hex(x25519.getSharedSecret(sk, repeated)));
        expect(hex(await b.x25519(k, other))).toBe(hex(x25519.getSharedSecret(sk, other)));
        expect(hex(await b.x25519(k, repeated))).toBe(hex(x25519.getSharedSecret(sk, repeated)));
        expect(hex(await b.x25519(k, fresh, true))).toBe(hex(x25519.getSharedSecret(sk, fresh)));
      }
      // A peer key array changed in place after use is agreed with as it is now.
      const changing = repeated.slice();
      await b.x25519(k, changing);
      changing.set(other);
      expect(hex(await b.x25519(k, changing))).toBe(hex(x25519.getSharedSecret(sk, other)));
      // More distinct peers than the node backend keeps (256): it clears and goes on agreeing.
      const want = hex(x25519.getSharedSecret(sk, repeated));
      for (let i = 0; i < 330; i++) {
        const peer = x25519.getPublicKey(bytes(32, 100 + i));
        const got = hex(await b.x25519(k, peer, i % 10 === 0));
        if (i % 30 === 0) {
          expect(got).toBe(hex(x25519.getSharedSecret(sk, peer)));
          expect(hex(await b.x25519(k, repeated))).toBe(want);
        }
      }
    });
  }
});
