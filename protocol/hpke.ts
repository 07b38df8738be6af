/**
 * Hybrid Public Key Encryption, RFC 9180: DHKEM(X25519, HKDF-SHA256) (§4.1, §7.1) and the hybrid post-quantum KEM
 * MLKEM768-X25519 ("X-Wing", draft-ietf-hpke-pq-05, protocol/xwing.ts), HKDF-SHA256 (§7.2), the AEADs
 * AES-128-GCM, AES-256-GCM, ChaCha20-Poly1305 and export-only (§7.3); all four modes (§5.1): base, psk, auth, auth_psk;
 * encryption contexts with the sequence-number limit (§5.2) and the secret export interface (§5.3).
 *
 * Names follow the RFC: SetupBaseS/R, KeySchedule, LabeledExtract, LabeledExpand, Encap/Decap, AuthEncap/AuthDecap.
 * X-Wing is not an authenticated KEM (draft-ietf-hpke-pq-05 §7.2): the auth modes refuse it with HPKE_UNSUPPORTED_MODE.
 * Primitives come from a CryptoBackend (protocol/backend.ts); every failure to open is the one code HPKE_OPEN_FAILED.
 */
import { concat, equalBytes } from '../attestation/bytes.ts';
import { protocolError } from '../attestation/errors.ts';
import {
  AEAD_AES_128_GCM,
  AEAD_AES_256_GCM,
  AEAD_CHACHA20_POLY1305,
  AEAD_EXPORT_ONLY,
  AEAD_PARAMS,
  defaultBackend,
  type AeadCipher,
  type CryptoBackend,
  type X25519PrivateKey,
} from './backend.ts';
import {
  KEM_MLKEM768_X25519,
  XWING_NENC,
  XWING_NPK,
  XWING_NSECRET,
  XWING_NSK,
  decapXWing,
  deriveXWing,
  encapXWing,
  generateXWing,
  xwingFromSeed,
  type XWingPrivateKey,
} from './xwing.ts';

export { AEAD_AES_128_GCM, AEAD_AES_256_GCM, AEAD_CHACHA20_POLY1305, AEAD_EXPORT_ONLY };
export type { CryptoBackend, X25519PrivateKey, XWingPrivateKey };
export { KEM_MLKEM768_X25519, XWING_NENC, XWING_NPK, XWING_NSECRET, XWING_NSK };

/** KEM and KDF identifiers (RFC 9180 §7.1, §7.2; 0x647A per draft-ietf-hpke-pq-05 §8.2). Only these are implemented. */
export const KEM_X25519_HKDF_SHA256 = 0x0020;
export const KDF_HKDF_SHA256 = 0x0001;

/** Modes (RFC 9180 §5, Table 1). */
export const MODE_BASE = 0x00;
export const MODE_PSK = 0x01;
export const MODE_AUTH = 0x02;
export const MODE_AUTH_PSK = 0x03;
export type Mode = typeof MODE_BASE | typeof MODE_PSK | typeof MODE_AUTH | typeof MODE_AUTH_PSK;

/** DHKEM(X25519, HKDF-SHA256) sizes (RFC 9180 §7.1): Nsecret, Nenc, Npk, Nsk; HKDF-SHA256 Nh (§7.2). */
export const X25519_NSECRET = 32;
export const X25519_NENC = 32;
export const X25519_NPK = 32;
export const X25519_NSK = 32;
export const NH = 32;

/** Per-KEM sizes (RFC 9180 §7.1 Table 2; draft-ietf-hpke-pq-05 §8.2) and whether AuthEncap/AuthDecap exist. */
export interface KemParams {
  readonly Nsecret: number;
  readonly Nenc: number;
  readonly Npk: number;
  readonly Nsk: number;
  readonly auth: boolean;
}
export const KEM_PARAMS: Readonly<Record<number, KemParams | undefined>> = {
  [KEM_X25519_HKDF_SHA256]: { Nsecret: X25519_NSECRET, Nenc: X25519_NENC, Npk: X25519_NPK, Nsk: X25519_NSK, auth: true },
  [KEM_MLKEM768_X25519]: { Nsecret: XWING_NSECRET, Nenc: XWING_NENC, Npk: XWING_NPK, Nsk: XWING_NSK, auth: false },
};

export interface SuiteIds {
  readonly kemId: number;
  readonly kdfId: number;
  readonly aeadId: number;
}

/** True when this module implements the suite (so a caller can enumerate what it does not). */
export function isSupportedSuite(s: SuiteIds): boolean {
  return (
    KEM_PARAMS[s.kemId] !== undefined &&
    s.kdfId === KDF_HKDF_SHA256 &&
    (s.aeadId === AEAD_EXPORT_ONLY || AEAD_PARAMS[s.aeadId] !== undefined)
  );
}

/** A recipient or sender key pair; the private part stays inside the backend (X25519) or this process (X-Wing). */
export type KeyPair = X25519PrivateKey | XWingPrivateKey;

