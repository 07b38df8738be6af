/**
 * Signed receipts (docs/design.md §6 "Each served request gets a receipt signed by the enclave's attested receipt key").
 *
 * A receipt is a deterministic CBOR map (protocol/market-cbor.ts, RFC 8949 §4.2.1) with exactly these keys:
 *
 *   v uint 1 · seq uint (ledger position, 1-based) · prev bytes 32 (receipt hash of seq-1; 32 zero bytes for seq 1)
 *   requestId text · time uint (unix ms) · model text · account text (ledger account id, never the API key)
 *   workerId text · workerKey bytes 32 · evidenceDigest bytes 32 (SHA-256 of the worker's verified evidence bundle)
 *   offerId text · offerDigest bytes 32 (SHA-256 of the offer bytes, protocol/offer.ts)
 *   inputTokens uint · outputTokens uint
 *   currency text · pricePerMInput uint · pricePerMOutput uint (copied from the offer, settlement units per 10^6
 *     tokens: micro-USD for USD, rao for TAO, protocol/offer-terms.ts)
 *   feeBasisPoints uint (the operator's routing fee) · workerCost uint · fee uint · total uint (settlement units)
 *   terms map (as in the offer, with its minCharge and discounts when present) · sim bool (true when any evidence involved was simulated)
 *   receiptKey bytes 32 (raw Ed25519 public key of the enclave that signed; bound in its REPORT_DATA)
 *   weightsDigest bytes 32 · quantization text · engine text ("name/version"): present together, only when the
 *     served offer states a model identity (protocol/model-identity.ts), copied from it; the enclave took that offer
 *     only because the worker's verified evidence states the same identity
 *   selection map, when the enclave committed to its selection (protocol/best-execution.ts): the considered offers'
 *     Merkle root and count, the eligibility bitmap's digest and count, the strategy, the rule's digest, the rank
 *   stream map, for a streamed answer: {chunks: uint, head: bytes 32}, the SHA-256 over the length-framed events
 *     the enclave streamed (protocol/stream-chain.ts), which the client recomputes
 *   status text, only when the answer did not complete: "cancelled" (the client went away or stopped reading; the
 *     tokens are what it was sent) or "failed" (the worker failed after the first token: its connection or session
 *     dropped, or its stream ended unfinished; the tokens are what the client was sent before that). Absent means
 *     completed, so every receipt has one encoding.
 *
 * Charge arithmetic (integers only, `computeCharge`): workerCost = ceil((pricePerMInput·inputTokens +
 * pricePerMOutput·outputTokens) / 10^6), or under the price terms the receipt's `terms` map carries (minimum charge,
 * graduated output discount) the formula of protocol/offer-terms.ts; fee = ceil(workerCost·feeBasisPoints / 10^4); total = workerCost + fee.
 * One rounding per request, upward, so a worker is never paid less than its offer.
 *
 * Signed form: deterministic CBOR {receipt: bytes, sig: bytes 64}, sig = Ed25519 over UTF-8 "gm-receipt-v1" || 0x00 ||
 * receipt bytes. The receipt hash (chain link) is SHA-256 of the receipt bytes. The client receives the JSON
 * envelope `receiptEnvelope(...)` = {type:"gm.receipt", v:1, receipt: base64url(signed receipt), offer:
 * base64url(signed offer), view: {...informational}}: streamed answers as a final SSE event `event: gm.receipt`
 * whose data is that JSON, before `data: [DONE]`; plain answers in the `gm-receipt` response header holding
 * base64url(JSON) (`receiptHeaderValue` / `parseReceiptHeader`). Runtime-agnostic: WebCrypto + Uint8Array only.
 */
import { sha256 } from '@noble/hashes/sha2.js';
import { concat, equalBytes, fromBase64, hex, isZero, own, toBase64Url } from '../attestation/bytes.ts';
import { protocolError, rejected } from '../attestation/errors.ts';
import { asMap, decodeDeterministic, encodeDeterministic, fBig, fBool, fBytes, fText, fUint, onlyKeys, type CborValue } from './market-cbor.ts';
import { type SelectionCommitment, selectionFromCbor, selectionToCbor } from './best-execution.ts';
import { engineLabel } from './model-identity.ts';
import type { StreamCommitment } from './stream-chain.ts';
import { ed25519Verify, type Offer, type PaymentTerms, termsFromCbor, termsToCbor, type VerifiedOffer } from './offer.ts';
import { type PriceTerms, samePriceTerms, workerCostUnder } from './offer-terms.ts';

