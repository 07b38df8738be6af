/**
 * Price terms an offer may carry beside its payment kind (docs/market.md "Payment terms"): a minimum charge per
 * request, a graduated volume discount on output tokens, and the settlement units of the offer's currency.
 *
 * Settlement units. Every amount in offers, receipts, holds and statements is an integer count of the currency's
 * smallest unit, with exact bigint arithmetic and no floats:
 *   USD  micro-dollars, 10^-6 USD
 *   TAO  rao, 10^-9 TAO (the Bittensor chain's base unit)
 *   any other code: micro-units, 10^-6 of it
 * Prices stay "units per 1,000,000 tokens", so a TAO offer quotes rao per million tokens.
 *
 * Minimum charge (`minCharge`, units, >= 1 when present): the worker cost of one request is never below it.
 *
 * Volume discount (`discounts`, 1..16 tiers {fromOutputTokens >= 1, basisPoints 1..10000}, both strictly increasing):
 * graduated by the request's own output tokens, as a tax bracket is: output tokens numbered above `fromOutputTokens`
 * of a tier (up to the next tier's threshold) are priced at pricePerMOutput·(10^4 − basisPoints)/10^4. The schedule
 * is per request, so the signed receipt alone (its token counts and terms) fixes the charge: an auditor needs no
 * account history. Graduated tiers keep the charge non-decreasing in tokens, so a hold computed at the request's
 * token bounds always covers the charge.
 *
 * Charge (one rounding, upward): workerCost = max(minCharge, ceil((pricePerMInput·in·10^4 + Σ_tiers
 * pricePerMOutput·(10^4 − bps_t)·out_t) / 10^10)), where out_t counts the output tokens in tier t (tier 0: bps 0).
 * Without terms this equals ceil((pricePerMInput·in + pricePerMOutput·out) / 10^6).
 *
 * max_price after terms (withinPriceCap). A request's provider.max_price caps what it would pay under the offer's
 * terms, judged at the request's own token figures as its selection rule states them: I = expected input tokens
 * (expIn) and O = its output limit, max_tokens (expOut). With quoted prices (price + fee) an offer is within the cap
 * when all of:
 *   input    quotedIn <= maxIn (no term changes the input price);
 *   output   its average output price over O tokens after the graduated discount is <= maxOut, exactly:
 *            Σ_tiers quotedOut·(10^4 − bps_t)·out_t <= maxOut·10^4·O (with O = 0: quotedOut <= maxOut, the first
 *            token's price, which no tier discounts);
 *   minimum  quotedMin·10^6 <= capIn·I + capOut·O, the most the caps let the request pay at those figures, where an
 *            absent cap counts at the offer's own (discounted) price: a minimum charge above what the request would
 *            pay under its caps is over them.
 * An absent maxIn or maxOut checks nothing on its side; without max_price nothing is checked. Without price terms the
 * rule is the list price test quotedIn <= maxIn and quotedOut <= maxOut. The router's selection and the
 * best-execution audit apply this one function.
 * Runtime-agnostic (no node: imports).
 */
import { protocolError } from '../attestation/errors.ts';
import { asMap, type CborMap, type CborValue, fBig, fUint } from './market-cbor.ts';

export interface DiscountTier {
  /** Output tokens of a request beyond this count are discounted (graduated). */
  readonly fromOutputTokens: number;
  /** Discount in basis points of pricePerMOutput, 1..10000. */
  readonly basisPoints: number;
}

/** The price terms an offer may add to its payment kind (absent fields: none). */
export interface PriceTerms {
  /** Minimum worker cost per request, in the currency's settlement units. */
  readonly minCharge?: bigint;
  readonly discounts?: readonly DiscountTier[];
}

/** Decimal places of each currency's settlement unit; codes not listed settle in micro-units. */
export const CURRENCY_DECIMALS: Readonly<Record<string, number>> = { USD: 6, TAO: 9 };
export const UNIT_NAMES: Readonly<Record<string, string>> = { USD: 'micro-USD', TAO: 'rao' };