export interface SetupOptions {
  /** Defaults to `defaultBackend()`. */
  readonly backend?: CryptoBackend;
  /**
   * TEST-ONLY: use this ephemeral key pair instead of a fresh one (RFC 9180 Appendix A and RFC 9458 Appendix A
   * known-answer tests). Reusing an ephemeral key across messages destroys HPKE's security; production code never sets it.
   */
  readonly ephemeralKeyPair?: KeyPair;
  /**
   * TEST-ONLY, X-Wing: the 64 bytes of EncapsulateDerand randomness (the `ikmE` of draft-ietf-hpke-pq-05's vectors).
   * Same warning as `ephemeralKeyPair`.
   */
  readonly encapRandomness?: Uint8Array;
  /**
   * Encap(pkR) made ahead of its message (`prepareEncap`): a base- or PSK-mode sender setup is Encap followed by
   * KeyScheduleS (§5.1.1, §5.1.2), and Encap depends on neither the message nor `info`. Taken once; it must have been
   * made for this suite's KEM and this pkR.
   */
  readonly prepared?: PreparedEncap;
}

/**
 * The result of Encap(pkR) (§4, §5.1.1) held for one message that is not yet written: a client makes it while it
 * waits (for the previous answer, or for its user), so the public-key work leaves the request's latency. Its shared
 * secret is handed out once, then zeroed; `discard()` zeroes an unused one. Each message still gets its own
 * ephemeral key: nothing here is reused.
 */
export class PreparedEncap {
  readonly kemId: number;
  readonly pkR: Uint8Array;
  readonly enc: Uint8Array;
  #sharedSecret: Uint8Array | undefined;
  constructor(kemId: number, pkR: Uint8Array, enc: Uint8Array, sharedSecret: Uint8Array) {
    this.kemId = kemId;
    this.pkR = pkR;
    this.enc = enc;
    this.#sharedSecret = sharedSecret;
  }
  /** Whether it was taken or discarded. */
  get used(): boolean {
    return this.#sharedSecret === undefined;
  }
  /** The shared secret, once, for a setup with this KEM and pkR. */
  take(kemId: number, pkR: Uint8Array): { sharedSecret: Uint8Array; enc: Uint8Array } {
    const ss = this.#sharedSecret;
    if (!ss) throw protocolError('HPKE_PREPARED_USED', 'a prepared encapsulation is used once');
    // The SDK hands in the very key it prepared for; any other array is compared byte by byte.
    if (kemId !== this.kemId || (pkR !== this.pkR && !equalBytes(pkR, this.pkR))) throw protocolError('HPKE_PREPARED_MISMATCH', 'the prepared encapsulation was made for another KEM or recipient key');
    this.#sharedSecret = undefined;
    return { sharedSecret: ss, enc: this.enc };
  }
  discard(): void {
    this.#sharedSecret?.fill(0);
    this.#sharedSecret = undefined;
  }
}

/** Encap(pkR) for a later base- or PSK-mode SetupS with `prepared` (§5.1.1, §5.1.2). */
export async function prepareEncap(suite: SuiteIds, pkR: Uint8Array, o: { readonly backend?: CryptoBackend } = {}): Promise<PreparedEncap> {
  if (KEM_PARAMS[suite.kemId] === undefined) throw protocolError('HPKE_UNSUPPORTED_SUITE', `unsupported KEM ${suite.kemId}`);
  const b = o.backend ?? defaultBackend();
  const { sharedSecret, enc } = suite.kemId === KEM_MLKEM768_X25519 ? await encapXWing(pkR, b) : await encap(b, pkR, undefined, undefined);
  return new PreparedEncap(suite.kemId, pkR, enc, sharedSecret);
}

/** Encryption context of the sender (RFC 9180 §5.2). */
export interface SenderContext {
  readonly suite: SuiteIds;
  /**
   * Seal(aad, pt): encrypts with the next sequence number. Throws HPKE_EXPORT_ONLY or HPKE_MESSAGE_LIMIT. With
   * `headroom`, that many zero bytes come before the ciphertext, for a header the caller writes in place.
   */
  seal(aad: Uint8Array, pt: Uint8Array, headroom?: number): Promise<Uint8Array>;
  /** Export(exporter_context, L) (§5.3); L at most 255 * Nh. */
  export(exporterContext: Uint8Array, L: number): Uint8Array;
  /** Number of messages sealed so far (the next sequence number). */
  readonly seq: number;
}

/** Encryption context of the recipient (RFC 9180 §5.2). */
export interface ReceiverContext {
  readonly suite: SuiteIds;
  /**
   * Open(aad, ct): decrypts with the next sequence number; any failure throws HPKE_OPEN_FAILED and leaves seq unchanged.
   * Calls must not overlap (await each): ciphertexts are opened in the order they were sealed.
   */
  open(aad: Uint8Array, ct: Uint8Array): Promise<Uint8Array>;
  export(exporterContext: Uint8Array, L: number): Uint8Array;
  readonly seq: number;
  /**
   * Opens with an explicit sequence number without advancing the context. Only for classifying a failure that
   * already happened (chunked OHTTP reports "duplicate" vs "dropped"); the decision to reject never depends on it.
   */
  openAt(seq: number, aad: Uint8Array, ct: Uint8Array): Promise<Uint8Array | undefined>;
}