export interface Receipt {
  readonly v: 1;
  readonly seq: number;
  readonly prev: Uint8Array;
  readonly requestId: string;
  /** Unix milliseconds. */
  readonly time: number;
  readonly model: string;
  readonly account: string;
  readonly workerId: string;
  readonly workerKey: Uint8Array;
  readonly evidenceDigest: Uint8Array;
  readonly offerId: string;
  readonly offerDigest: Uint8Array;
  readonly inputTokens: number;
  readonly outputTokens: number;
  readonly currency: string;
  readonly pricePerMInput: bigint;
  readonly pricePerMOutput: bigint;
  readonly feeBasisPoints: number;
  /** Micro-units owed to the worker. */
  readonly workerCost: bigint;
  /** Micro-units of the operator's routing fee. */
  readonly fee: bigint;
  /** Micro-units charged to the account: workerCost + fee. */
  readonly total: bigint;
  readonly terms: PaymentTerms;
  readonly sim: boolean;
  readonly receiptKey: Uint8Array;
  /** What served, from the offer's attested model identity (all three or none). */
  readonly weightsDigest?: Uint8Array;
  readonly quantization?: string;
  readonly engine?: string;
  /** The best-execution commitment of the selection that chose the served offer. */
  readonly selection?: SelectionCommitment;
  /** The stream hash chain's final link and length, for a streamed answer. */
  readonly stream?: StreamCommitment;
  /** Present only for an answer that did not complete. */
  readonly status?: ReceiptStatus;
}

/** The receipt fields the ledger copies from the router (everything it does not compute itself). */
export type ReceiptCommitments = Partial<Pick<Receipt, 'weightsDigest' | 'quantization' | 'engine' | 'selection' | 'stream'>>;

/** The served offer's identity as receipt fields (none when the offer states no identity). */
export function identityCommitments(o: Offer): ReceiptCommitments {
  const i = o.identity;
  return i ? { weightsDigest: i.weightsDigest, quantization: i.quantization, engine: engineLabel(i) } : {};
}

export const RECEIPT_STATUSES = ['cancelled', 'failed'] as const;
export type ReceiptStatus = (typeof RECEIPT_STATUSES)[number];

/** The fields the enclave supplies; the signer adds v, receiptKey, and the ledger adds seq and prev. */
export type ReceiptDraft = Omit<Receipt, 'v' | 'receiptKey' | 'seq' | 'prev'>;

export interface SignedReceipt {
  readonly receipt: Receipt;
  /** The signed envelope bytes. */
  readonly signed: Uint8Array;
  /** SHA-256 of the receipt bytes: what the next receipt's `prev` holds. */
  readonly hash: Uint8Array;
}

/** The enclave's receipt key: the raw public key to bind in REPORT_DATA and a signer; the private key never leaves. */
export interface ReceiptSigner {
  readonly publicKey: Uint8Array;
  sign(receipt: Omit<Receipt, 'v' | 'receiptKey'>): Promise<SignedReceipt>;
  /**
   * Signs one of the ledger's other records (enclave/ledger/records.ts) under its own context string, so no record
   * can pass for a receipt or for another kind: `RECORD_CONTEXTS[kind] || body`.
   */
  signRecord(kind: RecordKind, body: Uint8Array): Promise<Uint8Array>;
}

/**
 * Records signed beside receipts: the ledger's periodic chain head and credits (account openings, deposits), and the
 * enclave's answer to a worker registration (protocol/registration.ts), which the worker checks against the
 * receipt key it attested.
 */
export type RecordKind = 'head' | 'credit' | 'registration';
export const RECORD_CONTEXTS: Readonly<Record<RecordKind, Uint8Array>> = {
  head: new TextEncoder().encode('gm-ledger-head-v1\0'),
  credit: new TextEncoder().encode('gm-ledger-credit-v1\0'),
  registration: new TextEncoder().encode('gm-worker-registration-answer-v1\0'),
};

