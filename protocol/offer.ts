/**
 * Signed worker offers (docs/design.md §6 "Workers post offers, signed with a key bound in their verified evidence and
 * carrying the operator's Bittensor hotkey").
 *
 * An offer is encoded as deterministic CBOR (protocol/market-cbor.ts, RFC 8949 §4.2.1) map with exactly these text
 * keys (sorted on the wire by length, then bytewise; optional `identity` omitted when the worker states none):
 *
 *   v               uint   1
 *   offerId         text   1..300 printable ASCII, no spaces; a replacement re-uses it with a higher `sequence`
 *   sequence        uint   replace/cancel ordering (higher wins)
 *   workerId        text   1..128 chars, the worker's registry identity
 *   workerKey       bytes  32: raw Ed25519 public key (RFC 8032), bound in the worker's verified evidence
 *   hotkey          text   SS58 address (prefix 42 = generic Substrate, what Bittensor uses) of the operator's sr25519 hotkey
 *   model           text   model identifier as requested by clients (1..256 chars)
 *   identity        map    optional: the model identity (protocol/model-identity.ts: weights digest, quantization,
 *                          engine and version, context length, supported parameters); the enclave takes it only when
 *                          it equals the entry for `model` in the worker's verified model manifest
 *   gpus            map    optional: {count: uint 1..64, model: text 1..64} the GPUs serving the offer; the enclave takes
 *                          it only when the worker's verified GPU evidence has exactly that many GPUs, all of that
 *                          model (the device certificate issuer's CN, e.g. "GH100 A01 GSP BROM")
 *   currency        text   1..12 chars [A-Z0-9] (e.g. "USD", "TAO"); every amount is an integer count of its settlement
 *                          unit (protocol/offer-terms.ts): micro-USD (10^-6) for USD, rao (10^-9) for TAO, else 10^-6
 *   pricePerMInput  uint   micro-units per 1,000,000 input tokens
 *   pricePerMOutput uint   micro-units per 1,000,000 output tokens
 *   terms           map    {kind:"prepaid"} | {kind:"per-request"} |
 *                          {kind:"postpaid", creditLimit: uint micro-units, settlementPeriodSeconds: uint >= 1};
 *                          each may add minCharge: uint >= 1 and discounts: [{fromOutputTokens, basisPoints}, ...]
 *                          (protocol/offer-terms.ts; a bad schedule is OFFER_TERMS_INVALID)
 *   capacity        uint   concurrent streams >= 1
 *   ttftMs          uint   advertised time to first token, milliseconds
 *   tokensPerSecond uint   advertised decode throughput
 *   validFrom       uint   unix seconds
 *   validUntil      uint   unix seconds, > validFrom
 *
 * The signed form is the deterministic CBOR map {offer: bytes (the encoding above), workerSig: bytes 64,
 * hotkeySig: bytes 64}. Both signatures cover the same message: UTF-8 "gm-offer-v1" || 0x00 || offer bytes; the
 * worker signs with Ed25519 (WebCrypto), the operator with sr25519 (@scure/sr25519, Schnorrkel/Merlin, signing
 * context "substrate"). A cancel is the same envelope around {v:1, type:"cancel", offerId, workerId, workerKey,
 * hotkey, sequence, at} with the message prefix "gm-offer-cancel-v1". The offer digest (what receipts cite) is
 * SHA-256 of the offer bytes, which is stable across re-signing because sr25519 signatures are randomised.
 *
 * Money: `bigint` micro-units everywhere in this API. Time: `now` is unix milliseconds; offers carry unix seconds.
 * Runtime-agnostic: WebCrypto + Uint8Array, no node: imports.
 */
import * as sr25519 from '@scure/sr25519';
import { base58 } from '@scure/base';
import { blake2b } from '@noble/hashes/blake2.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { concat, equalBytes, hex, own } from '../attestation/bytes.ts';
import { protocolError, rejected } from '../attestation/errors.ts';
import {
  asMap,
  type CborMap,
  decodeDeterministic,
  encodeDeterministic,
  fBig,
  fBytes,
  fText,
  fUint,
  onlyKeys,
} from './market-cbor.ts';
import { checkIdentity, identityFromCbor, identityToCbor, type ModelIdentity } from './model-identity.ts';
import { checkPriceTerms, type PriceTerms, priceTermsFromCbor, priceTermsToCbor } from './offer-terms.ts';

