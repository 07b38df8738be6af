/**
 * X-Wing, the hybrid post-quantum KEM of draft-connolly-cfrg-xwing-kem-11 (ML-KEM-768 per FIPS 203 with X25519 per
 * RFC 7748), as the HPKE KEM MLKEM768-X25519, id 0x647A, of draft-ietf-hpke-pq-05 §4.
 *
 * Sizes (draft-ietf-hpke-pq-05 §8.2): Nsecret 32, Nenc 1120 (ct_M[1088] || ct_X[32]), Npk 1216 (pk_M[1184] || pk_X[32]),
 * Nsk 32 (a seed). Not an authenticated KEM: HPKE's auth modes are refused by hpke.ts.
 *
 *   expandDecapsulationKey(sk): e = SHAKE256(sk, 96); (pk_M, sk_M) = ML-KEM-768.KeyGen_internal(e[0:32], e[32:64]);
 *                               sk_X = e[64:96]; pk_X = X25519(sk_X, 9)
 *   Combiner(ss_M, ss_X, ct_X, pk_X) = SHA3-256(ss_M || ss_X || ct_X || pk_X || XWingLabel), XWingLabel = "\.//^\"
 *   DeriveKeyPair(ikm): sk = SHAKE256.LabeledDerive(ikm, "DeriveKeyPair", "", 32)   (draft-ietf-hpke-pq-05 §4; the
 *                       X-Wing draft's own HPKE section hashes ikm without the label, the HPKE WG's vectors use it)
 *
 * Both components come from the CryptoBackend: on node:crypto ML-KEM-768 and X25519 are OpenSSL's, on the portable
 * backend ML-KEM-768 is @noble/post-quantum and X25519 WebCrypto's. The X25519 all-zero output is refused (RFC 7748
 * §6.1), as DHKEM does: only a low-order point produces it, which no honest peer sends. The expanded keys are held per
 * key object (the draft's §5.5.1 "keeping expanded decapsulation key around"), never serialized. EncapsulateDerand
 * (known-answer tests only) takes ML-KEM's randomness from the caller, which node:crypto cannot: that path always
 * uses noble.
 */
import { ml_kem768 } from '@noble/post-quantum/ml-kem.js';
import { sha3_256, shake256 } from '@noble/hashes/sha3.js';
import { concat } from '../attestation/bytes.ts';
import { protocolError } from '../attestation/errors.ts';
import { MLKEM768_NCT, MLKEM768_NEK, type CryptoBackend, type MlKem768PrivateKey, type MlKem768PublicKey, type X25519PrivateKey } from './backend.ts';

/** HPKE KEM identifier of MLKEM768-X25519 (X-Wing). */
export const KEM_MLKEM768_X25519 = 0x647a;
export const XWING_NSECRET = 32;
export const XWING_NENC = 1120;
export const XWING_NPK = 1216;
export const XWING_NSK = 32;
/** Bytes of encapsulation randomness EncapsulateDerand takes: ML-KEM's m[32], then the X25519 ephemeral scalar[32]. */
export const XWING_NRANDOM = 64;
const MLKEM_NCT = MLKEM768_NCT;
const MLKEM_NEK = MLKEM768_NEK;
const X_LEN = 32;

/** XWingLabel, the ASCII bytes `\./` `/^\` (draft §5.3). */
export const XWING_LABEL = Uint8Array.of(0x5c, 0x2e, 0x2f, 0x2f, 0x5e, 0x5c);

/** An X-Wing decapsulation key held in memory; `publicKey` is the 1216-byte encapsulation key. Never serialized. */
export interface XWingPrivateKey {
  readonly kind: 'xwing-private';
  readonly publicKey: Uint8Array;
  readonly backend: CryptoBackend;
}

interface Expanded {
  readonly m: MlKem768PrivateKey;
  readonly x: X25519PrivateKey;
  readonly pkX: Uint8Array;
}

/** The expanded halves live here, out of reach of property enumeration and JSON.stringify. */
const expandedKeys = new WeakMap<XWingPrivateKey, Expanded>();

function badKey(msg: string, cause?: unknown): never {
  throw protocolError('HPKE_BAD_KEY', msg, cause === undefined ? undefined : { cause });
}

/** The combiner's input, reused (the hash reads it before it returns) and its secret half zeroed after each use. */
const combinerInput = new Uint8Array(4 * 32 + XWING_LABEL.length);