const CONTEXT = new TextEncoder().encode('gm-receipt-v1\0');
const M = 'RECEIPT_MALFORMED';
export const ZERO_HASH = new Uint8Array(32);
export const RECEIPT_SSE_EVENT = 'gm.receipt';
export const RECEIPT_TRAILER = 'gm-receipt';

const ceilDiv = (a: bigint, b: bigint): bigint => (a + b - 1n) / b;

/** The charge for a request under an offer's prices and the operator fee (integers, rounded up once each). */
export function computeCharge(prices: { pricePerMInput: bigint; pricePerMOutput: bigint; terms?: PriceTerms }, feeBasisPoints: number, inputTokens: number, outputTokens: number): { workerCost: bigint; fee: bigint; total: bigint } {
  const workerCost = workerCostUnder(prices, prices.terms, inputTokens, outputTokens);
  const fee = ceilDiv(workerCost * BigInt(feeBasisPoints), 10_000n);
  return { workerCost, fee, total: workerCost + fee };
}

function termsCbor(t: PaymentTerms): CborValue {
  return termsToCbor(t);
}

export function encodeReceipt(r: Receipt): Uint8Array {
  const bad = (why: string): never => {
    throw protocolError(M, `receipt ${why}`);
  };
  if (r.v !== 1) bad('version must be 1');
  for (const [k, n] of [['seq', r.seq], ['time', r.time], ['inputTokens', r.inputTokens], ['outputTokens', r.outputTokens], ['feeBasisPoints', r.feeBasisPoints]] as const) {
    if (!Number.isSafeInteger(n) || n < 0) bad(`${k} must be a non-negative safe integer`);
  }
  if (r.seq < 1) bad('seq starts at 1');
  for (const [k, b] of [['prev', r.prev], ['workerKey', r.workerKey], ['evidenceDigest', r.evidenceDigest], ['offerDigest', r.offerDigest], ['receiptKey', r.receiptKey]] as const) {
    if (b.length !== 32) bad(`${k} must be 32 bytes`);
  }
  if (r.status !== undefined && !(RECEIPT_STATUSES as readonly string[]).includes(r.status)) bad('status must be cancelled or failed when present');
  checkIdentityFields(r, bad);
  return encodeDeterministic({
    v: 1,
    seq: r.seq,
    prev: r.prev,
    requestId: r.requestId,
    time: r.time,
    model: r.model,
    account: r.account,
    workerId: r.workerId,
    workerKey: r.workerKey,
    evidenceDigest: r.evidenceDigest,
    offerId: r.offerId,
    offerDigest: r.offerDigest,
    inputTokens: r.inputTokens,
    outputTokens: r.outputTokens,
    currency: r.currency,
    pricePerMInput: r.pricePerMInput,
    pricePerMOutput: r.pricePerMOutput,
    feeBasisPoints: r.feeBasisPoints,
    workerCost: r.workerCost,
    fee: r.fee,
    total: r.total,
    terms: termsCbor(r.terms),
    sim: r.sim,
    receiptKey: r.receiptKey,
    ...(r.weightsDigest !== undefined ? { weightsDigest: r.weightsDigest, quantization: r.quantization!, engine: r.engine! } : {}),
    ...(r.selection !== undefined ? { selection: selectionToCbor(r.selection) } : {}),
    ...(r.stream !== undefined ? { stream: streamToCbor(r.stream) } : {}),
    ...(r.status !== undefined ? { status: r.status } : {}),
  });
}

function checkIdentityFields(r: Receipt, bad: (why: string) => never): void {
  const n = (r.weightsDigest === undefined ? 0 : 1) + (r.quantization === undefined ? 0 : 1) + (r.engine === undefined ? 0 : 1);
  if (n !== 0 && n !== 3) bad('weightsDigest, quantization and engine come together or not at all');
  if (r.weightsDigest !== undefined && r.weightsDigest.length !== 32) bad('weightsDigest must be 32 bytes');
}

const KEYS = ['v', 'seq', 'prev', 'requestId', 'time', 'model', 'account', 'workerId', 'workerKey', 'evidenceDigest', 'offerId', 'offerDigest', 'inputTokens', 'outputTokens', 'currency', 'pricePerMInput', 'pricePerMOutput', 'feeBasisPoints', 'workerCost', 'fee', 'total', 'terms', 'sim', 'receiptKey'];