/** The payment kind and, beside it, the optional price terms (protocol/offer-terms.ts) every kind may carry. */
export type PaymentTerms = (
  | { readonly kind: 'prepaid' }
  | { readonly kind: 'per-request' }
  | { readonly kind: 'postpaid'; readonly creditLimit: bigint; readonly settlementPeriodSeconds: number }
) &
  PriceTerms;

export type TermsKind = PaymentTerms['kind'];
export const TERMS_KINDS: readonly TermsKind[] = ['prepaid', 'postpaid', 'per-request'];

export interface Offer {
  readonly v: 1;
  readonly offerId: string;
  readonly sequence: number;
  readonly workerId: string;
  /** Raw 32-byte Ed25519 public key; must equal the key bound in the worker's verified evidence. */
  readonly workerKey: Uint8Array;
  /** SS58 address of the operator's sr25519 hotkey. */
  readonly hotkey: string;
  readonly model: string;
  /** What serves `model`, as the worker's evidence states it (absent: the worker states nothing). */
  readonly identity?: ModelIdentity;
  /** The GPUs serving the offer, as the worker's verified GPU evidence must show them. */
  readonly gpus?: { readonly count: number; readonly model: string };
  readonly currency: string;
  /** Integer micro-units of `currency` per million input tokens. */
  readonly pricePerMInput: bigint;
  /** Integer micro-units of `currency` per million output tokens. */
  readonly pricePerMOutput: bigint;
  readonly terms: PaymentTerms;
  readonly capacity: number;
  readonly ttftMs: number;
  readonly tokensPerSecond: number;
  /** Unix seconds. */
  readonly validFrom: number;
  /** Unix seconds. */
  readonly validUntil: number;
}

export interface OfferCancel {
  readonly v: 1;
  readonly type: 'cancel';
  readonly offerId: string;
  readonly workerId: string;
  readonly workerKey: Uint8Array;
  readonly hotkey: string;
  /** Cancels every version of the offer with a sequence <= this one. */
  readonly sequence: number;
  /** Unix seconds. */
  readonly at: number;
}

/** A verified offer with the bytes and digest that receipts cite. */
export interface VerifiedOffer {
  readonly offer: Offer;
  /** The signed envelope exactly as received (kept so anyone can re-verify later). */
  readonly signed: Uint8Array;
  /** SHA-256 of the deterministic offer encoding. */
  readonly digest: Uint8Array;
}

export interface Hotkey {
  /** 64-byte sr25519 secret key (never leaves the operator; tests and the sim worker generate one). */
  readonly secretKey: Uint8Array;
  readonly publicKey: Uint8Array;
  /** SS58 address, prefix 42. */
  readonly address: string;
}

export interface VerifyOfferOptions {
  /** The Ed25519 key bound in the worker's verified evidence; the offer must carry exactly this key. */
  readonly workerPublicKey?: Uint8Array;
  /** When the hotkey is known (e.g. from the Bittensor metagraph), the offer must carry exactly this address. */
  readonly hotkey?: string;
  /** Unix milliseconds. */
  readonly now: number;
}

const OFFER_CONTEXT = new TextEncoder().encode('gm-offer-v1\0');
const CANCEL_CONTEXT = new TextEncoder().encode('gm-offer-cancel-v1\0');
/** Offer ids are printable ASCII without spaces (they often embed a model name such as `org/model`). */
const ID_RE = /^[\x21-\x7e]{1,300}$/;
const CURRENCY_RE = /^[A-Z0-9]{1,12}$/;
/** Amounts are kept below 2^53 so every quoted product the router forms stays an exact safe integer or bigint. */
const MAX_AMOUNT = BigInt(Number.MAX_SAFE_INTEGER);
const M = 'OFFER_MALFORMED';