export const currencyDecimals = (currency: string): number => CURRENCY_DECIMALS[currency] ?? 6;

/** An amount in settlement units as an exact decimal string of the currency (1500000000n TAO → "1.5"). */
export function unitsToDecimal(amount: bigint, currency: string): string {
  const scale = 10n ** BigInt(currencyDecimals(currency));
  const neg = amount < 0n;
  const a = neg ? -amount : amount;
  const frac = (a % scale).toString().padStart(currencyDecimals(currency), '0').replace(/0+$/, '');
  return `${neg ? '-' : ''}${a / scale}${frac ? `.${frac}` : ''}`;
}

export const MAX_TIERS = 16;
const MAX_AMOUNT = BigInt(Number.MAX_SAFE_INTEGER);
const BPS = 10_000n;
const TERMS_CODE = 'OFFER_TERMS_INVALID';

/** Checks price terms (shared by encoders and decoders so both agree); throws `code` (OFFER_TERMS_INVALID for offers). */
export function checkPriceTerms(t: PriceTerms, code = TERMS_CODE): void {
  if (t.minCharge !== undefined && (typeof t.minCharge !== 'bigint' || t.minCharge < 1n || t.minCharge > MAX_AMOUNT)) {
    throw protocolError(code, 'terms.minCharge must be 1..2^53-1 settlement units');
  }
  const d = t.discounts;
  if (d === undefined) return;
  if (!Array.isArray(d) || d.length < 1 || d.length > MAX_TIERS) throw protocolError(code, `terms.discounts must hold 1..${MAX_TIERS} tiers`);
  let prevFrom = 0;
  let prevBps = 0;
  for (const tier of d) {
    if (!Number.isSafeInteger(tier.fromOutputTokens) || tier.fromOutputTokens < 1) throw protocolError(code, 'terms.discounts fromOutputTokens must be a positive integer');
    if (!Number.isSafeInteger(tier.basisPoints) || tier.basisPoints < 1 || tier.basisPoints > 10_000) throw protocolError(code, 'terms.discounts basisPoints must be 1..10000');
    if (tier.fromOutputTokens <= prevFrom) throw protocolError(code, 'terms.discounts tiers must be sorted by strictly increasing fromOutputTokens (no overlap)');
    if (tier.basisPoints <= prevBps) throw protocolError(code, 'terms.discounts basisPoints must increase from tier to tier');
    prevFrom = tier.fromOutputTokens;
    prevBps = tier.basisPoints;
  }
}

/** The CBOR fields of price terms (only those present, so terms without them encode as before). */
export function priceTermsToCbor(t: PriceTerms): CborMap {
  return {
    ...(t.minCharge !== undefined ? { minCharge: t.minCharge } : {}),
    ...(t.discounts !== undefined ? { discounts: t.discounts.map((x): CborValue => ({ fromOutputTokens: x.fromOutputTokens, basisPoints: x.basisPoints })) } : {}),
  };
}

/** Reads price terms from a terms map: `code` for malformed structure, `rangeCode` for values out of range. */
export function priceTermsFromCbor(m: CborMap, code: string, rangeCode: string): PriceTerms {
  const out: { minCharge?: bigint; discounts?: DiscountTier[] } = {};
  if (m.minCharge !== undefined) out.minCharge = fBig(m, 'minCharge', code);
  if (m.discounts !== undefined) {
    const arr = m.discounts;
    if (!Array.isArray(arr)) throw protocolError(code, 'terms.discounts must be an array');
    out.discounts = (arr as readonly CborValue[]).map((v) => {
      const t = asMap(v, code, 'discount tier');
      for (const k of Object.keys(t)) if (k !== 'fromOutputTokens' && k !== 'basisPoints') throw protocolError(code, `discount tier has unknown field ${k}`);
      return { fromOutputTokens: fUint(t, 'fromOutputTokens', code), basisPoints: fUint(t, 'basisPoints', code) };
    });
  }
  checkPriceTerms(out, rangeCode);
  return out;
}

