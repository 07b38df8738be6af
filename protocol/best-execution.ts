/**
 * Provable best execution (docs/market.md "Best execution"): each receipt commits to the offers the enclave
 * considered, which of them were eligible, the selection rule with its inputs, and the rank of the offer that served,
 * so an auditor holding the public offer listing and the receipt envelope can recompute the set and check that no
 * eligible offer ranked above the winner under the stated rule.
 *
 * Considered set: the live offers of the requested models in the order book, per model sorted by offer digest
 * (bytewise), models in the request's order. Its root is the RFC 6962 §2.1 Merkle Tree Hash over the offer digests:
 *
 *   leaf(d)  = SHA-256(0x00 || d)               MTH({d}) = leaf(d)
 *   MTH(D[n]) = SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n]))   k = the largest power of two < n
 *
 * Eligibility is a bitmap over the considered set (bit i, least significant first within byte i/8, set when offer i
 * passed every constraint), committed by its SHA-256, with the number of bits set. The enclave keeps each model's
 * tree between changes to its offers, so a request hashes only the bitmap, never thousands of leaves.
 *
 * The receipt's `selection` map: {root: bytes 32, considered: uint, eligible: bytes 32 (SHA-256 of the bitmap),
 * count: uint (bits set), strategy: "price" | "latency" | "throughput", constraints: bytes 32 (SHA-256 of the rule
 * below), rank: uint (the served offer's position in the ranking, 0 = best; above 0 after a failover or when a
 * better offer's worker could not be used)}. The client receives the rule bytes and the bitmap beside the receipt
 * (envelope `selection: {rule, eligible}`, base64url), inside the encrypted answer.
 *
 * The rule is the deterministic CBOR map (protocol/market-cbor.ts) of the request's constraints that decide
 * eligibility and rank: models [text], pool text, strategy text, maxIn?/maxOut? uint (quoted micro-units per 1M
 * tokens; an offer is within them by protocol/offer-terms.ts withinPriceCap, after its price terms, at expIn and
 * expOut), priceCurrency? text, payCurrency? text, order? [text], only? [text sorted], ignore? [text sorted],
 * fallbacks bool, terms [text sorted], quantizations? [text sorted], weights? [bytes sorted], params uint (bitmask of
 * protocol/model-identity.ts PARAMETERS), expIn uint, expOut uint. Ranking under `price`: lexicographic (group,
 * effective price) where group = position in `order` (unlisted after) · 32 + (model position when pool is
 * "ordered") and effective price = quotedIn·expIn + quotedOut·expOut with quoted = price + fee rounded up, after the
 * price terms the signed offer carries (minimum charge, graduated output discount: protocol/offer-terms.ts
 * effectiveQuote; the offers are the tree's leaves, so the committed set fixes the terms applied); ties are
 * broken by live load and a per-request rotation, so the check counts only offers strictly better than the winner.
 * Under `latency` and `throughput` the rank uses live measurements no offer carries: only the group is checked.
 * Runtime-agnostic (Uint8Array, @noble/hashes).
 */
import { effectiveQuote, withinPriceCap } from './offer-terms.ts';
import { sha256 } from '@noble/hashes/sha2.js';
import { concat, equalBytes, hex } from '../attestation/bytes.ts';
import { protocolError, rejected } from '../attestation/errors.ts';
import { asMap, type CborMap, type CborValue, decodeDeterministic, encodeDeterministic, fBool, fBytes, fText, fUint, onlyKeys } from './market-cbor.ts';
import { parameterMask } from './model-identity.ts';
import type { Offer, TermsKind, VerifiedOffer } from './offer.ts';

export type Strategy = 'price' | 'latency' | 'throughput';
export type PoolRule = 'single' | 'ordered' | 'latency' | 'throughput' | 'price';

