/**
 * NODE-ONLY (see docs/protocol.md §10): the CryptoBackend of protocol/backend.ts on node:crypto, for servers.
 * Same primitives (X25519 per RFC 7748, ML-KEM-768 per FIPS 203, HMAC-SHA256, AES-GCM, ChaCha20-Poly1305 per
 * RFC 8439), synchronous OpenSSL calls instead of WebCrypto's promise-and-threadpool round trip per operation, which
 * dominates small messages, and instead of ML-KEM in JavaScript (noble: ~0.5-0.8 ms per operation; OpenSSL's
 * encapsulation ~30 µs, decapsulation ~45 µs on the bench host). Keys come in as FIPS 203 material: a decapsulation
 * key from its 64-byte seed d || z ('raw-seed'), an encapsulation key as its 1184 bytes ('raw-public'), whose import
 * performs the §7.2 modulus check.
 * protocol/*.ts never import this file; enclave/worker code installs it with `setDefaultBackend(nodeBackend)`.
 *
 * Per-message cost matters here (every OHTTP request does an X25519 generate or import, one or two agreements and
 * several HMACs). node's key preparation tells a KeyObject from other key inputs by calling an internal accessor that
 * throws on anything else and catching the error: every object or Buffer passed as a key (a JWK, `{ key, format }`,
 * raw bytes to createHmac or createCipheriv) costs two thrown errors with stack traces, which on the bench host is
 * most of the call (createPublicKey of a raw X25519 key ~38 us, of the same key as a PEM string ~16 us; createHmac
 * with raw key bytes ~20 us, with a KeyObject ~4 us). So: peer public keys go in as PEM strings (a string is not
 * probed), AEAD keys are KeyObjects made once per key, and HMAC-SHA256 is RFC 2104 over node's one-shot SHA-256,
 * which takes no key object at all.
 */
import {
  createCipheriv,
  createDecipheriv,
  createHash,
  createPrivateKey,
  createPublicKey,
  createSecretKey,
  decapsulate,
  diffieHellman,
  encapsulate,
  generateKeyPairSync,
  hash,
  type KeyObject,
} from 'node:crypto';
import { protocolError } from '../../attestation/errors.ts';
import {
  AEAD_AES_128_GCM,
  AEAD_AES_256_GCM,
  AEAD_CHACHA20_POLY1305,
  AEAD_PARAMS,
  MLKEM768_NCT,
  MLKEM768_NEK,
  MLKEM768_NSEED,
  X25519_PKCS8_PREFIX,
  X25519_SPKI_PREFIX,
  type AeadCipher,
  type CryptoBackend,
  type MlKem768PrivateKey,
  type MlKem768PublicKey,
  type X25519PrivateKey,
} from '../backend.ts';

const CIPHER: Record<number, string> = {
  [AEAD_AES_128_GCM]: 'aes-128-gcm',
  [AEAD_AES_256_GCM]: 'aes-256-gcm',
  [AEAD_CHACHA20_POLY1305]: 'chacha20-poly1305',
};

/** The 32-byte u-coordinate of an X25519 public key ('raw-public' export: no JWK object or base64url round trip). */
function rawPublic(k: KeyObject): Uint8Array {
  const raw = k.export({ format: 'raw-public' });
  if (raw.length !== 32) throw protocolError('HPKE_BAD_KEY', 'X25519 public key export failed');
  return new Uint8Array(raw.buffer, raw.byteOffset, raw.length);
}

/**
 * A peer public key as PEM text (RFC 7468 §13 around the RFC 8410 §4 SubjectPublicKeyInfo, whose prefix pins
 * id-X25519, RFC 8410 §3). An ephemeral peer key (a gateway's Decap: each is seen once) goes to the agreement as the
 * text itself: wrapping it in a KeyObject that is never used again costs more (diffieHellman parses the text either
 * way). Any other peer key, typically the attested recipient key a sender agrees with on every request, is parsed
 * once into a KeyObject kept by its text, and the last one used is recognized by its 32 bytes before any text is
 * built. Public values only; bounded by clearing when full. Same bytes, same key: the agreement and the all-zero
 * check (hpke.ts) are unchanged.
 */