const enc = new TextEncoder();
const HPKE_V1 = enc.encode('HPKE-v1');

/**
 * The ASCII bytes of a label (RFC 9180 §4 labels and RFC 9458 §4.4 strings), encoded once: each request runs ~20
 * labeled derivations per OHTTP leg, and TextEncoder.encode of a short string costs more than the copy it feeds.
 * Labels are the protocol's fixed constants (a handful), never request data; callers must not mutate the result.
 */
const labelCache = new Map<string, Uint8Array>();
export function labelBytes(label: string): Uint8Array {
  let v = labelCache.get(label);
  if (!v) {
    v = enc.encode(label);
    if (labelCache.size < 64) labelCache.set(label, v);
  }
  return v;
}
const EMPTY = new Uint8Array(0);

function i2osp(n: number, w: number): Uint8Array {
  const out = new Uint8Array(w);
  for (let i = w - 1, x = n; i >= 0 && x > 0; i--, x = Math.floor(x / 256)) out[i] = x & 0xff;
  return out;
}

function unsupported(s: SuiteIds): never {
  const h = (x: number) => `0x${x.toString(16).padStart(4, '0')}`;
  throw protocolError('HPKE_UNSUPPORTED_SUITE', `HPKE suite KEM ${h(s.kemId)} KDF ${h(s.kdfId)} AEAD ${h(s.aeadId)} is not supported`);
}

/** HKDF-Extract (RFC 5869 §2.2): HMAC-Hash(salt, IKM); an empty salt is HashLen zeros, which HMAC pads identically. */
function extract(b: CryptoBackend, salt: Uint8Array, ikm: Uint8Array): Uint8Array {
  return b.hmacSha256(salt, ikm);
}

/** HKDF-Expand (RFC 5869 §2.3). */
function expand(b: CryptoBackend, prk: Uint8Array, info: Uint8Array, L: number): Uint8Array {
  if (L > 255 * NH) throw protocolError('HPKE_EXPORT_TOO_LONG', `HKDF-Expand length ${L} exceeds 255 * Nh`);
  if (L <= NH) return firstBlock(b, prk, EMPTY, info, L);
  const out = new Uint8Array(L);
  let t: Uint8Array = EMPTY;
  for (let i = 1, o = 0; o < L; i++) {
    t = b.hmacSha256(prk, concat(t, info, Uint8Array.of(i)));
    out.set(t.subarray(0, Math.min(NH, L - o)), o);
    o += NH;
  }
  return out;
}

/**
 * The fixed head of a labeled input (§4): "HPKE-v1" || suite_id || label for LabeledExtract, and I2OSP(L, 2) before
 * it for LabeledExpand. Built once per suite, label and L (protocol constants, a few dozen at most), not per call.
 */
const prefixes = new WeakMap<Uint8Array, Map<string, LabelPrefixes>>();
interface LabelPrefixes {
  extract?: Uint8Array;
  readonly expand: Map<number, Uint8Array>;
}
function labeledPrefix(suiteId: Uint8Array, label: string, L?: number): Uint8Array {
  let m = prefixes.get(suiteId);
  if (!m) {
    m = new Map();
    prefixes.set(suiteId, m);
  }
  let p = m.get(label);
  if (!p) {
    p = { expand: new Map() };
    if (m.size < 64) m.set(label, p);
  }
  if (L === undefined) return (p.extract ??= concat(HPKE_V1, suiteId, labelBytes(label)));
  let v = p.expand.get(L);
  if (!v) {
    v = concat(i2osp(L, 2), HPKE_V1, suiteId, labelBytes(label));
    if (p.expand.size < 16) p.expand.set(L, v);
  }
  return v;
}

/**
 * Scratch for labeled inputs, reused by every derivation: a fresh Uint8Array longer than 64 bytes gets its own
 * off-heap ArrayBuffer, which in Node costs about as much as the HMAC over it. The backends' HMACs read their input
 * before they return (they are synchronous), and the scratch is zeroed after each use: it held a shared secret, a
 * PSK or a secret's context.
 */
const scratch = new Uint8Array(1024);
/** The scratch, or for a longer input (an unusually long info or PSK) an array of its own, not kept. */
function scratchFor(n: number): Uint8Array {
  return n > scratch.length ? new Uint8Array(n) : scratch;
}

/** LabeledExtract(salt, label, ikm) (§4). */
function labeledExtract(b: CryptoBackend, suiteId: Uint8Array, salt: Uint8Array, label: string, ikm: Uint8Array): Uint8Array {
  const p = labeledPrefix(suiteId, label);
  const n = p.length + ikm.length;
  const s = scratchFor(n);
  s.set(p);
  s.set(ikm, p.length);
  try {
    return extract(b, salt, s.subarray(0, n));
  } finally {
    s.fill(0, 0, n);
  }
}

