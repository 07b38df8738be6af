/**
 * Per-request selection (docs/design.md §6 "selects per request by the user's constraints and strategy; on failure
 * before the first token it fails over to the next eligible offer if the user allowed fallbacks").
 *
 * One pass over the requested models' entries (the book is indexed by model; nothing sorts per request): each
 * entry is either counted under the first constraint that excludes it or ranked, keeping the best `limit`
 * candidates by insertion. For the common case (one model, sort by price, no provider.order) a threshold scan over
 * the model's two price-sorted lists stops as soon as no unseen offer can rank, discount schedules included (same
 * result, proven against the full scan by a property test). Rank, most significant first:
 *   1. position in provider.order (unlisted providers after, and only when allow_fallbacks is not false);
 *   2. model position when the pool is "in order";
 *   3. the strategy: effective price = quotedIn·expectedInput + quotedOut·expectedOutput, after the offer's price
 *      terms (minimum charge, graduated output discount: protocol/offer-terms.ts effectiveQuote, the function the
 *      best-execution audit ranks by) (integers: exact safe Numbers when the request's bound allows, bigint
 *      otherwise), or live TTFT, or live tokens/s (descending);
 *      a pool ":latency"/":throughput" overrides provider.sort;
 *   4. effective price (for the latency/throughput strategies);
 *   5. load: in-flight / capacity, lower first (cross-multiplied integers), which spreads equal offers;
 *   6. mix(FNV-1a(offer) xor FNV-1a(requestId)): a deterministic per-request rotation among exact ties; then offerId.
 * Eligible means all of: model requested, offer inside its validity window, worker registered and its verification
 * not past `verifiedUntil`, provider only/ignore/order, currency, the price after terms within max_price
 * (protocol/offer-terms.ts withinPriceCap), payment terms
 * accepted, attested quantization and weights digest among those requested (provider.quantizations,
 * provider.weights_digests), the request's parameters declared (provider.require_parameters), in-flight < capacity, worker not tripped by recent errors. None eligible → NO_ELIGIBLE_OFFER, whose
 * message counts the offers each constraint excluded (model and constraint names only, never request text).
 */
import { fromHex } from '../../attestation/bytes.ts';
import { GmError, unavailable } from '../../attestation/errors.ts';
import type { SelectionRule, Strategy } from '../../protocol/best-execution.ts';
import { type EligibilityRule, eligibleWords, popcount, withinCap, writeBits } from './columns.ts';
import type { Offer } from '../../protocol/offer.ts';
import { computeCharge } from '../../protocol/receipt.ts';
import { effectiveQuote } from '../../protocol/offer-terms.ts';
import { effectiveQuoteNumber, termsExact } from './terms-number.ts';
import { type BookEntry, fnv1a, type OrderBook, TERMS_BIT, type WorkerInfo } from './book.ts';

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);
import type { RouteConstraints } from './constraints.ts';

export interface Candidate {
  readonly entry: BookEntry;
  readonly offer: Offer;
  readonly worker: WorkerInfo;
  /** Upper bound of the charge (worker cost + fee) for the request's token bounds: authorise this much. */
  readonly maxCost: bigint;
}

/** What the receipt commits to about this selection (protocol/best-execution.ts), when asked for. */
export interface SelectionProof {
  /** Merkle root over the considered offers (each requested model's live offers, sorted by digest). */
  readonly root: Uint8Array;
  readonly considered: number;
  /** Bit i set when considered offer i was eligible. */
  readonly bitmap: Uint8Array;
  readonly count: number;
  readonly strategy: Strategy;
}

export interface Selection {
  /** Eligible candidates, best first (at most `limit`). Never empty: an empty selection throws instead. */
  readonly candidates: readonly Candidate[];
  /** The best-execution commitment (with SelectOptions.commit). */
  readonly proof?: SelectionProof;
  readonly allowFallbacks: boolean;
  readonly constraints: RouteConstraints;
  readonly feeBasisPoints: number;
}

