/**
 * The ML-KEM-768 primitives of both CryptoBackends (FIPS 203): node:crypto's (OpenSSL) and the portable one
 * (@noble/post-quantum) must be the same function of the same inputs, so a key expanded by one and a ciphertext made by
 * the other interoperate, and both refuse what FIPS 203 §7.2 and §7.3 refuse.
 */
import { describe, expect, it } from 'vitest';
import { ml_kem768 } from '@noble/post-quantum/ml-kem.js';
import { MLKEM768_NCT, MLKEM768_NEK, webCryptoBackend, type CryptoBackend } from './backend.ts';
import { nodeBackend } from './node/backend-node.ts';

const backends: CryptoBackend[] = [webCryptoBackend, nodeBackend];
const seed = Uint8Array.from({ length: 64 }, (_, i) => (i * 37 + 11) & 0xff);

describe('ML-KEM-768 on both backends', () => {
  it('KeyGen_internal(d, z) from the 64-byte seed gives the same encapsulation key on both, and noble reference', async () => {
    const ref = ml_kem768.keygen(seed).publicKey;
    for (const b of backends) {
      const k = await b.mlkem768Import(seed);
      expect(k.publicKey.length).toBe(MLKEM768_NEK);
      expect(k.publicKey).toEqual(ref);
    }
  });

  for (const enc of backends) {
    for (const dec of backends) {
      it(`${enc.name} encapsulates, ${dec.name} decapsulates the same secret; a flipped ciphertext byte gives a different one`, async () => {
        const sk = await dec.mlkem768Import(seed);
        const { sharedSecret, cipherText } = enc.mlkem768Encapsulate(enc.mlkem768PublicKey(sk.publicKey));
        expect(sharedSecret.length).toBe(32);
        expect(cipherText.length).toBe(MLKEM768_NCT);
        expect(dec.mlkem768Decapsulate(sk, cipherText)).toEqual(sharedSecret);
        const bad = cipherText.slice();
        bad[100] = bad[100]! ^ 1;
        expect(dec.mlkem768Decapsulate(sk, bad)).not.toEqual(sharedSecret);
      });
    }
  }

  it('implicit rejection (FIPS 203 Algorithm 18, K-bar = J(z || c)) gives the same value on both', async () => {
    const ct = new Uint8Array(MLKEM768_NCT).fill(0x5a);
    const [a, b] = await Promise.all(backends.map(async (be) => be.mlkem768Decapsulate(await be.mlkem768Import(seed), ct)));
    expect(a).toEqual(b);
    expect(a).toEqual(ml_kem768.decapsulate(ct, ml_kem768.keygen(seed).secretKey));
  });

  for (const b of backends) {
    it(`refuses an encapsulation key failing the §7.2 modulus check, and wrong lengths, with HPKE_BAD_KEY (${b.name})`, async () => {
      const pk = (await b.mlkem768Import(seed)).publicKey.slice();
      pk[0] = 0xff; // the first 12-bit coefficient becomes >= q = 3329
      pk[1] = 0xff;
      expect(() => b.mlkem768PublicKey(pk)).toThrow(expect.objectContaining({ code: 'HPKE_BAD_KEY' }));
      expect(() => b.mlkem768PublicKey(pk.subarray(1))).toThrow(expect.objectContaining({ code: 'HPKE_BAD_KEY' }));
      await expect(Promise.resolve().then(() => b.mlkem768Import(seed.subarray(0, 32)))).rejects.toMatchObject({ code: 'HPKE_BAD_KEY' });
      const sk = await b.mlkem768Import(seed);
      expect(() => b.mlkem768Decapsulate(sk, new Uint8Array(MLKEM768_NCT - 1))).toThrow(expect.objectContaining({ code: 'HPKE_BAD_KEY' }));
    });
  }

  it('two encapsulations to one key differ (fresh randomness each time)', async () => {
    for (const b of backends) {
      const pub = b.mlkem768PublicKey((await b.mlkem768Import(seed)).publicKey);
      expect(b.mlkem768Encapsulate(pub).cipherText).not.toEqual(b.mlkem768Encapsulate(pub).cipherText);
    }
  });
});