/** The request's selection rule as committed (field names as on the wire). */
export interface SelectionRule {
  readonly models: readonly string[];
  readonly pool: PoolRule;
  readonly strategy: Strategy;
  readonly maxIn?: bigint;
  readonly maxOut?: bigint;
  readonly priceCurrency?: string;
  readonly payCurrency?: string;
  readonly order?: readonly string[];
  readonly only?: readonly string[];
  readonly ignore?: readonly string[];
  readonly fallbacks: boolean;
  readonly terms: readonly TermsKind[];
  readonly quantizations?: readonly string[];
  readonly weights?: readonly Uint8Array[];
  readonly params: number;
  readonly expIn: number;
  readonly expOut: number;
}

/** The receipt's commitment to one selection. */
export interface SelectionCommitment {
  readonly root: Uint8Array;
  readonly considered: number;
  readonly eligible: Uint8Array;
  readonly count: number;
  readonly strategy: Strategy;
  readonly constraints: Uint8Array;
  readonly rank: number;
}

const M = 'SELECTION_MALFORMED';
const STRATEGIES: readonly string[] = ['price', 'latency', 'throughput'];
const POOLS: readonly string[] = ['single', 'ordered', 'latency', 'throughput', 'price'];
const LEAF = Uint8Array.of(0);
const NODE = Uint8Array.of(1);

// ---- Merkle Tree Hash (RFC 6962 §2.1)

/** A SHA-256 implementation (the enclave passes node:crypto's, faster for the thousands of nodes of a large book). */
export type Sha256 = (data: Uint8Array) => Uint8Array;

export const leafHash = (digest: Uint8Array, h: Sha256 = sha256): Uint8Array => h(concat(LEAF, digest));

/** MTH over already hashed leaves (leafHash of each digest), in order; the empty tree is SHA-256(""). */
export function merkleRoot(leaves: readonly Uint8Array[], h: Sha256 = sha256): Uint8Array {
  if (leaves.length === 0) return h(new Uint8Array(0));
  const rec = (lo: number, hi: number): Uint8Array => {
    if (hi - lo === 1) return leaves[lo]!;
    let k = 1;
    while (k * 2 < hi - lo) k *= 2;
    return h(concat(NODE, rec(lo, lo + k), rec(lo + k, hi)));
  };
  return rec(0, leaves.length);
}

/** Bytewise order of offer digests (the considered set's order within a model). */
export function compareDigests(a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < a.length && i < b.length; i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return a.length - b.length;
}

export const bitSet = (bits: Uint8Array, i: number): boolean => ((bits[i >> 3] ?? 0) & (1 << (i & 7))) !== 0;

// ---- the rule

const sortedText = (xs: readonly string[]): string[] => [...xs].sort();

export function encodeRule(r: SelectionRule): Uint8Array {
  const m: Record<string, CborValue> = {
    models: [...r.models],
    pool: r.pool,
    strategy: r.strategy,
    fallbacks: r.fallbacks,
    terms: sortedText(r.terms),
    params: r.params,
    expIn: r.expIn,
    expOut: r.expOut,
  };
  if (r.maxIn !== undefined) m.maxIn = r.maxIn;
  if (r.maxOut !== undefined) m.maxOut = r.maxOut;
  if (r.priceCurrency !== undefined) m.priceCurrency = r.priceCurrency;
  if (r.payCurrency !== undefined) m.payCurrency = r.payCurrency;
  if (r.order !== undefined) m.order = [...r.order];
  if (r.only !== undefined) m.only = sortedText(r.only);
  if (r.ignore !== undefined) m.ignore = sortedText(r.ignore);
  if (r.quantizations !== undefined) m.quantizations = sortedText(r.quantizations);
  if (r.weights !== undefined) m.weights = [...r.weights].sort(compareDigests);
  return encodeDeterministic(m);
}

function textList(m: CborMap, k: string): string[] {
  const v = m[k];
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) throw protocolError(M, `rule field "${k}" must be a list of text`);
  return v as string[];
}