const OPTIONAL_KEYS = ['weightsDigest', 'quantization', 'engine', 'selection', 'stream'];

function streamToCbor(s: StreamCommitment): CborValue {
  if (!Number.isSafeInteger(s.chunks) || s.chunks < 0 || s.head.length !== 32) throw protocolError(M, 'receipt stream must be {chunks, head: 32 bytes}');
  return { chunks: s.chunks, head: s.head };
}

function streamFromCbor(v: CborValue | undefined): StreamCommitment {
  const m = asMap(v, M, 'receipt stream');
  onlyKeys(m, ['chunks', 'head'], M, 'receipt stream');
  return { chunks: fUint(m, 'chunks', M), head: fBytes(m, 'head', M, 32) };
}

function decodeStrict(bytes: Uint8Array): CborValue {
  try {
    return decodeDeterministic(bytes);
  } catch (e) {
    throw protocolError(M, `receipt is not deterministic CBOR: ${(e as Error).message}`, { cause: e });
  }
}

export function decodeReceipt(bytes: Uint8Array): Receipt {
  const m = asMap(decodeStrict(bytes), M, 'receipt');
  onlyKeys(m, [...KEYS, 'status', ...OPTIONAL_KEYS], M, 'receipt');
  for (const k of KEYS) if (m[k] === undefined) throw protocolError(M, `receipt lacks "${k}"`);
  if (m.v !== 1) throw protocolError(M, 'receipt version must be 1');
  const r: Receipt = {
    v: 1,
    seq: fUint(m, 'seq', M),
    prev: fBytes(m, 'prev', M, 32),
    requestId: fText(m, 'requestId', M, 256),
    time: fUint(m, 'time', M),
    model: fText(m, 'model', M, 256),
    account: fText(m, 'account', M, 128),
    workerId: fText(m, 'workerId', M, 128),
    workerKey: fBytes(m, 'workerKey', M, 32),
    evidenceDigest: fBytes(m, 'evidenceDigest', M, 32),
    offerId: fText(m, 'offerId', M, 300),
    offerDigest: fBytes(m, 'offerDigest', M, 32),
    inputTokens: fUint(m, 'inputTokens', M),
    outputTokens: fUint(m, 'outputTokens', M),
    currency: fText(m, 'currency', M, 12),
    pricePerMInput: fBig(m, 'pricePerMInput', M),
    pricePerMOutput: fBig(m, 'pricePerMOutput', M),
    feeBasisPoints: fUint(m, 'feeBasisPoints', M),
    workerCost: fBig(m, 'workerCost', M),
    fee: fBig(m, 'fee', M),
    total: fBig(m, 'total', M),
    terms: termsFromCbor(m.terms, M),
    sim: fBool(m, 'sim', M),
    receiptKey: fBytes(m, 'receiptKey', M, 32),
    ...(m.weightsDigest !== undefined ? { weightsDigest: fBytes(m, 'weightsDigest', M, 32) } : {}),
    ...(m.quantization !== undefined ? { quantization: fText(m, 'quantization', M, 16) } : {}),
    ...(m.engine !== undefined ? { engine: fText(m, 'engine', M, 129) } : {}),
    ...(m.selection !== undefined ? { selection: selectionFromCbor(m.selection, M) } : {}),
    ...(m.stream !== undefined ? { stream: streamFromCbor(m.stream) } : {}),
    ...(m.status !== undefined ? { status: receiptStatus(fText(m, 'status', M, 16)) } : {}),
  };
  if (r.seq < 1) throw protocolError(M, 'receipt seq starts at 1');
  checkIdentityFields(r, (why) => {
    throw protocolError(M, `receipt ${why}`);
  });
  return r;
}

function receiptStatus(s: string): ReceiptStatus {
  if (!(RECEIPT_STATUSES as readonly string[]).includes(s)) throw protocolError(M, 'receipt status must be cancelled or failed when present');
  return s as ReceiptStatus;
}

/**
 * A receipt signer around any Ed25519 signing primitive (`signMessage` returns the 64-byte signature over the
 * bytes it is given), e.g. an enclave's node:crypto key (enclave/ledger/signer.ts) or a WebCrypto key.
 */
