/**
 * protocol/offer-terms.ts effectiveQuote and withinPriceCap in safe-integer Numbers, for selection's hot path: the
 * bigint originals cost about a microsecond an offer, which across thousands of offers with price terms is the
 * whole budget of a request. Exact only under `termsExact` (every product and sum stays below 2^53); outside it the
 * callers use the bigint functions. A property test holds each to its original.
 *
 * Caps come in as Numbers (Infinity when absent). A cap above 2^53 is rounded, which cannot change a comparison with
 * a left side below 2^53: correctly rounded multiplication and addition are monotone.
 */
import type { DiscountTier, PriceTerms } from '../../protocol/offer-terms.ts';

const BPS = 10_000;
const MAX_SAFE = Number.MAX_SAFE_INTEGER;

/** True when the Number functions below are exact for every offer of a book with these maxima, at these tokens. */
export function termsExact(maxQuoted: number, maxQuotedMin: bigint, expIn: number, expOut: number): boolean {
  return maxQuoted * (expIn + expOut + 1) * BPS <= MAX_SAFE && maxQuotedMin * 10_000_000_000n <= BigInt(MAX_SAFE);
}

/** Σ_tiers quotedOut·(10^4 − bps)·tokens in the tier (output cost scaled by 10^4). */
function outputScaled(quotedOut: number, out: number, discounts: readonly DiscountTier[] | undefined): number {
  if (discounts === undefined) return quotedOut * BPS * out;
  let sum = 0;
  let from = 0;
  let bps = 0;
  for (const t of discounts) {
    if (out <= from) break;
    const next = t.fromOutputTokens;
    sum += quotedOut * (BPS - bps) * ((out < next ? out : next) - from);
    from = next;
    bps = t.basisPoints;
  }
  if (out > from) sum += quotedOut * (BPS - bps) * (out - from);
  return sum;
}

/** effectiveQuote in Numbers (exact under termsExact). */
export function effectiveQuoteNumber(quotedIn: number, quotedOut: number, quotedMin: number, terms: PriceTerms, expIn: number, expOut: number): number {
  const scaled = quotedIn * expIn * BPS + outputScaled(quotedOut, expOut, terms.discounts);
  const rem = scaled % BPS;
  const price = (scaled - rem) / BPS + (rem === 0 ? 0 : 1);
  const min = terms.minCharge !== undefined ? quotedMin * 1_000_000 : 0;
  return price < min ? min : price;
}

/** withinPriceCap in Numbers (exact under termsExact); maxIn/maxOut are Infinity when absent. */
export function withinPriceCapNumber(quotedIn: number, quotedOut: number, quotedMin: number, terms: PriceTerms | undefined, maxIn: number, maxOut: number, expIn: number, expOut: number): boolean {
  if (maxIn === Infinity && maxOut === Infinity) return true;
  if (quotedIn > maxIn) return false;
  const out = outputScaled(quotedOut, expOut, terms?.discounts);
  if (maxOut !== Infinity && (expOut === 0 ? quotedOut > maxOut : out > maxOut * BPS * expOut)) return false;
  if (terms?.minCharge !== undefined) {
    const capIn = (maxIn === Infinity ? quotedIn : maxIn) * expIn * BPS;
    const capOut = maxOut === Infinity ? out : maxOut * BPS * expOut;
    if (quotedMin * 1_000_000 * BPS > capIn + capOut) return false;
  }
  return true;
}