// ---- SS58 (Substrate address format): base58(prefix || pubkey || blake2b-512("SS58PRE" || prefix || pubkey)[0..2]).

const SS58PRE = new TextEncoder().encode('SS58PRE');

/** SS58-encodes a 32-byte public key with a simple (single-byte, 0..63) prefix; 42 is the generic Substrate prefix. */
export function ss58Encode(publicKey: Uint8Array, prefix = 42): string {
  if (publicKey.length !== 32) throw protocolError('SS58_INVALID', 'SS58 public key must be 32 bytes');
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > 63) throw protocolError('SS58_INVALID', 'only simple SS58 prefixes 0..63 are supported');
  const body = concat(Uint8Array.of(prefix), publicKey);
  const check = blake2b(concat(SS58PRE, body), { dkLen: 64 }).subarray(0, 2);
  return base58.encode(concat(body, check));
}

/** Decodes and checks an SS58 address (simple prefix, 32-byte key). */
export function ss58Decode(address: string): { prefix: number; publicKey: Uint8Array } {
  let raw: Uint8Array;
  try {
    raw = base58.decode(address);
  } catch (e) {
    throw protocolError('SS58_INVALID', 'SS58 address is not base58', { cause: e });
  }
  if (raw.length !== 35 || raw[0]! > 63) throw protocolError('SS58_INVALID', 'SS58 address must be a simple prefix and a 32-byte key');
  const body = raw.subarray(0, 33);
  const check = blake2b(concat(SS58PRE, body), { dkLen: 64 }).subarray(0, 2);
  if (!equalBytes(check, raw.subarray(33))) throw protocolError('SS58_INVALID', 'SS58 checksum mismatch');
  return { prefix: raw[0]!, publicKey: body.slice(1) };
}

/** An sr25519 hotkey from a 32-byte seed (mini-secret). */
export function hotkeyFromSeed(seed: Uint8Array): Hotkey {
  const secretKey = sr25519.secretFromSeed(seed);
  const publicKey = sr25519.getPublicKey(secretKey);
  return { secretKey, publicKey, address: ss58Encode(publicKey, 42) };
}

// ---- worker key (Ed25519 via WebCrypto)

/** A fresh Ed25519 worker key pair; the private key is non-extractable. */
export async function generateWorkerKey(): Promise<{ publicKey: Uint8Array; privateKey: CryptoKey }> {
  const pair = (await crypto.subtle.generateKey({ name: 'Ed25519' }, false, ['sign', 'verify'])) as CryptoKeyPair;
  const publicKey = new Uint8Array(await crypto.subtle.exportKey('raw', pair.publicKey));
  return { publicKey, privateKey: pair.privateKey };
}

export async function ed25519Verify(publicKey: Uint8Array, signature: Uint8Array, message: Uint8Array): Promise<boolean> {
  if (publicKey.length !== 32 || signature.length !== 64) return false;
  try {
    const key = await crypto.subtle.importKey('raw', own(publicKey), { name: 'Ed25519' }, false, ['verify']);
    return await crypto.subtle.verify({ name: 'Ed25519' }, key, own(signature), own(message));
  } catch {
    return false;
  }
}

// ---- encoding

/** The terms map (payment kind, its fields, and the price terms present); receipts carry the same map. */
export function termsToCbor(t: PaymentTerms): CborMap {
  const price = priceTermsToCbor(t);
  if (t.kind === 'postpaid') return { kind: t.kind, creditLimit: t.creditLimit, settlementPeriodSeconds: t.settlementPeriodSeconds, ...price };
  return { kind: t.kind, ...price };
}

const PRICE_KEYS = ['minCharge', 'discounts'];

/**
 * Strictly reads a terms map: unknown keys and wrong types are `code`; price terms out of range (a bad discount
 * schedule, a zero minimum) are `rangeCode` (OFFER_TERMS_INVALID for offers).
 */