/**
 * Combiner (draft §5.3). The order is the point: ss_M first, the label last. SHA3-256 is the backend's (node:crypto's
 * on servers) when one is given, else @noble/hashes'.
 */
export function combiner(ssM: Uint8Array, ssX: Uint8Array, ctX: Uint8Array, pkX: Uint8Array, backend?: CryptoBackend): Uint8Array {
  if (ssM.length !== 32 || ssX.length !== 32 || ctX.length !== X_LEN || pkX.length !== X_LEN) badKey('X-Wing combiner inputs must be 32 bytes each');
  const input = combinerInput;
  input.set(ssM);
  input.set(ssX, 32);
  input.set(ctX, 64);
  input.set(pkX, 96);
  input.set(XWING_LABEL, 128);
  try {
    return backend ? backend.sha3_256(input) : sha3_256(input);
  } finally {
    input.fill(0, 0, 64);
  }
}

/** X25519 with the all-zero check; `ephemeralPeer` as in CryptoBackend.x25519. */
async function x25519(sk: X25519PrivateKey, pk: Uint8Array, ephemeralPeer = false): Promise<Uint8Array> {
  let out: Uint8Array;
  try {
    out = await sk.backend.x25519(sk, pk, ephemeralPeer);
  } catch (e) {
    badKey('X25519 agreement failed', e);
  }
  let z = 0;
  for (const b of out) z |= b;
  if (z === 0) badKey('X25519 agreement produced the all-zero value');
  return out;
}

/** GenerateKeyPairDerand(sk) (draft §5.2.1): expands the 32-byte seed into both component key pairs. */
export async function xwingFromSeed(seed: Uint8Array, backend: CryptoBackend): Promise<XWingPrivateKey> {
  if (seed.length !== XWING_NSK) badKey('X-Wing private key must be 32 bytes');
  const e = shake256(seed, { dkLen: 96 });
  try {
    const m = await backend.mlkem768Import(e.subarray(0, 64));
    const x = await backend.x25519Import(e.subarray(64, 96));
    const key: XWingPrivateKey = { kind: 'xwing-private', publicKey: concat(m.publicKey, x.publicKey), backend };
    expandedKeys.set(key, { m, x, pkX: x.publicKey });
    return key;
  } finally {
    e.fill(0);
  }
}

/** GenerateKeyPair() (draft §5.2). */
export function generateXWing(backend: CryptoBackend): Promise<XWingPrivateKey> {
  const seed = crypto.getRandomValues(new Uint8Array(XWING_NSK));
  return xwingFromSeed(seed, backend).finally(() => seed.fill(0));
}

const enc = new TextEncoder();

/**
 * SHAKE256.LabeledDerive(ikm, label, context, L) with suite_id "KEM" || I2OSP(0x647A, 2): draft-ietf-hpke-hpke's
 * LabeledDerive over the SHAKE256 KDF of draft-ietf-hpke-pq-05 §5.
 */
function labeledDerive(ikm: Uint8Array, label: string, context: Uint8Array, L: number): Uint8Array {
  const l = enc.encode(label);
  const suiteId = concat(enc.encode('KEM'), Uint8Array.of(KEM_MLKEM768_X25519 >> 8, KEM_MLKEM768_X25519 & 0xff));
  const labeledIkm = concat(ikm, enc.encode('HPKE-v1'), suiteId, Uint8Array.of(l.length >> 8, l.length & 0xff), l, Uint8Array.of(L >> 8, L & 0xff), context);
  try {
    return shake256(labeledIkm, { dkLen: L });
  } finally {
    labeledIkm.fill(0);
  }
}

/** DeriveKeyPair(ikm) (draft-ietf-hpke-pq-05 §4). */
export async function deriveXWing(ikm: Uint8Array, backend: CryptoBackend): Promise<XWingPrivateKey> {
  const seed = labeledDerive(ikm, 'DeriveKeyPair', new Uint8Array(0), XWING_NSK);
  try {
    return await xwingFromSeed(seed, backend);
  } finally {
    seed.fill(0);
  }
}

/**
 * Parsed ML-KEM encapsulation keys by the array that holds them: a client encapsulates to the same attested key on
 * every request, and parsing (the FIPS 203 §7.2 modulus check, and on noble the expansion of Â) is a large part of an
 * encapsulation. A hit is confirmed by comparing the bytes and the backend, so a mutated array is parsed again, never
 * trusted.
 */
const parsedKeys = new WeakMap<Uint8Array, { bytes: Uint8Array; pub: MlKem768PublicKey }>();