export interface SelectOptions {
  /** Seeds the deterministic rotation among exact ties (use the request id). */
  readonly requestId?: string;
  /** How many ranked candidates to keep for failover (default 8). */
  readonly limit?: number;
  /** `linear` forces the full scan (tests compare it with the threshold scan). */
  readonly scan?: 'auto' | 'linear';
  /**
   * Commit to the considered set and the eligible subset (a full scan: every eligible offer must be marked, so the
   * threshold scan's early stop does not apply).
   */
  readonly commit?: boolean;
}

let visitStamp = 0;

export const EXCLUSION_REASONS = {
  validity: 'outside validity window',
  worker: 'worker unverified or stale',
  provider: 'excluded by provider.only/ignore',
  order: 'not in provider.order with allow_fallbacks false',
  currency: 'other currency',
  price: 'over max_price',
  terms: 'payment terms not accepted',
  identity: 'quantization or weights not requested',
  parameters: 'request parameters not declared',
  capacity: 'at capacity',
  health: 'worker failing recently',
  inflation: 'demoted for over-reporting usage',
} as const;
export type ExclusionReason = keyof typeof EXCLUSION_REASONS;

interface Ranked {
  e: BookEntry;
  w: WorkerInfo;
  group: number;
  primary: number;
  primaryBig: bigint;
  secondary: number;
  tie: number;
}

function compare(a: Ranked, b: Ranked): number {
  if (a.group !== b.group) return a.group - b.group;
  if (a.primaryBig !== b.primaryBig) return a.primaryBig < b.primaryBig ? -1 : 1;
  if (a.primary !== b.primary) return a.primary - b.primary;
  if (a.secondary !== b.secondary) return a.secondary - b.secondary;
  const ua = a.e.stats.inFlight * b.e.offer.capacity;
  const ub = b.e.stats.inFlight * a.e.offer.capacity;
  if (ua !== ub) return ua - ub;
  if (a.tie !== b.tie) return a.tie - b.tie;
  if (a.e.offer.offerId !== b.e.offer.offerId) return a.e.offer.offerId < b.e.offer.offerId ? -1 : 1;
  // Offer ids are per worker (two workers may use the same one): the worker id settles it.
  return a.e.offer.workerId < b.e.offer.workerId ? -1 : a.e.offer.workerId > b.e.offer.workerId ? 1 : 0;
}

/** True when the entry's provider slug (workerId or hotkey) is in the set. */
const slugIn = (set: ReadonlySet<string>, o: Offer): boolean => set.has(o.workerId) || set.has(o.hotkey);

function orderIndex(order: readonly string[], o: Offer): number {
  for (let i = 0; i < order.length; i++) if (order[i] === o.workerId || order[i] === o.hotkey) return i;
  return order.length;
}