export function samePriceTerms(a: PriceTerms, b: PriceTerms): boolean {
  if (a.minCharge !== b.minCharge) return false;
  const x = a.discounts ?? [];
  const y = b.discounts ?? [];
  return x.length === y.length && x.every((t, i) => t.fromOutputTokens === y[i]!.fromOutputTokens && t.basisPoints === y[i]!.basisPoints);
}

export const hasPriceTerms = (t: PriceTerms): boolean => t.minCharge !== undefined || t.discounts !== undefined;

/** Σ over tiers of pricePerMOutput·(10^4 − bps)·(output tokens in the tier): output cost scaled by 10^4. */
function outputScaled(pricePerMOutput: bigint, outputTokens: number, discounts: readonly DiscountTier[] | undefined): bigint {
  const out = BigInt(outputTokens);
  if (!discounts) return pricePerMOutput * BPS * out;
  let sum = 0n;
  let from = 0n;
  let bps = 0n;
  for (const t of discounts) {
    const next = BigInt(t.fromOutputTokens);
    if (out <= from) break;
    sum += pricePerMOutput * (BPS - bps) * ((out < next ? out : next) - from);
    from = next;
    bps = BigInt(t.basisPoints);
  }
  if (out > from) sum += pricePerMOutput * (BPS - bps) * (out - from);
  return sum;
}

const ceilDiv = (a: bigint, b: bigint): bigint => (a + b - 1n) / b;

/** The worker cost of one request under prices and price terms (settlement units, one upward rounding). */
export function workerCostUnder(prices: { pricePerMInput: bigint; pricePerMOutput: bigint }, terms: PriceTerms | undefined, inputTokens: number, outputTokens: number): bigint {
  const scaled = prices.pricePerMInput * BigInt(inputTokens) * BPS + outputScaled(prices.pricePerMOutput, outputTokens, terms?.discounts);
  const cost = ceilDiv(scaled, 1_000_000n * BPS);
  const min = terms?.minCharge ?? 0n;
  return cost < min ? min : cost;
}

/** A request's max_price as quoted units per 1M tokens (fee included); an absent side is not capped. */
export interface PriceCap {
  readonly maxIn?: bigint;
  readonly maxOut?: bigint;
}

/** The max_price rule after terms (module header): is the offer within the request's cap at expIn/expOut tokens? */
export function withinPriceCap(quotedIn: bigint, quotedOut: bigint, quotedMin: bigint, terms: PriceTerms | undefined, cap: PriceCap, expIn: number, expOut: number): boolean {
  if (cap.maxIn === undefined && cap.maxOut === undefined) return true;
  if (cap.maxIn !== undefined && quotedIn > cap.maxIn) return false;
  const out = outputScaled(quotedOut, expOut, terms?.discounts);
  if (cap.maxOut !== undefined && (expOut === 0 ? quotedOut > cap.maxOut : out > cap.maxOut * BPS * BigInt(expOut))) return false;
  if (terms?.minCharge !== undefined) {
    const capIn = (cap.maxIn ?? quotedIn) * BigInt(expIn) * BPS;
    const capOut = cap.maxOut !== undefined ? cap.maxOut * BPS * BigInt(expOut) : out;
    if (quotedMin * 1_000_000n * BPS > capIn + capOut) return false;
  }
  return true;
}

/**
 * The ranking price of an offer after its terms, in quoted units (fee included) × tokens, i.e. scaled by 10^6 like
 * quotedIn·expIn + quotedOut·expOut, which it equals exactly for an offer without price terms. Both the router's
 * selection and the best-execution audit rank by this one function.
 */
export function effectiveQuote(quotedIn: bigint, quotedOut: bigint, quotedMin: bigint, terms: PriceTerms | undefined, expIn: number, expOut: number): bigint {
  const scaled = quotedIn * BigInt(expIn) * BPS + outputScaled(quotedOut, expOut, terms?.discounts);
  const price = ceilDiv(scaled, BPS);
  const min = terms?.minCharge !== undefined ? quotedMin * 1_000_000n : 0n;
  return price < min ? min : price;
}