/** LabeledExpand(prk, label, info, L) (§4). */
function labeledExpand(b: CryptoBackend, suiteId: Uint8Array, prk: Uint8Array, label: string, info: Uint8Array, L: number): Uint8Array {
  const p = labeledPrefix(suiteId, label, L);
  if (L > NH) return expand(b, prk, concat(p, info), L);
  return firstBlock(b, prk, p, info, L);
}

/**
 * HKDF-Expand's first block (RFC 5869 §2.3), T(1) = HMAC(prk, head || info || 0x01) cut to L <= Nh: every key, nonce
 * and secret HPKE derives is one block. The input is built in the scratch, without concatenating `head` and `info`.
 */
function firstBlock(b: CryptoBackend, prk: Uint8Array, head: Uint8Array, info: Uint8Array, L: number): Uint8Array {
  const n = head.length + info.length + 1;
  const s = scratchFor(n);
  s.set(head);
  s.set(info, head.length);
  s[n - 1] = 1;
  try {
    const t = b.hmacSha256(prk, s.subarray(0, n));
    return L === NH ? t : t.slice(0, L);
  } finally {
    s.fill(0, 0, n);
  }
}

const KEM_SUITE_ID = concat(enc.encode('KEM'), i2osp(KEM_X25519_HKDF_SHA256, 2));

/** DeriveKeyPair(ikm) for X25519 (§7.1.3). */
export async function deriveKeyPair(ikm: Uint8Array, backend: CryptoBackend = defaultBackend()): Promise<KeyPair> {
  const dkpPrk = labeledExtract(backend, KEM_SUITE_ID, EMPTY, 'dkp_prk', ikm);
  const sk = labeledExpand(backend, KEM_SUITE_ID, dkpPrk, 'sk', EMPTY, X25519_NSK);
  try {
    return await backend.x25519Import(sk);
  } finally {
    sk.fill(0);
  }
}

/** GenerateKeyPair() (§4). */
export function generateKeyPair(backend: CryptoBackend = defaultBackend()): Promise<KeyPair> {
  return backend.x25519Generate();
}

/** DeserializePrivateKey (§7.1.2): imports a raw 32-byte X25519 scalar. */
export function importPrivateKey(sk: Uint8Array, backend: CryptoBackend = defaultBackend()): Promise<KeyPair> {
  return backend.x25519Import(sk);
}

/** GenerateKeyPair() of the given KEM. */
export function generateKemKeyPair(kemId: number, backend: CryptoBackend = defaultBackend()): Promise<KeyPair> {
  if (kemId === KEM_MLKEM768_X25519) return generateXWing(backend);
  if (kemId === KEM_X25519_HKDF_SHA256) return backend.x25519Generate();
  return unsupportedKem(kemId);
}

/** DeriveKeyPair(ikm) of the given KEM (RFC 9180 §7.1.3; draft-ietf-hpke-pq-05 §4). */
export function deriveKemKeyPair(kemId: number, ikm: Uint8Array, backend: CryptoBackend = defaultBackend()): Promise<KeyPair> {
  if (kemId === KEM_MLKEM768_X25519) return deriveXWing(ikm, backend);
  if (kemId === KEM_X25519_HKDF_SHA256) return deriveKeyPair(ikm, backend);
  return unsupportedKem(kemId);
}

/** DeserializePrivateKey of the given KEM: a 32-byte X25519 scalar, or a 32-byte X-Wing seed. */
export function importKemPrivateKey(kemId: number, sk: Uint8Array, backend: CryptoBackend = defaultBackend()): Promise<KeyPair> {
  if (kemId === KEM_MLKEM768_X25519) return xwingFromSeed(sk, backend);
  if (kemId === KEM_X25519_HKDF_SHA256) return backend.x25519Import(sk);
  return unsupportedKem(kemId);
}

/** The KEM a key pair belongs to. */
export function kemIdOf(k: KeyPair): number {
  return k.kind === 'xwing-private' ? KEM_MLKEM768_X25519 : KEM_X25519_HKDF_SHA256;
}

function unsupportedKem(kemId: number): never {
  throw protocolError('HPKE_UNSUPPORTED_SUITE', `KEM 0x${kemId.toString(16).padStart(4, '0')} is not supported`);
}

function asX25519(k: KeyPair): X25519PrivateKey {
  if (k.kind !== 'x25519-private') throw protocolError('HPKE_BAD_KEY', 'the key does not belong to the suite\'s KEM');
  return k;
}

function asXWing(k: KeyPair): XWingPrivateKey {
  if (k.kind !== 'xwing-private') throw protocolError('HPKE_BAD_KEY', 'the key does not belong to the suite\'s KEM');
  return k;
}

/** DH(sk, pk) with the all-zero check of §7.1.1 (RFC 7748 §6.1); `ephemeralPeer` as in CryptoBackend.x25519. */
async function dh(sk: X25519PrivateKey, pk: Uint8Array, ephemeralPeer = false): Promise<Uint8Array> {
  if (pk.length !== X25519_NPK) throw protocolError('HPKE_BAD_KEY', 'X25519 public key must be 32 bytes');
  let out: Uint8Array;
  try {
    out = await sk.backend.x25519(sk, pk, ephemeralPeer);
  } catch (e) {
    throw protocolError('HPKE_BAD_KEY', 'X25519 agreement failed', { cause: e });
  }
  let z = 0;
  for (const x of out) z |= x;
  if (z === 0) throw protocolError('HPKE_BAD_KEY', 'X25519 agreement produced the all-zero value');
  return out;
}