/** The ranked eligible candidates for a request, or NO_ELIGIBLE_OFFER saying which constraint excluded how many. */
export function select(book: OrderBook, c: RouteConstraints, now: number, opts: SelectOptions = {}): Selection {
  const limit = opts.limit ?? 8;
  const reqSeed = fnv1a(opts.requestId ?? '');
  const counts: Record<ExclusionReason, number> = { validity: 0, worker: 0, provider: 0, order: 0, currency: 0, price: 0, terms: 0, identity: 0, parameters: 0, capacity: 0, health: 0, inflation: 0 };
  const commit = opts.commit === true;
  let bits: Uint8Array | undefined;
  let offsets: number[] = [];
  let root: Uint8Array | undefined;
  let considered = 0;
  let eligibleCount = 0;
  if (commit) {
    const trees = c.models.map((m) => book.treeFor(m, now));
    offsets = trees.map((t) => ((considered += t.leaves.length), considered - t.leaves.length));
    bits = new Uint8Array(Math.ceil(considered / 8));
    root = trees.length === 1 ? trees[0]!.root : book.poolRoot(c.models, trees);
  }
  const strategy = c.poolMode === 'latency' || c.poolMode === 'throughput' ? c.poolMode : c.sort;
  const expIn = c.expectedInputTokens;
  const expOut = c.expectedOutputTokens;
  // Exact-integer guard: every effective price this request can form stays below 2^53 as a Number.
  // A minimum charge ranks as quotedMin·10^6 (protocol/offer-terms.ts effectiveQuote), so it is bounded too.
  const exact = book.maxQuoted * (expIn + expOut) <= Number.MAX_SAFE_INTEGER && book.maxQuotedMin * 1_000_000n <= MAX_SAFE;
  const maxIn = c.maxPricePerMInput === undefined ? Infinity : Number(c.maxPricePerMInput);
  const maxOut = c.maxPricePerMOutput === undefined ? Infinity : Number(c.maxPricePerMOutput);
  const priceCapped = c.maxPricePerMInput !== undefined || c.maxPricePerMOutput !== undefined;
  // Offers with price terms are priced and capped in Numbers when that is exact (terms-number.ts), else in bigints.
  const numTerms = termsExact(book.maxQuoted, book.maxQuotedMin, expIn, expOut);
  const orderLen = c.order ? c.order.length : 0;
  const top: Ranked[] = [];
  let seen = 0;

  const byPrice = strategy === 'price';
  const byLatency = strategy === 'latency';
  const ordered = c.poolMode === 'ordered';
  const only = c.only;
  const ignore = c.ignore;
  const order = c.order;
  let termsMask = 0;
  for (const t of c.acceptTerms) termsMask |= TERMS_BIT[t];
  const currencyFilter = priceCapped ? c.maxPriceCurrency : c.paymentCurrency;
  const payCurrency = c.paymentCurrency;
  const quants = c.quantizations;
  const weights = c.weightsDigests;
  const needParams = c.requiredParameters;
  const cap = {
    ...(c.maxPricePerMInput !== undefined ? { maxIn: c.maxPricePerMInput } : {}),
    ...(c.maxPricePerMOutput !== undefined ? { maxOut: c.maxPricePerMOutput } : {}),
  };
  const rule: EligibilityRule = {
    nowMs: now, nowS: Math.floor(now / 1000), maxIn, maxOut, cap, expIn, expOut, termsExact: numTerms, termsMask: 0, needParams,
    currencies: [currencyFilter, payCurrency].filter((x): x is string => x !== undefined),
    quantizations: quants, weights, provider: undefined,
  };

  // now < validFrom·1000 ⇔ floor(now/1000) < validFrom, and likewise for validUntil (both whole seconds).
  const nowS = Math.floor(now / 1000);
  const visit = (e: BookEntry, mi: number): void => {
    const o = e.offer;
    if (nowS < e.fromS || nowS >= e.untilS) {
      counts.validity++;
      return;
    }
    const w = e.slot.info;
    if (w === undefined || w.verifiedUntil <= now) {
      counts.worker++;
      return;
    }
    if ((only !== undefined && !slugIn(only, o)) || (ignore !== undefined && slugIn(ignore, o))) {
      counts.provider++;
      return;
    }
    const oi = order !== undefined ? orderIndex(order, o) : 0;
    if (order !== undefined && oi === orderLen && !c.allowFallbacks) {
      counts.order++;
      return;
    }
    if ((currencyFilter !== undefined && e.currency !== currencyFilter) || (payCurrency !== undefined && e.currency !== payCurrency)) {
      counts.currency++;
      return;
    }
    if (priceCapped && !withinCap(e, rule)) {
      counts.price++;
      return;
    }
    if ((e.termsBit & termsMask) === 0) {
      counts.terms++;
      return;
    }
    // An offer that states no identity cannot meet an identity constraint (fail closed, never assumed).
    if ((quants !== undefined && (e.quantization === undefined || !quants.has(e.quantization))) || (weights !== undefined && (e.weightsHex === undefined || !weights.has(e.weightsHex)))) {
      counts.identity++;
      return;
    }
    if ((e.paramMask & needParams) !== needParams) {
      counts.parameters++;
      return;
    }
    const st = e.stats;
    if (st.inFlight >= e.capacity) {
      counts.capacity++;
      return;
    }
    if (st.samples !== 0 && st.unhealthy(now)) {
      counts.health++;
      return;
    }
    if (st.inflatedUntil > now) {
      counts.inflation++;
      return;
    }
    const group = oi * 32 + (ordered ? mi : 0);
    const pt = e.priceTerms;
    const price = !exact ? 0 : pt === undefined ? e.quotedIn * expIn + e.quotedOut * expOut : numTerms ? effectiveQuoteNumber(e.quotedIn, e.quotedOut, Number(e.quotedMin), pt, expIn, expOut) : Number(effectiveQuote(BigInt(e.quotedIn), BigInt(e.quotedOut), e.quotedMin, pt, expIn, expOut));
    const primary = byPrice ? price : byLatency ? st.ttftMs : -st.tokensPerSecond;
    // Cheap pre-check against the current worst kept candidate before building anything.
    if (top.length === limit && exact) {
      const worst = top[limit - 1]!;
      if (group > worst.group || (group === worst.group && primary > worst.primary)) return;
    }
    insertTop(top, { e, w, group, primary, primaryBig: exact || !byPrice ? 0n : effectiveQuote(BigInt(e.quotedIn), BigInt(e.quotedOut), e.quotedMin, pt, expIn, expOut), secondary: byPrice ? 0 : price, tie: mix32(e.seed ^ reqSeed) }, limit);
  };

  if (opts.scan !== 'linear' && byPrice && exact && order === undefined && c.models.length === 1) {
    // Threshold scan (Fagin's TA) over the model's two price-sorted lists: an entry not yet met at depth d costs at
    // least T = quotedIn(byIn[d])·expIn + outFloor(byOut[d])·expOut (outFloor: the output price after the largest
    // discount, which no request goes below; a minimum charge only raises a price), so once the worst kept candidate
    // is strictly below T nothing unseen can enter. Same result as the full scan, usually after a few dozen entries.
    const model = c.models[0]!;
    seen = book.entriesFor(model, now).length;
    const { byIn, byOut } = book.sortedFor(model, now);
    const mark = ++visitStamp;
    for (let d = 0; d < byIn.length; d++) {
      const x = byIn[d]!;
      const y = byOut[d]!;
      if (x.mark !== mark) {
        x.mark = mark;
        visit(x, 0);
      }
      if (y.mark !== mark) {
        y.mark = mark;
        visit(y, 0);
      }
      if (top.length === limit && top[limit - 1]!.primary < x.quotedIn * expIn + y.outFloor * expOut) break;
    }
  } else {
    for (let mi = 0; mi < c.models.length; mi++) {
      const entries = book.entriesFor(c.models[mi]!, now);
      seen += entries.length;
      for (let i = 0; i < entries.length; i++) visit(entries[i]!, mi);
    }
  }

  if (top.length === 0) throw noEligible(c, seen, counts, book);
  if (bits !== undefined) {
    // The eligibility bitmap: the same constraints as `visit`, over every considered offer a word of offers at a
    // time (columns.ts; the ranking above may stop early, the commitment may not). A property test holds the two to
    // the same set.
    const needsProvider = only !== undefined || ignore !== undefined || (order !== undefined && !c.allowFallbacks);
    const full: EligibilityRule = {
      ...rule,
      termsMask,
      provider: needsProvider ? (e) => !((only !== undefined && !slugIn(only, e.offer)) || (ignore !== undefined && slugIn(ignore, e.offer)) || (order !== undefined && !c.allowFallbacks && orderIndex(order, e.offer) === orderLen)) : undefined,
    };
    for (let mi = 0; mi < c.models.length; mi++) {
      const words = eligibleWords(book.treeFor(c.models[mi]!, now).columns, full);
      eligibleCount += popcount(words);
      writeBits(words, bits, offsets[mi]!);
    }
  }
  const fee = book.feeBasisPoints;
  return {
    candidates: top.map((r) => ({ entry: r.e, offer: r.e.offer, worker: r.w, maxCost: computeCharge(r.e.offer, fee, c.maxInputTokens, c.maxOutputTokens).total })),
    allowFallbacks: c.allowFallbacks,
    constraints: c,
    feeBasisPoints: fee,
    ...(bits !== undefined && root !== undefined ? { proof: { root, considered, bitmap: bits, count: eligibleCount, strategy } } : {}),
  };
}