const optional = <T>(m: CborMap, k: string, read: () => T): T | undefined => (m[k] === undefined ? undefined : read());

export function decodeRule(bytes: Uint8Array): SelectionRule {
  let v: CborValue;
  try {
    v = decodeDeterministic(bytes);
  } catch (e) {
    throw protocolError(M, `selection rule is not deterministic CBOR: ${(e as Error).message}`, { cause: e });
  }
  const m = asMap(v, M, 'selection rule');
  onlyKeys(m, ['models', 'pool', 'strategy', 'maxIn', 'maxOut', 'priceCurrency', 'payCurrency', 'order', 'only', 'ignore', 'fallbacks', 'terms', 'quantizations', 'weights', 'params', 'expIn', 'expOut'], M, 'selection rule');
  const pool = fText(m, 'pool', M, 16);
  const strategy = fText(m, 'strategy', M, 16);
  if (!POOLS.includes(pool) || !STRATEGIES.includes(strategy)) throw protocolError(M, 'selection rule pool or strategy unknown');
  const big = (k: string): bigint => {
    const x = m[k];
    if (typeof x === 'number') return BigInt(x);
    if (typeof x === 'bigint') return x;
    throw protocolError(M, `rule field "${k}" must be an unsigned integer`);
  };
  const weights = optional(m, 'weights', () => {
    const w = m.weights;
    if (!Array.isArray(w) || !w.every((x) => x instanceof Uint8Array && x.length === 32)) throw protocolError(M, 'rule field "weights" must be a list of 32-byte digests');
    return w as Uint8Array[];
  });
  const r: SelectionRule = {
    models: textList(m, 'models'),
    pool: pool as PoolRule,
    strategy: strategy as Strategy,
    fallbacks: fBool(m, 'fallbacks', M),
    terms: textList(m, 'terms') as TermsKind[],
    params: fUint(m, 'params', M),
    expIn: fUint(m, 'expIn', M),
    expOut: fUint(m, 'expOut', M),
    ...(m.maxIn !== undefined ? { maxIn: big('maxIn') } : {}),
    ...(m.maxOut !== undefined ? { maxOut: big('maxOut') } : {}),
    ...(m.priceCurrency !== undefined ? { priceCurrency: fText(m, 'priceCurrency', M, 12) } : {}),
    ...(m.payCurrency !== undefined ? { payCurrency: fText(m, 'payCurrency', M, 12) } : {}),
    ...(m.order !== undefined ? { order: textList(m, 'order') } : {}),
    ...(m.only !== undefined ? { only: textList(m, 'only') } : {}),
    ...(m.ignore !== undefined ? { ignore: textList(m, 'ignore') } : {}),
    ...(m.quantizations !== undefined ? { quantizations: textList(m, 'quantizations') } : {}),
    ...(weights ? { weights } : {}),
  };
  if (r.models.length === 0) throw protocolError(M, 'selection rule names no model');
  return r;
}

export function selectionToCbor(s: SelectionCommitment): CborMap {
  if (s.root.length !== 32 || s.eligible.length !== 32 || s.constraints.length !== 32) throw protocolError(M, 'selection digests must be 32 bytes');
  for (const n of [s.considered, s.count, s.rank]) if (!Number.isSafeInteger(n) || n < 0) throw protocolError(M, 'selection counts must be non-negative integers');
  if (!STRATEGIES.includes(s.strategy)) throw protocolError(M, 'selection strategy unknown');
  return { root: s.root, considered: s.considered, eligible: s.eligible, count: s.count, strategy: s.strategy, constraints: s.constraints, rank: s.rank };
}