const peerKeys = new Map<string, KeyObject>();
const PEER_KEYS_MAX = 256;
const SPKI = Buffer.alloc(X25519_SPKI_PREFIX.length + 32);
SPKI.set(X25519_SPKI_PREFIX);
let lastPeer: { readonly bytes: Uint8Array; readonly key: KeyObject } | undefined;
function peerPem(pk: Uint8Array): string {
  SPKI.set(pk, X25519_SPKI_PREFIX.length);
  return `-----BEGIN PUBLIC KEY-----\n${SPKI.toString('base64')}\n-----END PUBLIC KEY-----\n`;
}
function peerKey(pk: Uint8Array, ephemeral: boolean): KeyObject | string {
  if (ephemeral) return peerPem(pk);
  const last = lastPeer;
  if (last) {
    let d = 0;
    for (let j = 0; j < 32; j++) d |= last.bytes[j]! ^ pk[j]!;
    if (d === 0) return last.key;
  }
  const pem = peerPem(pk);
  let k = peerKeys.get(pem);
  if (!k) {
    k = createPublicKey(pem);
    if (peerKeys.size >= PEER_KEYS_MAX) peerKeys.clear();
    peerKeys.set(pem, k);
  }
  lastPeer = { bytes: pk.slice(), key: k };
  return k;
}

/** SHA-256 block size (FIPS 180-4 §1), the B of RFC 2104 §2. */
const BLOCK = 64;

/**
 * Scratch blocks for HMAC's two hash inputs, reused by every call (the hash reads them before it returns). A fresh
 * Uint8Array longer than 64 bytes gets its own off-heap ArrayBuffer, which costs as much here as a SHA-256 of it.
 */
/** Longest text copied into the scratch block; a longer one (a request body under HMAC) is streamed into the hash. */
const INNER_TEXT_MAX = 4096;
const inner = new Uint8Array(BLOCK + INNER_TEXT_MAX);
const outer = new Uint8Array(BLOCK + 32);

/**
 * A one-shot digest as a 32-byte array. Asking node for the digest as latin1 text (one char per byte) and copying
 * it into a small on-heap array costs about half of asking for a Buffer, which gets its own ArrayBuffer; `into`
 * (offset `at`) receives it in place when given.
 */
function digest32(alg: 'sha256' | 'sha3-256', data: Uint8Array, into = new Uint8Array(32), at = 0): Uint8Array {
  const d = hash(alg, data, 'binary'); // 'binary' is node's name for latin1
  for (let j = 0; j < 32; j++) into[at + j] = d.charCodeAt(j);
  return into;
}

/**
 * HMAC-SHA256 (RFC 2104 §2): H((K0 XOR opad) || H((K0 XOR ipad) || text)), K0 the key zero-padded to B bytes, or
 * H(key) padded when the key is longer than B. Two calls to node's one-shot SHA-256 cost less than one createHmac
 * plus the KeyObject its key needs (see the header). The scratch blocks are zeroed after use: they held the
 * key-derived pads and the text.
 */
function hmacSha256(key: Uint8Array, data: Uint8Array): Uint8Array {
  const k = key.length > BLOCK ? digest32('sha256', key) : key;
  const long = data.length > INNER_TEXT_MAX;
  const n = long ? BLOCK : BLOCK + data.length;
  const i = inner;
  i.fill(0x36, 0, BLOCK);
  outer.fill(0x5c, 0, BLOCK);
  for (let j = 0; j < k.length; j++) {
    i[j] = k[j]! ^ 0x36;
    outer[j] = k[j]! ^ 0x5c;
  }
  if (long) {
    const d = createHash('sha256').update(i.subarray(0, BLOCK)).update(data).digest('binary');
    for (let j = 0; j < 32; j++) outer[BLOCK + j] = d.charCodeAt(j);
  } else {
    i.set(data, BLOCK);
    digest32('sha256', i.subarray(0, n), outer, BLOCK);
  }
  i.fill(0, 0, n);
  const h = digest32('sha256', outer);
  outer.fill(0);
  return h;
}