/** The request's selection rule as the receipt commits to it (protocol/best-execution.ts encodeRule). */
export function selectionRule(c: RouteConstraints): SelectionRule {
  const capped = c.maxPricePerMInput !== undefined || c.maxPricePerMOutput !== undefined;
  return {
    models: c.models,
    pool: c.poolMode,
    strategy: c.poolMode === 'latency' || c.poolMode === 'throughput' ? c.poolMode : c.sort,
    ...(c.maxPricePerMInput !== undefined ? { maxIn: c.maxPricePerMInput } : {}),
    ...(c.maxPricePerMOutput !== undefined ? { maxOut: c.maxPricePerMOutput } : {}),
    ...(capped ? { priceCurrency: c.maxPriceCurrency } : {}),
    ...(c.paymentCurrency !== undefined ? { payCurrency: c.paymentCurrency } : {}),
    ...(c.order !== undefined ? { order: c.order } : {}),
    ...(c.only !== undefined ? { only: [...c.only] } : {}),
    ...(c.ignore !== undefined ? { ignore: [...c.ignore] } : {}),
    fallbacks: c.allowFallbacks,
    terms: [...c.acceptTerms],
    ...(c.quantizations !== undefined ? { quantizations: [...c.quantizations] } : {}),
    ...(c.weightsDigests !== undefined ? { weights: [...c.weightsDigests].map((h) => fromHex(h)) } : {}),
    params: c.requiredParameters,
    expIn: c.expectedInputTokens,
    expOut: c.expectedOutputTokens,
  };
}