export function termsFromCbor(v: CborMap[string] | undefined, code: string, rangeCode = code === M ? 'OFFER_TERMS_INVALID' : code): PaymentTerms {
  const m = asMap(v, code, 'terms');
  const kind = m.kind;
  if (kind === 'prepaid' || kind === 'per-request') {
    onlyKeys(m, ['kind', ...PRICE_KEYS], code, 'terms');
    return { kind, ...priceTermsFromCbor(m, code, rangeCode) };
  }
  if (kind === 'postpaid') {
    onlyKeys(m, ['kind', 'creditLimit', 'settlementPeriodSeconds', ...PRICE_KEYS], code, 'terms');
    const creditLimit = fBig(m, 'creditLimit', code);
    const settlementPeriodSeconds = fUint(m, 'settlementPeriodSeconds', code);
    if (creditLimit > MAX_AMOUNT || settlementPeriodSeconds < 1) throw protocolError(code, 'postpaid terms out of range');
    return { kind, creditLimit, settlementPeriodSeconds, ...priceTermsFromCbor(m, code, rangeCode) };
  }
  throw protocolError(code, 'terms.kind must be prepaid, postpaid or per-request');
}

/** Checks the field ranges every offer must satisfy (shared by encode and decode so both sides agree). */
function checkOffer(o: Offer): Offer {
  const bad = (why: string): never => {
    throw protocolError(M, `offer ${why}`);
  };
  if (o.v !== 1) bad('version must be 1');
  if (!ID_RE.test(o.offerId)) bad('offerId must be 1..300 printable ASCII characters without spaces');
  if (!Number.isSafeInteger(o.sequence) || o.sequence < 0) bad('sequence must be a non-negative safe integer');
  if (o.workerId.length < 1 || o.workerId.length > 128) bad('workerId must be 1..128 characters');
  if (o.workerKey.length !== 32) bad('workerKey must be 32 bytes');
  if (o.model.length < 1 || o.model.length > 256) bad('model must be 1..256 characters');
  if (o.identity !== undefined) checkIdentity(o.identity, M);
  if (o.gpus !== undefined && (!Number.isSafeInteger(o.gpus.count) || o.gpus.count < 1 || o.gpus.count > 64 || o.gpus.model.length < 1 || o.gpus.model.length > 64)) bad('gpus must be {count 1..64, model 1..64 characters}');
  if (!CURRENCY_RE.test(o.currency)) bad('currency must be 1..12 of [A-Z0-9]');
  for (const p of [o.pricePerMInput, o.pricePerMOutput]) if (typeof p !== 'bigint' || p < 0n || p > MAX_AMOUNT) bad('prices must be bigint micro-units in 0..2^53-1');
  if (o.terms.kind === 'postpaid' && (o.terms.creditLimit < 0n || o.terms.creditLimit > MAX_AMOUNT || !Number.isSafeInteger(o.terms.settlementPeriodSeconds) || o.terms.settlementPeriodSeconds < 1)) bad('postpaid terms out of range');
  checkPriceTerms(o.terms);
  if (!Number.isSafeInteger(o.capacity) || o.capacity < 1 || o.capacity > 1_000_000) bad('capacity must be 1..1000000 streams');
  for (const n of [o.ttftMs, o.tokensPerSecond, o.validFrom, o.validUntil]) if (!Number.isSafeInteger(n) || n < 0) bad('times and rates must be non-negative integers');
  if (o.validUntil <= o.validFrom) bad('validUntil must be after validFrom');
  try {
    ss58Decode(o.hotkey);
  } catch (e) {
    throw protocolError(M, `offer hotkey: ${(e as Error).message}`, { cause: e });
  }
  return o;
}

/** The deterministic CBOR encoding of an offer (the bytes both signatures cover, after the context prefix). */
export function encodeOffer(o: Offer): Uint8Array {
  checkOffer(o);
  return encodeDeterministic({
    v: 1,
    offerId: o.offerId,
    sequence: o.sequence,
    workerId: o.workerId,
    workerKey: o.workerKey,
    hotkey: o.hotkey,
    model: o.model,
    ...(o.identity ? { identity: identityToCbor(o.identity) } : {}),
    ...(o.gpus ? { gpus: { count: o.gpus.count, model: o.gpus.model } } : {}),
    currency: o.currency,
    pricePerMInput: o.pricePerMInput,
    pricePerMOutput: o.pricePerMOutput,
    terms: termsToCbor(o.terms),
    capacity: o.capacity,
    ttftMs: o.ttftMs,
    tokensPerSecond: o.tokensPerSecond,
    validFrom: o.validFrom,
    validUntil: o.validUntil,
  });
}