/** ExtractAndExpand(dh, kem_context) (§4.1). */
function extractAndExpand(b: CryptoBackend, dhv: Uint8Array, kemContext: Uint8Array): Uint8Array {
  const eaePrk = labeledExtract(b, KEM_SUITE_ID, EMPTY, 'eae_prk', dhv);
  return labeledExpand(b, KEM_SUITE_ID, eaePrk, 'shared_secret', kemContext, X25519_NSECRET);
}

/** Encap / AuthEncap (§4.1). */
async function encap(b: CryptoBackend, pkR: Uint8Array, skS: X25519PrivateKey | undefined, eph: X25519PrivateKey | undefined) {
  const skE = eph ?? (await b.x25519Generate());
  const encv = skE.publicKey;
  const dhv = skS ? concat(await dh(skE, pkR), await dh(skS, pkR)) : await dh(skE, pkR);
  const kemContext = skS ? concat(encv, pkR, skS.publicKey) : concat(encv, pkR);
  return { sharedSecret: extractAndExpand(b, dhv, kemContext), enc: encv };
}

/** Decap / AuthDecap (§4.1). */
async function decap(b: CryptoBackend, encv: Uint8Array, skR: X25519PrivateKey, pkS: Uint8Array | undefined): Promise<Uint8Array> {
  if (encv.length !== X25519_NENC) throw protocolError('HPKE_BAD_KEY', 'encapsulated key must be 32 bytes');
  const dhv = pkS ? concat(await dh(skR, encv, true), await dh(skR, pkS)) : await dh(skR, encv, true);
  const kemContext = pkS ? concat(encv, skR.publicKey, pkS) : concat(encv, skR.publicKey);
  return extractAndExpand(b, dhv, kemContext);
}

/** Values the key schedule produced, exposed for the RFC 9180 known-answer tests. */
export interface KeyScheduleValues {
  readonly sharedSecret: Uint8Array;
  readonly keyScheduleContext: Uint8Array;
  readonly secret: Uint8Array;
  readonly key: Uint8Array;
  readonly baseNonce: Uint8Array;
  readonly exporterSecret: Uint8Array;
}

/** VerifyPSKInputs (§5.1). */
function verifyPskInputs(mode: Mode, psk: Uint8Array, pskId: Uint8Array): void {
  const gotPsk = psk.length > 0;
  const gotPskId = pskId.length > 0;
  if (gotPsk !== gotPskId) throw protocolError('HPKE_BAD_PSK', 'psk and psk_id must be given together');
  const needPsk = mode === MODE_PSK || mode === MODE_AUTH_PSK;
  if (gotPsk && !needPsk) throw protocolError('HPKE_BAD_PSK', 'psk given in a mode without psk');
  if (!gotPsk && needPsk) throw protocolError('HPKE_BAD_PSK', 'psk mode without psk');
  // §9.5: the PSK must have at least 32 bytes of entropy.
  if (gotPsk && psk.length < 32) throw protocolError('HPKE_BAD_PSK', 'psk shorter than 32 bytes');
}

/** Message limit: the RFC's (1 << 8*Nn) - 1 is 2^96 - 1; a JS number counter stops earlier, at 2^53 - 1. */
export const MAX_SEQUENCE = Number.MAX_SAFE_INTEGER;

class Context implements SenderContext, ReceiverContext {
  readonly suite: SuiteIds;
  readonly values: KeyScheduleValues;
  readonly #b: CryptoBackend;
  readonly #suiteId: Uint8Array;
  readonly #cipher: AeadCipher | undefined;
  readonly #nonce: Uint8Array;
  #seq = 0;

  constructor(b: CryptoBackend, suite: SuiteIds, suiteId: Uint8Array, values: KeyScheduleValues, cipher: AeadCipher | undefined) {
    this.#b = b;
    this.suite = suite;
    this.#suiteId = suiteId;
    this.values = values;
    this.#cipher = cipher;
    this.#nonce = new Uint8Array(values.baseNonce.length);
  }

  get seq(): number {
    return this.#seq;
  }

