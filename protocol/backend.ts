/**
 * The cryptographic primitives HPKE (RFC 9180) needs, behind one small interface so the hot path can use the
 * platform's native code: X25519 (RFC 7748), ML-KEM-768 (FIPS 203, the post-quantum half of X-Wing), HMAC-SHA256
 * (RFC 2104, the building block of HKDF, RFC 5869) and the AEADs of RFC 9180 §7.3.
 *
 * The default backend is runtime-agnostic: X25519 and AES-GCM through WebCrypto, HMAC-SHA256 and SHA3-256 through
 * @noble/hashes (synchronous; WebCrypto would need an importKey per call, and has no SHA-3) and ChaCha20-Poly1305 through @noble/ciphers (WebCrypto
 * lacks it), ML-KEM-768 through @noble/post-quantum (WebCrypto lacks it). Node processes may install the node:crypto backend from protocol/node/backend-node.ts, which avoids
 * WebCrypto's per-call cost (see docs/protocol.md §10 and bench/protocol.bench.ts).
 */
import { hmac } from '@noble/hashes/hmac.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { sha3_256 } from '@noble/hashes/sha3.js';
import { chacha20poly1305 } from '@noble/ciphers/chacha.js';
import { x25519 } from '@noble/curves/ed25519.js';
import { ml_kem768, type KEMPrepared } from '@noble/post-quantum/ml-kem.js';
import { protocolError } from '../attestation/errors.ts';

/** HPKE AEAD identifiers (RFC 9180 §7.3). */
export const AEAD_AES_128_GCM = 0x0001;
export const AEAD_AES_256_GCM = 0x0002;
export const AEAD_CHACHA20_POLY1305 = 0x0003;
export const AEAD_EXPORT_ONLY = 0xffff;
export type AeadId = typeof AEAD_AES_128_GCM | typeof AEAD_AES_256_GCM | typeof AEAD_CHACHA20_POLY1305 | typeof AEAD_EXPORT_ONLY;

/** Nk, Nn, Nt per RFC 9180 §7.3 (export-only has none). */
export const AEAD_PARAMS: Readonly<Record<number, { Nk: number; Nn: number; Nt: number } | undefined>> = {
  [AEAD_AES_128_GCM]: { Nk: 16, Nn: 12, Nt: 16 },
  [AEAD_AES_256_GCM]: { Nk: 32, Nn: 12, Nt: 16 },
  [AEAD_CHACHA20_POLY1305]: { Nk: 32, Nn: 12, Nt: 16 },
};

/**
 * A keyed AEAD. `open` throws (any error) when authentication fails; callers map that to one opaque code. Both read
 * `nonce` and `aad` before they return (a promise, or the result), so a caller may reuse those buffers right away.
 */
export interface AeadCipher {
  /**
   * ct || tag; with `headroom`, that many zero bytes come first, for a header the caller writes in place (a record
   * frame) instead of copying the ciphertext behind it.
   */
  seal(nonce: Uint8Array, aad: Uint8Array, pt: Uint8Array, headroom?: number): Promise<Uint8Array> | Uint8Array;
  open(nonce: Uint8Array, aad: Uint8Array, ct: Uint8Array): Promise<Uint8Array> | Uint8Array;
}

/** An X25519 private key held by a backend; `publicKey` is the 32-byte u-coordinate. Never serialized. */
export interface X25519PrivateKey {
  readonly kind: 'x25519-private';
  readonly publicKey: Uint8Array;
  /** Backend-specific handle (a non-extractable CryptoKey, or a node KeyObject). */
  readonly handle: unknown;
  readonly backend: CryptoBackend;
}

/** ML-KEM-768 sizes (FIPS 203 Table 3): encapsulation key, ciphertext, and the seed d || z of §7.1 / §3.3. */
export const MLKEM768_NEK = 1184;
export const MLKEM768_NCT = 1088;
export const MLKEM768_NSEED = 64;

/** An ML-KEM-768 decapsulation key held by a backend; `publicKey` is its 1184-byte encapsulation key. Never serialized. */
export interface MlKem768PrivateKey {
  readonly kind: 'ml-kem-768-private';
  readonly publicKey: Uint8Array;
  /** Backend-specific handle (a node KeyObject, or noble's expanded key). */
  readonly handle: unknown;
  readonly backend: CryptoBackend;
}

/** An ML-KEM-768 encapsulation key that passed the FIPS 203 §7.2 input check, parsed once by its backend. */
export interface MlKem768PublicKey {
  readonly kind: 'ml-kem-768-public';
  readonly handle: unknown;
  readonly backend: CryptoBackend;
}