const OFFER_KEYS = ['v', 'offerId', 'sequence', 'workerId', 'workerKey', 'hotkey', 'model', 'identity', 'gpus', 'currency', 'pricePerMInput', 'pricePerMOutput', 'terms', 'capacity', 'ttftMs', 'tokensPerSecond', 'validFrom', 'validUntil'];

export function decodeOffer(bytes: Uint8Array): Offer {
  const m = asMap(decodeMalformed(bytes), M, 'offer');
  onlyKeys(m, OFFER_KEYS, M, 'offer');
  if (m.v !== 1) throw protocolError(M, 'offer version must be 1');
  const o: Offer = {
    v: 1,
    offerId: fText(m, 'offerId', M, 300),
    sequence: fUint(m, 'sequence', M),
    workerId: fText(m, 'workerId', M, 128),
    workerKey: fBytes(m, 'workerKey', M, 32),
    hotkey: fText(m, 'hotkey', M, 64),
    model: fText(m, 'model', M, 256),
    ...(m.identity !== undefined ? { identity: identityFromCbor(m.identity, M) } : {}),
    ...(m.gpus !== undefined ? { gpus: gpusFromCbor(m.gpus) } : {}),
    currency: fText(m, 'currency', M, 12),
    pricePerMInput: fBig(m, 'pricePerMInput', M),
    pricePerMOutput: fBig(m, 'pricePerMOutput', M),
    terms: termsFromCbor(m.terms, M),
    capacity: fUint(m, 'capacity', M),
    ttftMs: fUint(m, 'ttftMs', M),
    tokensPerSecond: fUint(m, 'tokensPerSecond', M),
    validFrom: fUint(m, 'validFrom', M),
    validUntil: fUint(m, 'validUntil', M),
  };
  return checkOffer(o);
}

function gpusFromCbor(v: CborMap[string]): { count: number; model: string } {
  const g = asMap(v, M, 'gpus');
  onlyKeys(g, ['count', 'model'], M, 'gpus');
  return { count: fUint(g, 'count', M), model: fText(g, 'model', M, 64) };
}

function decodeMalformed(bytes: Uint8Array): ReturnType<typeof decodeDeterministic> {
  try {
    return decodeDeterministic(bytes);
  } catch (e) {
    throw protocolError(M, `offer is not deterministic CBOR: ${(e as Error).message}`, { cause: e });
  }
}

// ---- signing and verification

async function sealEnvelope(body: Uint8Array, context: Uint8Array, workerPrivateKey: CryptoKey, hotkeySecretKey: Uint8Array, field: 'offer' | 'cancel'): Promise<Uint8Array> {
  const msg = concat(context, body);
  const workerSig = new Uint8Array(await crypto.subtle.sign({ name: 'Ed25519' }, workerPrivateKey, own(msg)));
  const hotkeySig = sr25519.sign(hotkeySecretKey, msg);
  return encodeDeterministic({ [field]: body, workerSig, hotkeySig });
}

/** Signs an offer with the worker key (Ed25519 private CryptoKey) and the operator hotkey (sr25519 secret). */
export async function signOffer(offer: Offer, workerPrivateKey: CryptoKey, hotkeySecretKey: Uint8Array): Promise<Uint8Array> {
  return sealEnvelope(encodeOffer(offer), OFFER_CONTEXT, workerPrivateKey, hotkeySecretKey, 'offer');
}

/** Signs a cancel of `offerId` (all sequences <= `sequence`). */
export async function signCancel(cancel: OfferCancel, workerPrivateKey: CryptoKey, hotkeySecretKey: Uint8Array): Promise<Uint8Array> {
  return sealEnvelope(encodeCancel(cancel), CANCEL_CONTEXT, workerPrivateKey, hotkeySecretKey, 'cancel');
}