export function receiptSignerFrom(publicKey: Uint8Array, signMessage: (message: Uint8Array) => Uint8Array | Promise<Uint8Array>): ReceiptSigner {
  if (publicKey.length !== 32) throw protocolError(M, 'receipt public key must be a raw 32-byte Ed25519 key');
  const pk = publicKey.slice();
  return {
    publicKey: pk,
    async sign(fields) {
      const receipt: Receipt = { ...fields, v: 1, receiptKey: pk };
      const body = encodeReceipt(receipt);
      const sig = await signMessage(concat(CONTEXT, body));
      if (sig.length !== 64) throw protocolError(M, 'receipt signer returned a signature that is not 64 bytes');
      return { receipt, signed: encodeDeterministic({ receipt: body, sig }), hash: sha256(body) };
    },
    async signRecord(kind, body) {
      const sig = await signMessage(concat(RECORD_CONTEXTS[kind], body));
      if (sig.length !== 64) throw protocolError(M, 'record signer returned a signature that is not 64 bytes');
      return sig;
    },
  };
}

/** Receipt key pair via WebCrypto Ed25519; the private key is non-extractable and only ever used by `sign`. */
export async function generateReceiptKey(): Promise<ReceiptSigner> {
  const pair = (await crypto.subtle.generateKey({ name: 'Ed25519' }, false, ['sign', 'verify'])) as CryptoKeyPair;
  const publicKey = new Uint8Array(await crypto.subtle.exportKey('raw', pair.publicKey));
  const privateKey = pair.privateKey;
  return receiptSignerFrom(publicKey, async (msg) => new Uint8Array(await crypto.subtle.sign({ name: 'Ed25519' }, privateKey, own(msg))));
}

/**
 * Verifies one signed receipt: strict decoding (RECEIPT_MALFORMED), the signer against `publicKey` when given
 * (RECEIPT_KEY_MISMATCH), the Ed25519 signature (RECEIPT_SIGNATURE), and the charge arithmetic
 * (RECEIPT_COST_MISMATCH). Returns the receipt and its hash.
 */
export async function verifyReceipt(signed: Uint8Array, publicKey?: Uint8Array): Promise<SignedReceipt> {
  const env = asMap(decodeStrict(signed), M, 'signed receipt');
  onlyKeys(env, ['receipt', 'sig'], M, 'signed receipt');
  const body = fBytes(env, 'receipt', M);
  const sig = fBytes(env, 'sig', M, 64);
  const receipt = decodeReceipt(body);
  if (publicKey && !equalBytes(publicKey, receipt.receiptKey)) throw rejected('RECEIPT_KEY_MISMATCH', `receipt ${receipt.seq} was not signed by the expected enclave receipt key`);
  if (!(await ed25519Verify(receipt.receiptKey, sig, concat(CONTEXT, body)))) throw rejected('RECEIPT_SIGNATURE', `receipt ${receipt.seq} signature does not verify`);
  const c = computeCharge(receipt, receipt.feeBasisPoints, receipt.inputTokens, receipt.outputTokens);
  if (c.workerCost !== receipt.workerCost || c.fee !== receipt.fee || c.total !== receipt.total) {
    throw rejected('RECEIPT_COST_MISMATCH', `receipt ${receipt.seq} charges ${receipt.total} but its prices and token counts give ${c.total}`);
  }
  return { receipt, signed, hash: sha256(body) };
}