export interface CryptoBackend {
  readonly name: string;
  x25519Generate(): Promise<X25519PrivateKey>;
  /** Imports a raw 32-byte scalar (DeriveKeyPair and known-answer tests). */
  x25519Import(sk: Uint8Array): Promise<X25519PrivateKey>;
  /**
   * Raw X25519 output (32 bytes); the caller rejects the all-zero value (RFC 9180 §7.1.1). `ephemeralPeer` says `pk`
   * is an ephemeral key this process agrees with once (a recipient's Decap): a backend that keeps parsed peer keys
   * for reuse keeps none of those.
   */
  x25519(sk: X25519PrivateKey, pk: Uint8Array, ephemeralPeer?: boolean): Promise<Uint8Array> | Uint8Array;
  /** ML-KEM-768.KeyGen_internal(d, z) from the 64-byte seed d || z (FIPS 203 Algorithm 16). */
  mlkem768Import(seed: Uint8Array): Promise<MlKem768PrivateKey> | MlKem768PrivateKey;
  /** Parses a 1184-byte encapsulation key; throws HPKE_BAD_KEY when the FIPS 203 §7.2 modulus check fails. */
  mlkem768PublicKey(ek: Uint8Array): MlKem768PublicKey;
  /** ML-KEM-768.Encaps (FIPS 203 Algorithm 20) with fresh randomness: a 32-byte secret and a 1088-byte ciphertext. */
  mlkem768Encapsulate(pk: MlKem768PublicKey): { sharedSecret: Uint8Array; cipherText: Uint8Array };
  /** ML-KEM-768.Decaps (FIPS 203 Algorithm 21): implicit rejection, a wrong ciphertext gives a wrong secret. */
  mlkem768Decapsulate(sk: MlKem768PrivateKey, ct: Uint8Array): Uint8Array;
  hmacSha256(key: Uint8Array, data: Uint8Array): Uint8Array;
  /** SHA3-256 (FIPS 202), the X-Wing combiner's hash. */
  sha3_256(data: Uint8Array): Uint8Array;
  aead(aeadId: number, key: Uint8Array): Promise<AeadCipher> | AeadCipher;
}

/** A copy with its own ArrayBuffer, as WebCrypto's BufferSource typing wants. */
function buf(b: Uint8Array): Uint8Array<ArrayBuffer> {
  return b.buffer instanceof ArrayBuffer && b.byteOffset === 0 && b.byteLength === b.buffer.byteLength
    ? (b as Uint8Array<ArrayBuffer>)
    : new Uint8Array(b);
}

/** PKCS#8 prefix of an X25519 private key (RFC 8410 §7): the raw scalar follows. */
export const X25519_PKCS8_PREFIX = Uint8Array.from([0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x04, 0x22, 0x04, 0x20]);
/** SubjectPublicKeyInfo prefix of an X25519 public key (RFC 8410 §4): the raw u-coordinate follows. */
export const X25519_SPKI_PREFIX = Uint8Array.from([0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x03, 0x21, 0x00]);

/** `ct` behind `headroom` zero bytes (a copy only when there is headroom to make). */
function withHeadroom(ct: Uint8Array, headroom: number): Uint8Array {
  if (headroom === 0) return ct;
  const out = new Uint8Array(headroom + ct.length);
  out.set(ct, headroom);
  return out;
}

function unsupportedAead(id: number): never {
  throw protocolError('HPKE_UNSUPPORTED_SUITE', `AEAD 0x${id.toString(16).padStart(4, '0')} is not supported`);
}