function openEnvelope(signed: Uint8Array, field: 'offer' | 'cancel'): { body: Uint8Array; workerSig: Uint8Array; hotkeySig: Uint8Array } {
  const m = asMap(decodeMalformed(signed), M, `signed ${field}`);
  onlyKeys(m, [field, 'workerSig', 'hotkeySig'], M, `signed ${field}`);
  return { body: fBytes(m, field, M), workerSig: fBytes(m, 'workerSig', M, 64), hotkeySig: fBytes(m, 'hotkeySig', M, 64) };
}

async function checkSignatures(body: Uint8Array, context: Uint8Array, workerKey: Uint8Array, hotkey: string, workerSig: Uint8Array, hotkeySig: Uint8Array, opts: { workerPublicKey?: Uint8Array; hotkey?: string }): Promise<void> {
  if (opts.workerPublicKey && !equalBytes(opts.workerPublicKey, workerKey)) {
    throw rejected('OFFER_WORKER_KEY_MISMATCH', "offer's worker key is not the key bound in the worker's verified evidence");
  }
  if (opts.hotkey !== undefined && opts.hotkey !== hotkey) throw rejected('OFFER_HOTKEY_MISMATCH', "offer's hotkey is not the operator's registered hotkey");
  const msg = concat(context, body);
  if (!(await ed25519Verify(workerKey, workerSig, msg))) throw rejected('OFFER_SIGNATURE_WORKER', 'worker Ed25519 signature over the offer does not verify');
  let ok = false;
  try {
    ok = sr25519.verify(msg, hotkeySig, ss58Decode(hotkey).publicKey);
  } catch {
    ok = false;
  }
  if (!ok) throw rejected('OFFER_SIGNATURE_HOTKEY', 'operator hotkey sr25519 signature over the offer does not verify');
}

/**
 * Verifies a signed offer: strict decoding (OFFER_MALFORMED), the worker key against the evidence-bound key
 * (OFFER_WORKER_KEY_MISMATCH), both signatures (OFFER_SIGNATURE_WORKER, OFFER_SIGNATURE_HOTKEY), and the validity
 * window at `now` (OFFER_NOT_YET_VALID, OFFER_EXPIRED). Returns the offer with its digest; throws otherwise.
 */
export async function verifySignedOffer(signed: Uint8Array, opts: VerifyOfferOptions): Promise<VerifiedOffer> {
  const { body, workerSig, hotkeySig } = openEnvelope(signed, 'offer');
  const offer = decodeOffer(body);
  await checkSignatures(body, OFFER_CONTEXT, offer.workerKey, offer.hotkey, workerSig, hotkeySig, opts);
  checkWindow(offer, opts.now);
  return { offer, signed, digest: sha256(body) };
}

/** Verifies signatures and encoding only, ignoring time (for auditing receipts long after the offer expired). */
export async function verifyOfferSignatures(signed: Uint8Array, opts: Omit<VerifyOfferOptions, 'now'>): Promise<VerifiedOffer> {
  const { body, workerSig, hotkeySig } = openEnvelope(signed, 'offer');
  const offer = decodeOffer(body);
  await checkSignatures(body, OFFER_CONTEXT, offer.workerKey, offer.hotkey, workerSig, hotkeySig, opts);
  return { offer, signed, digest: sha256(body) };
}

export function checkWindow(offer: Offer, nowMs: number): void {
  const now = Math.floor(nowMs / 1000);
  if (now < offer.validFrom) throw rejected('OFFER_NOT_YET_VALID', `offer ${offer.offerId} is valid from ${offer.validFrom}`);
  if (now >= offer.validUntil) throw rejected('OFFER_EXPIRED', `offer ${offer.offerId} expired at ${offer.validUntil}`);
}