export function selectionFromCbor(v: CborValue | undefined, code: string): SelectionCommitment {
  const m = asMap(v, code, 'selection');
  onlyKeys(m, ['root', 'considered', 'eligible', 'count', 'strategy', 'constraints', 'rank'], code, 'selection');
  const strategy = fText(m, 'strategy', code, 16);
  if (!STRATEGIES.includes(strategy)) throw protocolError(code, 'selection strategy unknown');
  const s: SelectionCommitment = {
    root: fBytes(m, 'root', code, 32),
    considered: fUint(m, 'considered', code),
    eligible: fBytes(m, 'eligible', code, 32),
    count: fUint(m, 'count', code),
    strategy: strategy as Strategy,
    constraints: fBytes(m, 'constraints', code, 32),
    rank: fUint(m, 'rank', code),
  };
  if (s.count < 1 || s.count > s.considered || s.rank >= s.count) throw protocolError(code, 'selection count, considered and rank are inconsistent');
  return s;
}

// ---- the auditor's check

/** Quoted price per 1M tokens: price + fee, rounded up (as the order book quotes it). */
const quoted = (p: bigint, feeBps: number): bigint => p + (p * BigInt(feeBps) + 9_999n) / 10_000n;

/** Why an offer fails the rule's static constraints (those an auditor can check from the offer), or undefined. */
export function staticExclusion(r: SelectionRule, o: Offer, feeBps: number): string | undefined {
  if (!r.models.includes(o.model)) return 'model';
  const slug = (xs: readonly string[] | undefined) => xs !== undefined && (xs.includes(o.workerId) || xs.includes(o.hotkey));
  if ((r.only !== undefined && !slug(r.only)) || slug(r.ignore)) return 'provider';
  if (r.order !== undefined && !r.fallbacks && !slug(r.order)) return 'order';
  if ((r.priceCurrency !== undefined && o.currency !== r.priceCurrency) || (r.payCurrency !== undefined && o.currency !== r.payCurrency)) return 'currency';
  // max_price caps what the request would pay under the offer's terms (protocol/offer-terms.ts withinPriceCap).
  const cap = { ...(r.maxIn !== undefined ? { maxIn: r.maxIn } : {}), ...(r.maxOut !== undefined ? { maxOut: r.maxOut } : {}) };
  if (!withinPriceCap(quoted(o.pricePerMInput, feeBps), quoted(o.pricePerMOutput, feeBps), quoted(o.terms.minCharge ?? 0n, feeBps), o.terms, cap, r.expIn, r.expOut)) return 'price';
  if (!r.terms.includes(o.terms.kind)) return 'terms';
  const id = o.identity;
  if ((r.quantizations !== undefined && (!id || !r.quantizations.includes(id.quantization))) || (r.weights !== undefined && (!id || !r.weights.some((w) => equalBytes(w, id.weightsDigest))))) return 'identity';
  if (r.params !== 0 && ((id ? parameterMask(id.parameters) : 0) & r.params) !== r.params) return 'parameters';
  return undefined;
}

function rankKey(r: SelectionRule, o: Offer, feeBps: number): { group: number; price: bigint } {
  let oi = r.order ? r.order.findIndex((s) => s === o.workerId || s === o.hotkey) : 0;
  if (oi < 0) oi = r.order!.length;
  const group = oi * 32 + (r.pool === 'ordered' ? r.models.indexOf(o.model) : 0);
  // Effective price after the offer's signed price terms: the same function the router ranks by.
  const t = o.terms;
  return { group, price: effectiveQuote(quoted(o.pricePerMInput, feeBps), quoted(o.pricePerMOutput, feeBps), quoted(t.minCharge ?? 0n, feeBps), t, r.expIn, r.expOut) };
}

export interface ProofInput {
  readonly selection: SelectionCommitment;
  /** The receipt's offer digest and fee. */
  readonly winner: Uint8Array;
  readonly feeBasisPoints: number;
  /** The rule bytes and eligibility bitmap from the receipt envelope. */
  readonly rule: Uint8Array;
  readonly bitmap: Uint8Array;
  /** Verified offers from the public listing (any superset of the considered set; other models are ignored). */
  readonly offers: readonly VerifiedOffer[];
}