/** murmur3's 32-bit finaliser: spreads the xor of the two hashes so every offer leads for some request ids. */
function mix32(x: number): number {
  x ^= x >>> 16;
  x = Math.imul(x, 0x85ebca6b);
  x ^= x >>> 13;
  x = Math.imul(x, 0xc2b2ae35);
  x ^= x >>> 16;
  return x >>> 0;
}

function insertTop(top: Ranked[], r: Ranked, limit: number): void {
  if (top.length === limit && compare(r, top[limit - 1]!) >= 0) return;
  let i = top.length;
  while (i > 0 && compare(r, top[i - 1]!) < 0) i--;
  top.splice(i, 0, r);
  if (top.length > limit) top.pop();
}

function noEligible(c: RouteConstraints, seen: number, counts: Record<ExclusionReason, number>, book: OrderBook): Error {
  const what = c.models.length === 1 ? `model "${c.models[0]}"` : `pool of ${c.models.length} models`;
  // A single model no worker has ever offered does not exist here (OpenAI's 404 model_not_found, which clients do
  // not retry); a pool, or a known model whose offers are expired, cancelled or excluded now, is a 503 (retried).
  if (seen === 0 && c.models.length === 1 && !book.knows(c.models[0]!)) return new GmError('config', 'MODEL_NOT_FOUND', `the model ${JSON.stringify(c.models[0]!.slice(0, 256))} is not offered by any verified worker`);
  if (seen === 0) return unavailable('NO_ELIGIBLE_OFFER', `no eligible offer: no live offers for ${what}`);
  const parts = (Object.keys(counts) as ExclusionReason[]).filter((k) => counts[k] > 0).map((k) => `${counts[k]} ${EXCLUSION_REASONS[k]}`);
  return unavailable('NO_ELIGIBLE_OFFER', `no eligible offer for ${what} among ${seen} offers: ${parts.join(', ')}`);
}

/**
 * The failover rule: after candidate `failedIndex` failed, the next candidate that is still eligible now (worker
 * verified, below capacity, not tripped), but only if no token reached the client and fallbacks are allowed.
 */
export function nextCandidate(book: OrderBook, sel: Selection, failedIndex: number, state: { firstTokenSent: boolean; now: number }): { candidate: Candidate; index: number } | undefined {
  if (state.firstTokenSent || !sel.allowFallbacks) return undefined;
  for (let i = failedIndex + 1; i < sel.candidates.length; i++) {
    const cand = sel.candidates[i]!;
    const e = cand.entry;
    const w = book.worker(cand.offer.workerId);
    if (book.byOffer(cand.offer.workerId, cand.offer.offerId) !== e) continue;
    if (!w || w.verifiedUntil <= state.now || state.now >= e.untilMs) continue;
    if (e.stats.inFlight >= cand.offer.capacity || e.stats.unhealthy(state.now)) continue;
    return { candidate: cand, index: i };
  }
  return undefined;
}