class WebCryptoAesGcm implements AeadCipher {
  readonly #key: CryptoKey;
  constructor(key: CryptoKey) {
    this.#key = key;
  }
  // Nonce and AAD are copied before the call: callers may reuse their buffers as soon as this returns a promise.
  async seal(nonce: Uint8Array, aad: Uint8Array, pt: Uint8Array, headroom = 0): Promise<Uint8Array> {
    return withHeadroom(new Uint8Array(await crypto.subtle.encrypt({ name: 'AES-GCM', iv: nonce.slice(), additionalData: aad.slice(), tagLength: 128 }, this.#key, buf(pt))), headroom);
  }
  async open(nonce: Uint8Array, aad: Uint8Array, ct: Uint8Array): Promise<Uint8Array> {
    return new Uint8Array(await crypto.subtle.decrypt({ name: 'AES-GCM', iv: nonce.slice(), additionalData: aad.slice(), tagLength: 128 }, this.#key, buf(ct)));
  }
}

class NobleChaCha implements AeadCipher {
  readonly #key: Uint8Array;
  constructor(key: Uint8Array) {
    this.#key = Uint8Array.from(key);
  }
  seal(nonce: Uint8Array, aad: Uint8Array, pt: Uint8Array, headroom = 0): Uint8Array {
    return withHeadroom(chacha20poly1305(this.#key, nonce, aad).encrypt(pt), headroom);
  }
  open(nonce: Uint8Array, aad: Uint8Array, ct: Uint8Array): Uint8Array {
    return chacha20poly1305(this.#key, nonce, aad).decrypt(ct);
  }
}

/** noble's form of a decapsulation key: the expanded secret key and the prepared encapsulation key it holds. */
interface NobleMlKemKey {
  readonly secretKey: Uint8Array;
  readonly prepared: KEMPrepared;
}

/** The runtime-agnostic backend (browsers, Node, Deno, Bun, workers). */
export const webCryptoBackend: CryptoBackend = {
  name: 'webcrypto',
  async x25519Generate() {
    const kp = (await crypto.subtle.generateKey({ name: 'X25519' }, false, ['deriveBits'])) as CryptoKeyPair;
    const publicKey = new Uint8Array(await crypto.subtle.exportKey('raw', kp.publicKey));
    return { kind: 'x25519-private', publicKey, handle: kp.privateKey, backend: webCryptoBackend };
  },
  async x25519Import(sk) {
    if (sk.length !== 32) throw protocolError('HPKE_BAD_KEY', 'X25519 private key must be 32 bytes');
    const pkcs8 = new Uint8Array(X25519_PKCS8_PREFIX.length + 32);
    pkcs8.set(X25519_PKCS8_PREFIX);
    pkcs8.set(sk, X25519_PKCS8_PREFIX.length);
    const handle = await crypto.subtle.importKey('pkcs8', pkcs8, { name: 'X25519' }, false, ['deriveBits']);
    pkcs8.fill(0);
    // The public key of an imported scalar; only on this cold path (key import), never per message.
    return { kind: 'x25519-private', publicKey: x25519.getPublicKey(sk), handle, backend: webCryptoBackend };
  },
  async x25519(sk, pk) {
    const pub = await crypto.subtle.importKey('raw', buf(pk), { name: 'X25519' }, true, []);
    return new Uint8Array(await crypto.subtle.deriveBits({ name: 'X25519', public: pub }, sk.handle as CryptoKey, 256));
  },
  mlkem768Import(seed) {
    if (seed.length !== MLKEM768_NSEED) throw protocolError('HPKE_BAD_KEY', 'ML-KEM-768 seed must be 64 bytes');
    const { publicKey, secretKey } = ml_kem768.keygen(seed);
    const handle: NobleMlKemKey = { secretKey, prepared: ml_kem768.prepare(publicKey) };
    return { kind: 'ml-kem-768-private', publicKey, handle, backend: webCryptoBackend };
  },
  mlkem768PublicKey(ek) {
    if (ek.length !== MLKEM768_NEK) throw protocolError('HPKE_BAD_KEY', 'ML-KEM-768 encapsulation key must be 1184 bytes');
    let handle: KEMPrepared;
    try {
      // Preparing is the §7.2 modulus check and the expansion of Â: most of an encapsulation, done once per key.
      handle = ml_kem768.prepare(ek);
    } catch (e) {
      throw protocolError('HPKE_BAD_KEY', 'ML-KEM-768 encapsulation key check failed', { cause: e });
    }
    return { kind: 'ml-kem-768-public', handle, backend: webCryptoBackend };
  },
  mlkem768Encapsulate(pk) {
    return (pk.handle as KEMPrepared).encapsulate();
  },
  mlkem768Decapsulate(sk, ct) {
    if (ct.length !== MLKEM768_NCT) throw protocolError('HPKE_BAD_KEY', 'ML-KEM-768 ciphertext must be 1088 bytes');
    const k = sk.handle as NobleMlKemKey;
    return k.prepared.decapsulate(ct, k.secretKey);
  },
  hmacSha256(key, data) {
    return hmac(sha256, key, data);
  },
  sha3_256(data) {
    return sha3_256(data);
  },
  async aead(aeadId, key) {
    const p = AEAD_PARAMS[aeadId] ?? unsupportedAead(aeadId);
    if (key.length !== p.Nk) throw protocolError('HPKE_BAD_KEY', 'AEAD key has the wrong length');
    if (aeadId === AEAD_CHACHA20_POLY1305) return new NobleChaCha(key);
    const k = await crypto.subtle.importKey('raw', buf(key), { name: 'AES-GCM' }, false, ['encrypt', 'decrypt']);
    return new WebCryptoAesGcm(k);
  },
};

let current: CryptoBackend = webCryptoBackend;

/** The backend used when a call does not pass one. */
export function defaultBackend(): CryptoBackend {
  return current;
}

/** Installs the process-wide default backend (e.g. the node:crypto one at enclave start). */
export function setDefaultBackend(b: CryptoBackend): void {
  current = b;
}