export interface ProofResult {
  readonly considered: number;
  readonly eligible: number;
  /** Offers that meet every static constraint but were not eligible (capacity, health or worker verification at the time). */
  readonly excludedLive: number;
  /** Eligible offers strictly better than the winner under the rule (at most `rank`). */
  readonly better: number;
  readonly rankChecked: 'price' | 'group only';
}

/**
 * Recomputes the considered set from `offers` (the committed models, per model sorted by digest), checks its root
 * and size (SELECTION_SET_MISMATCH), the rule and bitmap against their committed digests
 * (SELECTION_CONSTRAINTS_MISMATCH, SELECTION_BITMAP_MISMATCH), that the winner and every offer marked eligible meet
 * the rule's static constraints (SELECTION_NOT_ELIGIBLE), and that at most `rank` eligible offers rank strictly above
 * the winner (BEST_EXECUTION_VIOLATED).
 */
export function proveBestExecution(p: ProofInput): ProofResult {
  const s = p.selection;
  if (!equalBytes(sha256(p.rule), s.constraints)) throw rejected('SELECTION_CONSTRAINTS_MISMATCH', 'the selection rule does not match the digest the receipt commits to');
  const rule = decodeRule(p.rule);
  if (!equalBytes(sha256(p.bitmap), s.eligible) || p.bitmap.length !== Math.ceil(s.considered / 8)) throw rejected('SELECTION_BITMAP_MISMATCH', 'the eligibility bitmap does not match the digest the receipt commits to');
  const seen = new Set<string>();
  const considered: VerifiedOffer[] = [];
  for (const model of rule.models) {
    const mine: VerifiedOffer[] = [];
    for (const v of p.offers) {
      const h = hex(v.digest);
      if (v.offer.model !== model || seen.has(h)) continue;
      seen.add(h);
      mine.push(v);
    }
    considered.push(...mine.sort((a, b) => compareDigests(a.digest, b.digest)));
  }
  const root = merkleRoot(considered.map((v) => leafHash(v.digest)));
  if (considered.length !== s.considered || !equalBytes(root, s.root)) {
    throw rejected('SELECTION_SET_MISMATCH', `the offers given form a set of ${considered.length} whose root differs from the committed set of ${s.considered}: the listing is not the one the enclave selected from`);
  }
  const eligible = considered.filter((_, i) => bitSet(p.bitmap, i));
  if (eligible.length !== s.count) throw rejected('SELECTION_BITMAP_MISMATCH', `the bitmap marks ${eligible.length} offers eligible, the receipt says ${s.count}`);
  const winner = eligible.find((v) => equalBytes(v.digest, p.winner));
  if (!winner) throw rejected('SELECTION_NOT_ELIGIBLE', 'the offer that served is not in the committed eligible set');
  for (const v of eligible) {
    const why = staticExclusion(rule, v.offer, p.feeBasisPoints);
    if (why) throw rejected('SELECTION_NOT_ELIGIBLE', `offer ${v.offer.offerId} is marked eligible but fails the rule (${why})`);
  }
  const excludedLive = considered.filter((v, i) => !bitSet(p.bitmap, i) && staticExclusion(rule, v.offer, p.feeBasisPoints) === undefined).length;
  const w = rankKey(rule, winner.offer, p.feeBasisPoints);
  const byPrice = rule.strategy === 'price';
  let better = 0;
  for (const v of eligible) {
    const k = rankKey(rule, v.offer, p.feeBasisPoints);
    if (k.group < w.group || (byPrice && k.group === w.group && k.price < w.price)) better++;
  }
  if (better > s.rank) {
    throw rejected('BEST_EXECUTION_VIOLATED', `${better} eligible offer(s) rank above the one that served under ${rule.strategy}, but the receipt gives it rank ${s.rank}`);
  }
  return { considered: considered.length, eligible: eligible.length, excludedLive, better, rankChecked: byPrice ? 'price' : 'group only' };
}