/**
 * An array for ciphertext, every byte of which the caller writes: a view of Node's pooled slab (Buffer.allocUnsafe
 * below 4 KiB), not an array of its own, which past 64 bytes is a separate allocation outside V8's heap with its own
 * tracking. Only ciphertext goes here, never a secret.
 */
function ciphertextArray(n: number): Uint8Array {
  const b = Buffer.allocUnsafe(n);
  return new Uint8Array(b.buffer, b.byteOffset, n);
}

class NodeAead implements AeadCipher {
  readonly #alg: string;
  /** A KeyObject, not a Buffer: createCipheriv then skips re-importing the key on every call (~5x cheaper). */
  readonly #key: KeyObject;
  /**
   * GCM needs no options: its tag is 16 bytes by default and its AAD takes no plaintext length. Leaving them out
   * skips option validation on every call; ChaCha20-Poly1305 keeps them.
   */
  readonly #gcm: boolean;
  constructor(alg: string, key: Uint8Array) {
    this.#alg = alg;
    this.#key = createSecretKey(key);
    this.#gcm = alg !== 'chacha20-poly1305';
  }
  seal(nonce: Uint8Array, aad: Uint8Array, pt: Uint8Array, headroom = 0): Uint8Array {
    const c = this.#gcm ? createCipheriv(this.#alg as 'aes-128-gcm', this.#key, nonce) : createCipheriv(this.#alg as 'chacha20-poly1305', this.#key, nonce, { authTagLength: 16 });
    // An empty AAD is the same as none for GCM and ChaCha20-Poly1305; skipping the call saves a native round trip.
    if (aad.length > 0) {
      if (this.#gcm) c.setAAD(aad);
      else c.setAAD(aad, { plaintextLength: pt.length });
    }
    const a = c.update(pt);
    const b = c.final(); // empty for these stream-like modes, kept for correctness
    const tag = c.getAuthTag();
    const out = ciphertextArray(headroom + a.length + b.length + 16);
    if (headroom > 0) out.fill(0, 0, headroom);
    out.set(a, headroom);
    if (b.length > 0) out.set(b, headroom + a.length);
    out.set(tag, headroom + a.length + b.length);
    return out;
  }
  open(nonce: Uint8Array, aad: Uint8Array, ct: Uint8Array): Uint8Array {
    if (ct.length < 16) throw protocolError('AEAD_OPEN_FAILED', 'ciphertext shorter than the tag');
    const d = this.#gcm ? createDecipheriv(this.#alg as 'aes-128-gcm', this.#key, nonce) : createDecipheriv(this.#alg as 'chacha20-poly1305', this.#key, nonce, { authTagLength: 16 });
    d.setAuthTag(ct.subarray(ct.length - 16));
    if (aad.length > 0) {
      if (this.#gcm) d.setAAD(aad);
      else d.setAAD(aad, { plaintextLength: ct.length - 16 });
    }
    const a = d.update(ct.subarray(0, ct.length - 16));
    const b = d.final(); // throws when the tag does not verify
    if (b.length === 0) return new Uint8Array(a.buffer, a.byteOffset, a.length);
    const out = new Uint8Array(a.length + b.length);
    out.set(a);
    out.set(b, a.length);
    return out;
  }
}

export const nodeBackend: CryptoBackend = {
  name: 'node:crypto',
  async x25519Generate(): Promise<X25519PrivateKey> {
    const { privateKey, publicKey } = generateKeyPairSync('x25519');
    return { kind: 'x25519-private', publicKey: rawPublic(publicKey), handle: privateKey, backend: nodeBackend };
  },
  async x25519Import(sk: Uint8Array): Promise<X25519PrivateKey> {
    if (sk.length !== 32) throw protocolError('HPKE_BAD_KEY', 'X25519 private key must be 32 bytes');
    const der = Buffer.concat([X25519_PKCS8_PREFIX, sk]);
    const privateKey = createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
    der.fill(0);
    return { kind: 'x25519-private', publicKey: rawPublic(createPublicKey(privateKey)), handle: privateKey, backend: nodeBackend };
  },
  x25519(sk: X25519PrivateKey, pk: Uint8Array, ephemeralPeer = false): Uint8Array {
    if (pk.length !== 32) throw protocolError('HPKE_BAD_KEY', 'X25519 public key must be 32 bytes');
    // A view, not a copy: where the caller zeroes the shared secret after use (X-Wing), no other copy is left.
    const z = diffieHellman({ privateKey: sk.handle as KeyObject, publicKey: peerKey(pk, ephemeralPeer) });
    return new Uint8Array(z.buffer, z.byteOffset, z.length);
  },
  mlkem768Import(seed: Uint8Array): MlKem768PrivateKey {
    if (seed.length !== MLKEM768_NSEED) throw protocolError('HPKE_BAD_KEY', 'ML-KEM-768 seed must be 64 bytes');
    const key = Buffer.from(seed);
    let handle: KeyObject;
    try {
      handle = createPrivateKey({ key, format: 'raw-seed', asymmetricKeyType: 'ml-kem-768' });
    } catch (e) {
      throw protocolError('HPKE_BAD_KEY', 'ML-KEM-768 seed import failed', { cause: e });
    } finally {
      key.fill(0);
    }
    const pub = createPublicKey(handle).export({ format: 'raw-public' });
    if (pub.length !== MLKEM768_NEK) throw protocolError('HPKE_BAD_KEY', 'ML-KEM-768 encapsulation key export failed');
    return { kind: 'ml-kem-768-private', publicKey: new Uint8Array(pub.buffer, pub.byteOffset, pub.length), handle, backend: nodeBackend };
  },
  mlkem768PublicKey(ek: Uint8Array): MlKem768PublicKey {
    if (ek.length !== MLKEM768_NEK) throw protocolError('HPKE_BAD_KEY', 'ML-KEM-768 encapsulation key must be 1184 bytes');
    let handle: KeyObject;
    try {
      handle = createPublicKey({ key: Buffer.from(ek), format: 'raw-public', asymmetricKeyType: 'ml-kem-768' });
    } catch (e) {
      throw protocolError('HPKE_BAD_KEY', 'ML-KEM-768 encapsulation key check failed', { cause: e });
    }
    return { kind: 'ml-kem-768-public', handle, backend: nodeBackend };
  },
  mlkem768Encapsulate(pk: MlKem768PublicKey): { sharedSecret: Uint8Array; cipherText: Uint8Array } {
    const { sharedKey, ciphertext } = encapsulate(pk.handle as KeyObject);
    return { sharedSecret: new Uint8Array(sharedKey.buffer, sharedKey.byteOffset, sharedKey.length), cipherText: new Uint8Array(ciphertext.buffer, ciphertext.byteOffset, ciphertext.length) };
  },
  mlkem768Decapsulate(sk: MlKem768PrivateKey, ct: Uint8Array): Uint8Array {
    if (ct.length !== MLKEM768_NCT) throw protocolError('HPKE_BAD_KEY', 'ML-KEM-768 ciphertext must be 1088 bytes');
    const ss = decapsulate(sk.handle as KeyObject, ct);
    return new Uint8Array(ss.buffer, ss.byteOffset, ss.length);
  },
  hmacSha256,
  sha3_256(data: Uint8Array): Uint8Array {
    return digest32('sha3-256', data);
  },
  aead(aeadId: number, key: Uint8Array): AeadCipher {
    const p = AEAD_PARAMS[aeadId];
    const alg = CIPHER[aeadId];
    if (!p || !alg) throw protocolError('HPKE_UNSUPPORTED_SUITE', `AEAD 0x${aeadId.toString(16).padStart(4, '0')} is not supported`);
    if (key.length !== p.Nk) throw protocolError('HPKE_BAD_KEY', 'AEAD key has the wrong length');
    return new NodeAead(alg, key);
  },
};