export function encodeCancel(c: OfferCancel): Uint8Array {
  if (c.v !== 1 || c.type !== 'cancel' || !ID_RE.test(c.offerId) || c.workerKey.length !== 32 || !Number.isSafeInteger(c.sequence) || c.sequence < 0 || !Number.isSafeInteger(c.at) || c.at < 0) {
    throw protocolError(M, 'cancel fields out of range');
  }
  return encodeDeterministic({ v: 1, type: 'cancel', offerId: c.offerId, workerId: c.workerId, workerKey: c.workerKey, hotkey: c.hotkey, sequence: c.sequence, at: c.at });
}

export function decodeCancel(bytes: Uint8Array): OfferCancel {
  const m = asMap(decodeMalformed(bytes), M, 'cancel');
  onlyKeys(m, ['v', 'type', 'offerId', 'workerId', 'workerKey', 'hotkey', 'sequence', 'at'], M, 'cancel');
  if (m.v !== 1 || m.type !== 'cancel') throw protocolError(M, 'not a version 1 cancel');
  const c: OfferCancel = {
    v: 1,
    type: 'cancel',
    offerId: fText(m, 'offerId', M, 300),
    workerId: fText(m, 'workerId', M, 128),
    workerKey: fBytes(m, 'workerKey', M, 32),
    hotkey: fText(m, 'hotkey', M, 64),
    sequence: fUint(m, 'sequence', M),
    at: fUint(m, 'at', M),
  };
  encodeCancel(c);
  return c;
}

/** Verifies a signed cancel (same two signatures as an offer; same key checks). */
export async function verifySignedCancel(signed: Uint8Array, opts: Omit<VerifyOfferOptions, 'now'>): Promise<OfferCancel> {
  const { body, workerSig, hotkeySig } = openEnvelope(signed, 'cancel');
  const c = decodeCancel(body);
  await checkSignatures(body, CANCEL_CONTEXT, c.workerKey, c.hotkey, workerSig, hotkeySig, opts);
  return c;
}

/** A JSON view of an offer for logs, status pages and statements (bigints as decimal strings, bytes as hex). */
export function offerJson(o: Offer): Record<string, unknown> {
  return {
    offerId: o.offerId,
    sequence: o.sequence,
    workerId: o.workerId,
    workerKey: hex(o.workerKey),
    hotkey: o.hotkey,
    model: o.model,
    ...(o.identity ? { identity: { weightsDigest: hex(o.identity.weightsDigest), quantization: o.identity.quantization, engine: o.identity.engine, engineVersion: o.identity.engineVersion, contextLength: o.identity.contextLength, parameters: [...o.identity.parameters] } } : {}),
    ...(o.gpus ? { gpus: { count: o.gpus.count, model: o.gpus.model } } : {}),
    currency: o.currency,
    pricePerMInput: o.pricePerMInput.toString(),
    pricePerMOutput: o.pricePerMOutput.toString(),
    terms: {
      ...(o.terms.kind === 'postpaid' ? { kind: 'postpaid', creditLimit: o.terms.creditLimit.toString(), settlementPeriodSeconds: o.terms.settlementPeriodSeconds } : { kind: o.terms.kind }),
      ...(o.terms.minCharge !== undefined ? { minCharge: o.terms.minCharge.toString() } : {}),
      ...(o.terms.discounts !== undefined ? { discounts: o.terms.discounts.map((d) => ({ fromOutputTokens: d.fromOutputTokens, basisPoints: d.basisPoints })) } : {}),
    },
    capacity: o.capacity,
    ttftMs: o.ttftMs,
    tokensPerSecond: o.tokensPerSecond,
    validFrom: o.validFrom,
    validUntil: o.validUntil,
  };
}

/**
 * Micro-units as an exact decimal string in currency units (offers price per 1M tokens in micro-units):
 * 100000n → "0.1", 2500000n → "2.5", 0n → "0". For display, never floats.
 */
export function microsToDecimal(m: bigint): string {
  const neg = m < 0n;
  const a = neg ? -m : m;
  const frac = (a % 1_000_000n).toString().padStart(6, '0').replace(/0+$/, '');
  return `${neg ? '-' : ''}${a / 1_000_000n}${frac ? `.${frac}` : ''}`;
}