/** Checks that a receipt bills exactly by the signed offer it cites (RECEIPT_OFFER_MISMATCH, RECEIPT_PRICE_MISMATCH). */
export function checkReceiptAgainstOffer(r: Receipt, v: VerifiedOffer): void {
  const o: Offer = v.offer;
  if (!equalBytes(r.offerDigest, v.digest) || r.offerId !== o.offerId) throw rejected('RECEIPT_OFFER_MISMATCH', `receipt ${r.seq} cites a different offer`);
  if (r.workerId !== o.workerId || !equalBytes(r.workerKey, o.workerKey) || r.model !== o.model) throw rejected('RECEIPT_OFFER_MISMATCH', `receipt ${r.seq} worker or model differs from its offer`);
  if (r.currency !== o.currency || r.pricePerMInput !== o.pricePerMInput || r.pricePerMOutput !== o.pricePerMOutput) {
    throw rejected('RECEIPT_PRICE_MISMATCH', `receipt ${r.seq} prices ${r.pricePerMInput}/${r.pricePerMOutput} ${r.currency} differ from the signed offer's ${o.pricePerMInput}/${o.pricePerMOutput} ${o.currency}`);
  }
  const served = identityCommitments(o);
  if (r.quantization !== served.quantization || r.engine !== served.engine || (r.weightsDigest === undefined) !== (served.weightsDigest === undefined) || (r.weightsDigest && !equalBytes(r.weightsDigest, served.weightsDigest!))) {
    throw rejected('RECEIPT_OFFER_MISMATCH', `receipt ${r.seq} names other weights, quantization or engine than its offer states`);
  }
  const t = r.terms;
  const u = o.terms;
  if (t.kind !== u.kind || (t.kind === 'postpaid' && u.kind === 'postpaid' && (t.creditLimit !== u.creditLimit || t.settlementPeriodSeconds !== u.settlementPeriodSeconds)) || !samePriceTerms(t, u)) {
    throw rejected('RECEIPT_PRICE_MISMATCH', `receipt ${r.seq} payment terms differ from the signed offer`);
  }
}

/**
 * Verifies a contiguous run of signed receipts: each one (verifyReceipt), consecutive `seq`, and each `prev` equal
 * to the previous receipt's hash (RECEIPT_CHAIN_BROKEN). `startPrev` is the hash before the first (default: zero
 * hash when the first has seq 1, otherwise trusted as given in the first receipt). `keys`, when given, is the set of
 * acceptable receipt keys (one per enclave boot).
 */
export async function verifyReceiptChain(signed: readonly Uint8Array[], opts: { keys?: readonly Uint8Array[]; startPrev?: Uint8Array } = {}): Promise<SignedReceipt[]> {
  const out: SignedReceipt[] = [];
  let prevHash: Uint8Array | undefined = opts.startPrev;
  let prevSeq: number | undefined;
  for (const s of signed) {
    const v = await verifyReceipt(s);
    const r = v.receipt;
    if (opts.keys && !opts.keys.some((k) => equalBytes(k, r.receiptKey))) throw rejected('RECEIPT_KEY_MISMATCH', `receipt ${r.seq} was not signed by an expected enclave receipt key`);
    if (prevSeq !== undefined && r.seq !== prevSeq + 1) throw rejected('RECEIPT_CHAIN_BROKEN', `receipt ${r.seq} follows receipt ${prevSeq}: a receipt is missing or reordered`);
    if (prevHash === undefined && r.seq === 1) prevHash = ZERO_HASH;
    if (prevHash !== undefined && !equalBytes(prevHash, r.prev)) throw rejected('RECEIPT_CHAIN_BROKEN', `receipt ${r.seq} does not link to the hash of receipt ${r.seq - 1}`);
    if (r.seq === 1 && !isZero(r.prev)) throw rejected('RECEIPT_CHAIN_BROKEN', 'the first receipt must link to the zero hash');
    prevHash = v.hash;
    prevSeq = r.seq;
    out.push(v);
  }
  return out;
}


/** A readable JSON view of a receipt (bigints as decimal strings, bytes as hex). Informational: verify `signed`. */
export function receiptView(r: Receipt): Record<string, unknown> {
  return {
    seq: r.seq,
    prev: hex(r.prev),
    requestId: r.requestId,
    time: new Date(r.time).toISOString(),
    model: r.model,
    account: r.account,
    workerId: r.workerId,
    workerKey: hex(r.workerKey),
    evidenceDigest: hex(r.evidenceDigest),
    offerId: r.offerId,
    offerDigest: hex(r.offerDigest),
    inputTokens: r.inputTokens,
    outputTokens: r.outputTokens,
    currency: r.currency,
    pricePerMInput: r.pricePerMInput.toString(),
    pricePerMOutput: r.pricePerMOutput.toString(),
    feeBasisPoints: r.feeBasisPoints,
    workerCost: r.workerCost.toString(),
    fee: r.fee.toString(),
    total: r.total.toString(),
    terms: r.terms.kind === 'postpaid' ? { kind: 'postpaid', creditLimit: r.terms.creditLimit.toString(), settlementPeriodSeconds: r.terms.settlementPeriodSeconds } : { kind: r.terms.kind },
    sim: r.sim,
    receiptKey: hex(r.receiptKey),
    ...(r.weightsDigest !== undefined ? { weightsDigest: hex(r.weightsDigest), quantization: r.quantization, engine: r.engine } : {}),
    ...(r.selection !== undefined ? { selection: { root: hex(r.selection.root), considered: r.selection.considered, eligible: hex(r.selection.eligible), count: r.selection.count, strategy: r.selection.strategy, constraints: hex(r.selection.constraints), rank: r.selection.rank } } : {}),
    ...(r.stream !== undefined ? { stream: { chunks: r.stream.chunks, head: hex(r.stream.head) } } : {}),
    status: r.status ?? 'completed',
  };
}

