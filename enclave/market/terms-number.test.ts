import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { effectiveQuote, type PriceTerms, withinPriceCap } from '../../protocol/offer-terms.ts';
import { effectiveQuoteNumber, termsExact, withinPriceCapNumber } from './terms-number.ts';

const tiersArb = fc
  .uniqueArray(fc.integer({ min: 1, max: 50_000 }), { minLength: 1, maxLength: 4 })
  .chain((froms) => fc.uniqueArray(fc.integer({ min: 1, max: 10_000 }), { minLength: froms.length, maxLength: froms.length }).map((bps) => ({ froms: [...froms].sort((a, b) => a - b), bps: [...bps].sort((a, b) => a - b) })))
  .map(({ froms, bps }) => froms.map((f, i) => ({ fromOutputTokens: f, basisPoints: bps[i]! })));

const termsArb: fc.Arbitrary<PriceTerms> = fc.record({ minCharge: fc.option(fc.bigInt({ min: 1n, max: 900_000n }), { nil: undefined }), discounts: fc.option(tiersArb, { nil: undefined }) }, { requiredKeys: [] }).map((t) => ({
  ...(t.minCharge !== undefined ? { minCharge: t.minCharge } : {}),
  ...(t.discounts !== undefined ? { discounts: t.discounts } : {}),
}));

describe('price terms in Numbers equal the bigint rules wherever termsExact holds', () => {
  it('effectiveQuote and withinPriceCap', () => {
    const price = fc.integer({ min: 0, max: 50_000_000 });
    const cap = fc.option(fc.oneof(price, fc.constant(2 ** 60)), { nil: undefined });
    fc.assert(
      fc.property(price, price, fc.integer({ min: 0, max: 900_000 }), termsArb, cap, cap, fc.integer({ min: 0, max: 60_000 }), fc.integer({ min: 0, max: 60_000 }), (qIn, qOut, qMin, terms, maxIn, maxOut, expIn, expOut) => {
        const maxQuoted = Math.max(qIn, qOut);
        fc.pre(termsExact(maxQuoted, BigInt(qMin), expIn, expOut));
        const big = effectiveQuote(BigInt(qIn), BigInt(qOut), BigInt(qMin), terms, expIn, expOut);
        expect(effectiveQuoteNumber(qIn, qOut, qMin, terms, expIn, expOut)).toBe(Number(big));
        const bigCap = { ...(maxIn !== undefined ? { maxIn: BigInt(maxIn) } : {}), ...(maxOut !== undefined ? { maxOut: BigInt(maxOut) } : {}) };
        expect(withinPriceCapNumber(qIn, qOut, qMin, terms, maxIn ?? Infinity, maxOut ?? Infinity, expIn, expOut)).toBe(withinPriceCap(BigInt(qIn), BigInt(qOut), BigInt(qMin), terms, bigCap, expIn, expOut));
      }),
      { numRuns: 2000 },
    );
  });

  it('termsExact refuses books whose products could pass 2^53', () => {
    expect(termsExact(2 ** 40, 0n, 1000, 1000)).toBe(false);
    expect(termsExact(1_000_000, 0n, 100_000, 100_000)).toBe(true);
    expect(termsExact(1_000_000, 1_000_000n, 10, 10)).toBe(false);
  });
});
