/**
 * NODE-ONLY: node:crypto ECDSA verifiers for the verifiers' pluggable signature options (`p384Verifier` of the
 * SEV-SNP and NVIDIA verifiers, `ecdsaP256` of the TDX verifier). Same algorithms as their WebCrypto defaults; a
 * synchronous OpenSSL call skips WebCrypto's thread-pool round trip per signature. The verifiers pin the algorithm
 * and check the key type before calling these. Keys are cached by their encoding (public values only, bounded).
 */
import { createPublicKey, type KeyObject, verify } from 'node:crypto';
import type { EcdsaP256Verifier } from '../attestation/tdx/index.ts';

const keys = new Map<string, KeyObject>();
function cached(id: string, make: () => KeyObject): KeyObject {
  let k = keys.get(id);
  if (!k) {
    k = make();
    if (keys.size >= 1024) keys.clear();
    keys.set(id, k);
  }
  return k;
}
const spkiKey = (spki: Uint8Array) => cached(`spki:${Buffer.from(spki).toString('base64')}`, () => createPublicKey({ key: Buffer.from(spki), format: 'der', type: 'spki' }));

/** ECDSA P-384/SHA-384 over (SPKI DER, data, raw r‖s), on the calling thread. */
export function nodeP384Verifier(spki: Uint8Array, data: Uint8Array, sig: Uint8Array): boolean {
  return verify('sha384', data, { key: spkiKey(spki), dsaEncoding: 'ieee-p1363' }, sig);
}

/** The same on libuv's thread pool (node:crypto's callback form): several GPUs' signatures verify in parallel. */
export function nodeP384VerifierAsync(spki: Uint8Array, data: Uint8Array, sig: Uint8Array): Promise<boolean> {
  const key = spkiKey(spki);
  return new Promise((resolve) => verify('sha384', data, { key, dsaEncoding: 'ieee-p1363' }, sig, (err, ok) => resolve(!err && ok)));
}

/** ECDSA P-256/SHA-256 for verifyTdx's `ecdsaP256` option (raw x‖y key, raw r‖s signature). */
export const nodeEcdsaP256: EcdsaP256Verifier = (key, data, signature) => {
  if (key.length !== 64 || signature.length !== 64) return false;
  const ko = cached(`p256:${Buffer.from(key).toString('base64url')}`, () =>
    createPublicKey({ key: { kty: 'EC', crv: 'P-256', x: Buffer.from(key.subarray(0, 32)).toString('base64url'), y: Buffer.from(key.subarray(32)).toString('base64url') }, format: 'jwk' }));
  return verify('sha256', data, { key: ko, dsaEncoding: 'ieee-p1363' }, signature);
};