/** The JSON the client receives and `gm receipts verify FILE` reads: base64url signed receipt and signed offer. */
export interface ReceiptEnvelope {
  readonly type: 'gm.receipt';
  readonly v: 1;
  /** base64url of the signed receipt bytes. */
  readonly receipt: string;
  /** base64url of the signed offer the receipt cites (lets anyone check the price without the ledger). */
  readonly offer?: string;
  /**
   * The preimages of the receipt's selection digests (base64url): the rule's deterministic CBOR and the eligibility
   * bitmap, for `gm receipts prove`. Checked against the signed digests, never trusted alone.
   */
  readonly selection?: { readonly rule: string; readonly eligible: string };
  /** Informational copy of the fields; never trusted by verifiers. */
  readonly view?: Record<string, unknown>;
}

export function receiptEnvelope(s: SignedReceipt, signedOffer?: Uint8Array, selection?: { rule: Uint8Array; eligible: Uint8Array }): ReceiptEnvelope {
  return {
    type: 'gm.receipt', v: 1, receipt: toBase64Url(s.signed), ...(signedOffer ? { offer: toBase64Url(signedOffer) } : {}),
    ...(selection ? { selection: { rule: toBase64Url(selection.rule), eligible: toBase64Url(selection.eligible) } } : {}),
    view: receiptView(s.receipt),
  };
}

/**
 * The `gm-receipt` header value for non-streamed answers: base64url of the JSON envelope (no spaces or quotes); `json`
 * is that JSON when the caller already has it.
 */
export function receiptHeaderValue(env: ReceiptEnvelope, json: string = JSON.stringify(env)): string {
  return toBase64Url(new TextEncoder().encode(json));
}

/** Parses a `gm-receipt` header value back into the envelope's bytes. */
export function parseReceiptHeader(value: string): ReturnType<typeof parseReceiptEnvelope> {
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(fromBase64(value, 'gm-receipt header')));
  } catch (e) {
    throw protocolError(M, 'gm-receipt header is not base64url JSON', { cause: e });
  }
  return parseReceiptEnvelope(json);
}

/** Parses a receipt envelope (the SSE event data or one JSON value of a receipts file). */
export function parseReceiptEnvelope(v: unknown): { signed: Uint8Array; offer?: Uint8Array; selection?: { rule: Uint8Array; eligible: Uint8Array } } {
  const o = v as Partial<ReceiptEnvelope> | null;
  if (!o || typeof o !== 'object' || o.type !== 'gm.receipt' || o.v !== 1 || typeof o.receipt !== 'string') throw protocolError(M, 'not a gm.receipt v1 envelope');
  if (o.offer !== undefined && typeof o.offer !== 'string') throw protocolError(M, 'receipt envelope offer must be base64url text');
  const sel = o.selection;
  if (sel !== undefined && (typeof sel !== 'object' || sel === null || typeof sel.rule !== 'string' || typeof sel.eligible !== 'string')) throw protocolError(M, 'receipt envelope selection must hold base64url rule and eligible');
  return {
    signed: fromBase64(o.receipt, 'receipt'),
    ...(o.offer !== undefined ? { offer: fromBase64(o.offer, 'offer') } : {}),
    ...(sel !== undefined ? { selection: { rule: fromBase64(sel.rule, 'selection rule'), eligible: fromBase64(sel.eligible, 'selection bitmap') } } : {}),
  };
}
