/**
 * NODE-ONLY (see docs/protocol.md §10): the CryptoBackend of protocol/backend.ts on node:crypto, for servers.
 * Same primitives (X25519 per RFC 7748, HMAC-SHA256, AES-GCM, ChaCha20-Poly1305 per RFC 8439), synchronous OpenSSL
 * calls instead of WebCrypto's promise-and-threadpool round trip per operation, which dominates small messages.
 * protocol/*.ts never import this file; enclave/worker code installs it with `setDefaultBackend(nodeBackend)`.
 *
 * Per-message cost matters here (every OHTTP request does an X25519 generate or import, one or two agreements and
 * ~18 HMACs per leg, and a request crosses two legs): raw X25519 public keys go in and out as JWK (`x` is the
 * base64url u-coordinate, RFC 8037 §2), which node parses and prints without a DER/ASN.1 round trip, and HMAC keys
 * are KeyObjects (node's createHmac re-imports a raw key on every call, ~3x slower).
 */
import {
  createCipheriv,
  createDecipheriv,
  createHmac,
  createPrivateKey,
  createPublicKey,
  createSecretKey,
  diffieHellman,
  generateKeyPairSync,
  type KeyObject,
} from 'node:crypto';
import { protocolError } from '../../attestation/errors.ts';
import {
  AEAD_AES_128_GCM,
  AEAD_AES_256_GCM,
  AEAD_CHACHA20_POLY1305,
  AEAD_PARAMS,
  X25519_PKCS8_PREFIX,
  type AeadCipher,
  type CryptoBackend,
  type X25519PrivateKey,
} from '../backend.ts';

const CIPHER: Record<number, string> = {
  [AEAD_AES_128_GCM]: 'aes-128-gcm',
  [AEAD_AES_256_GCM]: 'aes-256-gcm',
  [AEAD_CHACHA20_POLY1305]: 'chacha20-poly1305',
};

function rawPublic(k: KeyObject): Uint8Array {
  const x = k.export({ format: 'jwk' }).x;
  const raw = typeof x === 'string' ? Buffer.from(x, 'base64url') : undefined;
  if (!raw || raw.length !== 32) throw protocolError('HPKE_BAD_KEY', 'X25519 public key export failed');
  return new Uint8Array(raw.buffer, raw.byteOffset, raw.length);
}

/**
 * Parsed peer public keys by their bytes. A sender agrees with the same recipient key (the attested key
 * configuration) on every request, so its KeyObject is parsed once instead of per message. Public values only;
 * bounded by clearing when full (ephemeral keys seen by a gateway pass through and are dropped with the rest).
 * Same bytes, same key: the agreement and the all-zero check (hpke.ts) are unchanged.
 */
const peerKeys = new Map<string, KeyObject>();
const PEER_KEYS_MAX = 256;
function peerKey(pk: Uint8Array): KeyObject {
  const x = Buffer.from(pk.buffer, pk.byteOffset, pk.length).toString('base64url');
  let k = peerKeys.get(x);
  if (!k) {
    k = createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x }, format: 'jwk' });
    if (peerKeys.size >= PEER_KEYS_MAX) peerKeys.clear();
    peerKeys.set(x, k);
  }
  return k;
}

/** HMAC with an empty key is HMAC with the all-zero block (RFC 2104 §2): HPKE's empty salts use this one KeyObject. */
const EMPTY_HMAC_KEY = createSecretKey(new Uint8Array(0));

class NodeAead implements AeadCipher {
  readonly #alg: string;
  /** A KeyObject, not a Buffer: createCipheriv then skips re-importing the key on every call (~5x cheaper). */
  readonly #key: KeyObject;
  constructor(alg: string, key: Uint8Array) {
    this.#alg = alg;
    this.#key = createSecretKey(key);
  }
  seal(nonce: Uint8Array, aad: Uint8Array, pt: Uint8Array): Uint8Array {
    const c = createCipheriv(this.#alg as 'aes-128-gcm', this.#key, nonce, { authTagLength: 16 });
    // An empty AAD is the same as none for GCM and ChaCha20-Poly1305; skipping the call saves a native round trip.
    if (aad.length > 0) c.setAAD(aad, { plaintextLength: pt.length });
    const a = c.update(pt);
    const b = c.final();
    const tag = c.getAuthTag();
    const out = new Uint8Array(a.length + b.length + 16);
    out.set(a);
    out.set(b, a.length);
    out.set(tag, a.length + b.length);
    return out;
  }
  open(nonce: Uint8Array, aad: Uint8Array, ct: Uint8Array): Uint8Array {
    if (ct.length < 16) throw protocolError('AEAD_OPEN_FAILED', 'ciphertext shorter than the tag');
    const d = createDecipheriv(this.#alg as 'aes-128-gcm', this.#key, nonce, { authTagLength: 16 });
    d.setAuthTag(ct.subarray(ct.length - 16));
    if (aad.length > 0) d.setAAD(aad, { plaintextLength: ct.length - 16 });
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
  x25519(sk: X25519PrivateKey, pk: Uint8Array): Uint8Array {
    if (pk.length !== 32) throw protocolError('HPKE_BAD_KEY', 'X25519 public key must be 32 bytes');
    return new Uint8Array(diffieHellman({ privateKey: sk.handle as KeyObject, publicKey: peerKey(pk) }));
  },
  // node's Hmac with a KeyObject key (~3.6 us for HPKE's few-dozen-byte inputs) beats @noble/hashes in JS (~5.8 us)
  // and createHmac with raw key bytes (~12.6 us: the key is re-imported per call), median of paired runs on Node 24.
  hmacSha256(key: Uint8Array, data: Uint8Array): Uint8Array {
    const h = createHmac('sha256', key.length === 0 ? EMPTY_HMAC_KEY : createSecretKey(key)).update(data).digest();
    return new Uint8Array(h.buffer, h.byteOffset, h.length);
  },
  aead(aeadId: number, key: Uint8Array): AeadCipher {
    const p = AEAD_PARAMS[aeadId];
    const alg = CIPHER[aeadId];
    if (!p || !alg) throw protocolError('HPKE_UNSUPPORTED_SUITE', `AEAD 0x${aeadId.toString(16).padStart(4, '0')} is not supported`);
    if (key.length !== p.Nk) throw protocolError('HPKE_BAD_KEY', 'AEAD key has the wrong length');
    return new NodeAead(alg, key);
  },
};