/**
 * Byte equality of two public keys, 32 bits at a time where both arrays allow a 4-byte aligned view (a key
 * configuration's key is a copy of its own, so it does): a client compares its 1216-byte key on every request.
 */
function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let d = 0;
  let i = 0;
  if (a.byteOffset % 4 === 0 && b.byteOffset % 4 === 0) {
    const n = a.length >>> 2;
    const wa = new Int32Array(a.buffer, a.byteOffset, n);
    const wb = new Int32Array(b.buffer, b.byteOffset, n);
    for (; i < n; i++) d |= wa[i]! ^ wb[i]!;
    i = n << 2;
  }
  for (; i < a.length; i++) d |= a[i]! ^ b[i]!;
  return d === 0;
}

function parsedFor(pk: Uint8Array, backend: CryptoBackend): MlKem768PublicKey {
  const hit = parsedKeys.get(pk);
  if (hit && hit.pub.backend === backend && equalBytes(hit.bytes, pk)) return hit.pub;
  // The encapsulation key check of FIPS 203 §7.2 fails here (HPKE_BAD_KEY): an HPKE EncapError (draft-ietf-hpke-pq-05 §3).
  const pub = backend.mlkem768PublicKey(pk.subarray(0, MLKEM_NEK));
  parsedKeys.set(pk, { bytes: pk.slice(), pub });
  return pub;
}

/** ML-KEM-768.Encaps_internal with caller-chosen m (FIPS 203 Algorithm 17), for EncapsulateDerand only. */
function encapsulateDerand(pkM: Uint8Array, m: Uint8Array): { cipherText: Uint8Array; sharedSecret: Uint8Array } {
  try {
    return ml_kem768.prepare(pkM).encapsulate(m);
  } catch (e) {
    badKey('ML-KEM-768 encapsulation key check failed', e);
  }
}

/**
 * Encapsulate(pk) (draft §5.4), or EncapsulateDerand(pk, eseed) when `eseed` is given (TEST-ONLY: known-answer tests;
 * fixed randomness destroys the KEM's security).
 */
export async function encapXWing(pk: Uint8Array, backend: CryptoBackend, eseed?: Uint8Array): Promise<{ sharedSecret: Uint8Array; enc: Uint8Array }> {
  if (pk.length !== XWING_NPK) badKey('X-Wing public key must be 1216 bytes');
  if (eseed !== undefined && eseed.length !== XWING_NRANDOM) badKey('X-Wing encapsulation randomness must be 64 bytes');
  const pkX = pk.subarray(MLKEM_NEK);
  const { cipherText: ctM, sharedSecret: ssM } = eseed
    ? encapsulateDerand(pk.subarray(0, MLKEM_NEK), eseed.subarray(0, 32))
    : backend.mlkem768Encapsulate(parsedFor(pk, backend));
  let ssX: Uint8Array;
  let ek: X25519PrivateKey;
  try {
    ek = eseed ? await backend.x25519Import(eseed.subarray(32, 64)) : await backend.x25519Generate();
    ssX = await x25519(ek, pkX);
  } catch (e) {
    ssM.fill(0);
    throw e;
  }
  const ctX = ek.publicKey;
  try {
    return { sharedSecret: combiner(ssM, ssX, ctX, pkX, backend), enc: concat(ctM, ctX) };
  } finally {
    ssM.fill(0);
    ssX.fill(0);
  }
}

/** Decapsulate(ct, sk) (draft §5.5). ML-KEM rejects implicitly: a wrong ct_M gives a wrong secret, not an error. */
export async function decapXWing(ct: Uint8Array, sk: XWingPrivateKey): Promise<Uint8Array> {
  if (ct.length !== XWING_NENC) badKey('X-Wing encapsulated key must be 1120 bytes');
  const k = expandedKeys.get(sk) ?? badKey('not an X-Wing private key of this module');
  const ctX = ct.subarray(MLKEM_NCT);
  const ssX = await x25519(k.x, ctX, true);
  let ssM: Uint8Array;
  try {
    ssM = k.m.backend.mlkem768Decapsulate(k.m, ct.subarray(0, MLKEM_NCT));
  } catch (e) {
    badKey('ML-KEM-768 decapsulation failed', e);
  }
  try {
    return combiner(ssM, ssX, ctX, k.pkX, sk.backend);
  } finally {
    ssM.fill(0);
    ssX.fill(0);
  }
}