  /** ComputeNonce(seq) (§5.2): base_nonce XOR I2OSP(seq, Nn). */
  #computeNonce(seq: number): Uint8Array {
    const n = this.#nonce;
    const base = this.values.baseNonce;
    n.set(base);
    let x = seq;
    for (let i = n.length - 1; x > 0; i--, x = Math.floor(x / 256)) n[i] = base[i]! ^ (x & 0xff);
    return n.slice();
  }

  #aead(): AeadCipher {
    if (!this.#cipher) throw protocolError('HPKE_EXPORT_ONLY', 'the export-only AEAD cannot seal or open');
    if (this.#seq >= MAX_SEQUENCE) throw protocolError('HPKE_MESSAGE_LIMIT', 'HPKE message limit reached');
    return this.#cipher;
  }

  async seal(aad: Uint8Array, pt: Uint8Array, headroom = 0): Promise<Uint8Array> {
    const c = this.#aead();
    // IncrementSeq before awaiting the AEAD: overlapping calls get distinct nonces, a failed call burns its number.
    const seq = this.#seq++;
    return c.seal(this.#computeNonce(seq), aad, pt, headroom);
  }

  async open(aad: Uint8Array, ct: Uint8Array): Promise<Uint8Array> {
    const c = this.#aead();
    const seq = this.#seq;
    let pt: Uint8Array;
    try {
      pt = await c.open(this.#computeNonce(seq), aad, ct);
    } catch (e) {
      throw protocolError('HPKE_OPEN_FAILED', 'HPKE open failed', { cause: e });
    }
    if (this.#seq !== seq) throw protocolError('HPKE_CONCURRENT_OPEN', 'overlapping open calls on one context');
    this.#seq = seq + 1;
    return pt;
  }

  async openAt(seq: number, aad: Uint8Array, ct: Uint8Array): Promise<Uint8Array | undefined> {
    if (!this.#cipher || !Number.isSafeInteger(seq) || seq < 0) return undefined;
    try {
      return await this.#cipher.open(this.#computeNonce(seq), aad, ct);
    } catch {
      return undefined;
    }
  }

  export(exporterContext: Uint8Array, L: number): Uint8Array {
    if (!Number.isInteger(L) || L < 0 || L > 255 * NH) throw protocolError('HPKE_EXPORT_TOO_LONG', `export length ${L} out of range`);
    return labeledExpand(this.#b, this.#suiteId, this.values.exporterSecret, 'sec', exporterContext, L);
  }

  /** TEST-ONLY: position the sequence number (to test the message limit without 2^53 operations). */
  setSequenceForTesting(seq: number): void {
    this.#seq = seq;
  }
}

/** suite_id = "HPKE" || I2OSP(kem_id, 2) || I2OSP(kdf_id, 2) || I2OSP(aead_id, 2) (§5.1): one array per supported suite. */
const suiteIds = new Map<number, Uint8Array>();
function suiteIdOf(s: SuiteIds): Uint8Array {
  const k = s.kemId * 2 ** 32 + s.kdfId * 2 ** 16 + s.aeadId;
  let v = suiteIds.get(k);
  if (!v) {
    v = concat(labelBytes('HPKE'), i2osp(s.kemId, 2), i2osp(s.kdfId, 2), i2osp(s.aeadId, 2));
    if (suiteIds.size < 64) suiteIds.set(k, v);
  }
  return v;
}

/** key_schedule_context = mode || psk_id_hash || info_hash (§5.1), computed. */
function computeKeyScheduleContext(b: CryptoBackend, suiteId: Uint8Array, mode: Mode, info: Uint8Array, pskId: Uint8Array): Uint8Array {
  return concat(Uint8Array.of(mode), labeledExtract(b, suiteId, EMPTY, 'psk_id_hash', pskId), labeledExtract(b, suiteId, EMPTY, 'info_hash', info));
}

/**
 * key_schedule_context when psk_id is empty (base and auth modes) depends only on public inputs that repeat: the
 * mode, the suite and `info`, which OHTTP fixes per key configuration and suite (RFC 9458 §4.3). So it is memoized
 * whole (no LabeledExtract and no concatenation per message): a few entries per suite of public values, never of
 * secrets or PSK identifiers, found by comparing the mode and the info bytes (a copy is kept, so a caller's later
 * change to its array cannot make an entry answer for other bytes). Callers must not mutate what it returns.
 */
interface ContextMemo {
  readonly mode: Mode;
  readonly info: Uint8Array;
  readonly context: Uint8Array;
}
const contextMemo = new WeakMap<Uint8Array, ContextMemo[]>();
const CONTEXT_MEMO_PER_SUITE = 16;
const CACHED_INFO_MAX = 256;
function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
function keyScheduleContextOf(b: CryptoBackend, suiteId: Uint8Array, mode: Mode, info: Uint8Array, pskId: Uint8Array): Uint8Array {
  if (pskId.length > 0 || info.length > CACHED_INFO_MAX) return computeKeyScheduleContext(b, suiteId, mode, info, pskId);
  let memo = contextMemo.get(suiteId);
  if (!memo) {
    memo = [];
    contextMemo.set(suiteId, memo);
  }
  for (const e of memo) if (e.mode === mode && sameBytes(e.info, info)) return e.context;
  const context = computeKeyScheduleContext(b, suiteId, mode, info, pskId);
  if (memo.length >= CONTEXT_MEMO_PER_SUITE) memo.shift();
  memo.push({ mode, info: info.slice(), context });
  return context;
}

/** TEST-ONLY: key_schedule_context as the memo serves it and as computed afresh, to check they agree. */
export function keyScheduleContextForTesting(suite: SuiteIds, mode: Mode, info: Uint8Array, pskId: Uint8Array, backend: CryptoBackend = defaultBackend()): { cached: Uint8Array; computed: Uint8Array } {
  const suiteId = suiteIdOf(suite);
  return { cached: keyScheduleContextOf(backend, suiteId, mode, info, pskId), computed: computeKeyScheduleContext(backend, suiteId, mode, info, pskId) };
}

/** KeySchedule<ROLE>(mode, shared_secret, info, psk, psk_id) (§5.1). */
async function keySchedule(b: CryptoBackend, suite: SuiteIds, mode: Mode, sharedSecret: Uint8Array, info: Uint8Array, psk: Uint8Array, pskId: Uint8Array): Promise<Context> {
  // The suite and VerifyPSKInputs were checked by the Setup function, before any key agreement.
  const suiteId = suiteIdOf(suite);
  const keyScheduleContext = keyScheduleContextOf(b, suiteId, mode, info, pskId);
  const secret = labeledExtract(b, suiteId, sharedSecret, 'secret', psk);
  const p = AEAD_PARAMS[suite.aeadId];
  const key = p ? labeledExpand(b, suiteId, secret, 'key', keyScheduleContext, p.Nk) : EMPTY;
  const baseNonce = p ? labeledExpand(b, suiteId, secret, 'base_nonce', keyScheduleContext, p.Nn) : EMPTY;
  const values = new ScheduleValues(b, suiteId, sharedSecret, keyScheduleContext, secret, key, baseNonce);
  const cipher = p ? await b.aead(suite.aeadId, key) : undefined;
  return new Context(b, suite, suiteId, values, cipher);
}

/** The key schedule's outputs; exporter_secret is derived on first use (a request never answered skips it). */
class ScheduleValues implements KeyScheduleValues {
  readonly sharedSecret: Uint8Array;
  readonly keyScheduleContext: Uint8Array;
  readonly secret: Uint8Array;
  readonly key: Uint8Array;
  readonly baseNonce: Uint8Array;
  readonly #b: CryptoBackend;
  readonly #suiteId: Uint8Array;
  #exporterSecret: Uint8Array | undefined;
  constructor(b: CryptoBackend, suiteId: Uint8Array, sharedSecret: Uint8Array, keyScheduleContext: Uint8Array, secret: Uint8Array, key: Uint8Array, baseNonce: Uint8Array) {
    this.#b = b;
    this.#suiteId = suiteId;
    this.sharedSecret = sharedSecret;
    this.keyScheduleContext = keyScheduleContext;
    this.secret = secret;
    this.key = key;
    this.baseNonce = baseNonce;
  }
  get exporterSecret(): Uint8Array {
    return (this.#exporterSecret ??= labeledExpand(this.#b, this.#suiteId, this.secret, 'exp', this.keyScheduleContext, NH));
  }
}

function checkSuite(suite: SuiteIds, mode: Mode): void {
  if (!isSupportedSuite(suite)) unsupported(suite);
  if ((mode === MODE_AUTH || mode === MODE_AUTH_PSK) && !KEM_PARAMS[suite.kemId]!.auth) {
    throw protocolError('HPKE_UNSUPPORTED_MODE', 'this KEM has no AuthEncap/AuthDecap');
  }
}

export interface SenderSetup {
  /** The encapsulated key `enc` (Nenc bytes) to send with the ciphertexts. */
  readonly enc: Uint8Array;
  readonly context: SenderContext;
}

function wrongRandomness(): never {
  throw protocolError('HPKE_BAD_KEY', 'DHKEM takes an ephemeral key pair, not encapsulation randomness');
}

function wrongEphemeral(): never {
  throw protocolError('HPKE_BAD_KEY', 'X-Wing takes encapsulation randomness, not an ephemeral key pair');
}

/** The general sender setup behind the four Setup<MODE>S functions. */
async function setupS(mode: Mode, suite: SuiteIds, pkR: Uint8Array, info: Uint8Array, psk: Uint8Array, pskId: Uint8Array, skS: KeyPair | undefined, o: SetupOptions): Promise<SenderSetup> {
  checkSuite(suite, mode);
  const b = o.backend ?? defaultBackend();
  verifyPskInputs(mode, psk, pskId);
  if (o.prepared && (skS || o.ephemeralKeyPair || o.encapRandomness)) throw protocolError('HPKE_PREPARED_MISMATCH', 'a prepared encapsulation serves base and PSK modes, without test keys');
  const { sharedSecret, enc: encv } = o.prepared
    ? o.prepared.take(suite.kemId, pkR)
    : suite.kemId === KEM_MLKEM768_X25519
      ? await encapXWing(pkR, b, o.ephemeralKeyPair ? wrongEphemeral() : o.encapRandomness)
      : o.encapRandomness
        ? wrongRandomness()
        : await encap(b, pkR, skS && asX25519(skS), o.ephemeralKeyPair && asX25519(o.ephemeralKeyPair));
  return { enc: encv, context: await keySchedule(b, suite, mode, sharedSecret, info, psk, pskId) };
}

async function setupR(mode: Mode, suite: SuiteIds, encv: Uint8Array, skR: KeyPair, info: Uint8Array, psk: Uint8Array, pskId: Uint8Array, pkS: Uint8Array | undefined, o: SetupOptions): Promise<ReceiverContext> {
  checkSuite(suite, mode);
  const b = o.backend ?? defaultBackend();
  verifyPskInputs(mode, psk, pskId);
  const sharedSecret = suite.kemId === KEM_MLKEM768_X25519 ? await decapXWing(encv, asXWing(skR)) : await decap(b, encv, asX25519(skR), pkS);
  return keySchedule(b, suite, mode, sharedSecret, info, psk, pskId);
}

/** SetupBaseS(pkR, info) (§5.1.1). */
export function setupBaseS(suite: SuiteIds, pkR: Uint8Array, info: Uint8Array, o: SetupOptions = {}): Promise<SenderSetup> {
  return setupS(MODE_BASE, suite, pkR, info, EMPTY, EMPTY, undefined, o);
}
/** SetupBaseR(enc, skR, info) (§5.1.1). */
export function setupBaseR(suite: SuiteIds, encv: Uint8Array, skR: KeyPair, info: Uint8Array, o: SetupOptions = {}): Promise<ReceiverContext> {
  return setupR(MODE_BASE, suite, encv, skR, info, EMPTY, EMPTY, undefined, o);
}
/** SetupPSKS(pkR, info, psk, psk_id) (§5.1.2). */
export function setupPSKS(suite: SuiteIds, pkR: Uint8Array, info: Uint8Array, psk: Uint8Array, pskId: Uint8Array, o: SetupOptions = {}): Promise<SenderSetup> {
  return setupS(MODE_PSK, suite, pkR, info, psk, pskId, undefined, o);
}
/** SetupPSKR(enc, skR, info, psk, psk_id) (§5.1.2). */
export function setupPSKR(suite: SuiteIds, encv: Uint8Array, skR: KeyPair, info: Uint8Array, psk: Uint8Array, pskId: Uint8Array, o: SetupOptions = {}): Promise<ReceiverContext> {
  return setupR(MODE_PSK, suite, encv, skR, info, psk, pskId, undefined, o);
}
/** SetupAuthS(pkR, info, skS) (§5.1.3). */
export function setupAuthS(suite: SuiteIds, pkR: Uint8Array, info: Uint8Array, skS: KeyPair, o: SetupOptions = {}): Promise<SenderSetup> {
  return setupS(MODE_AUTH, suite, pkR, info, EMPTY, EMPTY, skS, o);
}
/** SetupAuthR(enc, skR, info, pkS) (§5.1.3). */
export function setupAuthR(suite: SuiteIds, encv: Uint8Array, skR: KeyPair, info: Uint8Array, pkS: Uint8Array, o: SetupOptions = {}): Promise<ReceiverContext> {
  return setupR(MODE_AUTH, suite, encv, skR, info, EMPTY, EMPTY, pkS, o);
}
/** SetupAuthPSKS(pkR, info, psk, psk_id, skS) (§5.1.4). */
export function setupAuthPSKS(suite: SuiteIds, pkR: Uint8Array, info: Uint8Array, psk: Uint8Array, pskId: Uint8Array, skS: KeyPair, o: SetupOptions = {}): Promise<SenderSetup> {
  return setupS(MODE_AUTH_PSK, suite, pkR, info, psk, pskId, skS, o);
}
/** SetupAuthPSKR(enc, skR, info, psk, psk_id, pkS) (§5.1.4). */
export function setupAuthPSKR(suite: SuiteIds, encv: Uint8Array, skR: KeyPair, info: Uint8Array, psk: Uint8Array, pskId: Uint8Array, pkS: Uint8Array, o: SetupOptions = {}): Promise<ReceiverContext> {
  return setupR(MODE_AUTH_PSK, suite, encv, skR, info, psk, pskId, pkS, o);
}

/** TEST-ONLY: the key schedule outputs of a context (for the RFC 9180 Appendix A vectors). */
export function keyScheduleValuesForTesting(ctx: SenderContext | ReceiverContext): KeyScheduleValues {
  if (!(ctx instanceof Context)) throw protocolError('HPKE_BAD_CONTEXT', 'not an HPKE context of this module');
  return ctx.values;
}

/** TEST-ONLY: position a context's sequence number (to exercise the message limit). */
export function setSequenceForTesting(ctx: SenderContext | ReceiverContext, seq: number): void {
  if (!(ctx instanceof Context)) throw protocolError('HPKE_BAD_CONTEXT', 'not an HPKE context of this module');
  ctx.setSequenceForTesting(seq);
}

/** Plain HKDF-SHA256 Extract and Expand (RFC 5869), which OHTTP's response keys use (RFC 9458 §4.4). */
export function hkdfExtract(salt: Uint8Array, ikm: Uint8Array, backend: CryptoBackend = defaultBackend()): Uint8Array {
  return extract(backend, salt, ikm);
}
export function hkdfExpand(prk: Uint8Array, info: Uint8Array, L: number, backend: CryptoBackend = defaultBackend()): Uint8Array {
  return expand(backend, prk, info, L);
}
