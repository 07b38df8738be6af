import { describe, expect, it } from 'vitest';
import { verifyReceiptFile } from '../enclave/ledger/verify.ts';
import { expectCode, makeWorker, NOW, offerFor, verifiedOffer } from '../test/market-fixtures.ts';
import { encodeDeterministic, decodeDeterministic } from './market-cbor.ts';
import { decodeOffer, encodeOffer, type Offer, offerJson, verifySignedOffer, signOffer } from './offer.ts';
import { checkPriceTerms, UNIT_NAMES, unitsToDecimal, withinPriceCap, workerCostUnder } from './offer-terms.ts';
import { checkReceiptAgainstOffer, computeCharge, generateReceiptKey, type Receipt, receiptEnvelope, verifyReceipt } from './receipt.ts';

const TIERS = [
  { fromOutputTokens: 1000, basisPoints: 2500 },
  { fromOutputTokens: 10_000, basisPoints: 5000 },
];

describe('max_price after terms (withinPriceCap)', () => {
  // 2.00 per 1M output, graduated: 25% off beyond 1000 tokens, 50% off beyond 10,000.
  const terms = { discounts: TIERS };
  const within = (maxOut: bigint, out: number, t: Parameters<typeof withinPriceCap>[3] = terms, qOut = 2_000_000n) => withinPriceCap(100_000n, qOut, t?.minCharge ?? 0n, t, { maxOut }, 0, out);

  it('caps the average output price over the request output limit, after the discount', () => {
    // Over 12,000 tokens: (1000·2 + 9000·1.5 + 2000·1) / 12,000 = 1.4583.. per 1M: under 1.46, over 1.45.
    expect(within(1_460_000n, 12_000)).toBe(true);
    expect(within(1_450_000n, 12_000)).toBe(false);
    // The list price 2.00 is over both caps: without the schedule the same offer is out.
    expect(within(1_460_000n, 12_000, {})).toBe(false);
    // A request that stops at 1000 tokens gets no discount: the list price is what it would pay.
    expect(within(1_999_999n, 1000)).toBe(false);
    expect(within(2_000_000n, 1000)).toBe(true);
    // With no output tokens the first token's price counts.
    expect(within(1_999_999n, 0)).toBe(false);
  });

  it('a minimum charge above what the caps allow at the request figures is over them', () => {
    const min = { minCharge: 3000n };
    // Caps 0.5 in / 2.0 out at 1000 in + 1000 out allow 500 + 2000 = 2500 micro-units: a 3000 minimum is over them.
    expect(withinPriceCap(500_000n, 2_000_000n, 3000n, min, { maxIn: 500_000n, maxOut: 2_000_000n }, 1000, 1000)).toBe(false);
    expect(withinPriceCap(500_000n, 2_000_000n, 2500n, { minCharge: 2500n }, { maxIn: 500_000n, maxOut: 2_000_000n }, 1000, 1000)).toBe(true);
    // Only the output capped: the input counts at the offer's own price (0.5·1000 = 500), so 2500 is the most.
    expect(withinPriceCap(500_000n, 2_000_000n, 2501n, { minCharge: 2501n }, { maxOut: 2_000_000n }, 1000, 1000)).toBe(false);
    expect(withinPriceCap(500_000n, 2_000_000n, 2500n, { minCharge: 2500n }, { maxOut: 2_000_000n }, 1000, 1000)).toBe(true);
    // Without max_price nothing is capped.
    expect(withinPriceCap(500_000n, 2_000_000n, 10n ** 12n, { minCharge: 10n ** 12n }, {}, 1000, 1000)).toBe(true);
  });

  it('without price terms it is the list price test', () => {
    expect(withinPriceCap(500_000n, 2_000_000n, 0n, undefined, { maxIn: 500_000n, maxOut: 2_000_000n }, 7, 9)).toBe(true);
    expect(withinPriceCap(500_001n, 2_000_000n, 0n, undefined, { maxIn: 500_000n }, 7, 9)).toBe(false);
    expect(withinPriceCap(500_000n, 2_000_001n, 0n, undefined, { maxOut: 2_000_000n }, 7, 9)).toBe(false);
  });
});

describe('price terms: charge arithmetic', () => {
  it('a minimum charge applies when the metered charge is below it, and only then', () => {
    const prices = { pricePerMInput: 500_000n, pricePerMOutput: 1_500_000n };
    const terms = { kind: 'per-request' as const, minCharge: 1000n };
    // 100 in + 100 out = 50 + 150 = 200 micro-units metered: below the minimum.
    expect(computeCharge({ ...prices, terms }, 250, 100, 100)).toEqual({ workerCost: 1000n, fee: 25n, total: 1025n });
    // 1000 in + 1000 out = 2000 metered: above it, charged as metered.
    expect(computeCharge({ ...prices, terms }, 250, 1000, 1000)).toEqual({ workerCost: 2000n, fee: 50n, total: 2050n });
    expect(computeCharge(prices, 250, 100, 100).workerCost).toBe(200n);
  });

  it('a graduated discount prices each tier exactly', () => {
    const prices = { pricePerMInput: 0n, pricePerMOutput: 2_000_000n };
    const terms = { discounts: TIERS };
    // 1000 tokens at 2.00, 9000 at 1.50, 2000 at 1.00 per million: 2000 + 13500 + 2000 micro-units.
    expect(workerCostUnder(prices, terms, 0, 12_000)).toBe(17_500n);
    expect(workerCostUnder(prices, undefined, 0, 12_000)).toBe(24_000n);
    // Below the first threshold nothing is discounted; exactly at it neither.
    expect(workerCostUnder(prices, terms, 0, 1000)).toBe(2000n);
    // One token into the first tier: 2000 + 1.5 micro-units, rounded up once.
    expect(workerCostUnder(prices, terms, 0, 1001)).toBe(2002n);
    // One rounding for the whole request: 0.4 µ of input + 2001.5 µ of output = 2001.9 → 2002 (not 1 + 2002).
    expect(workerCostUnder({ ...prices, pricePerMInput: 400_000n }, terms, 1, 1001)).toBe(2002n);
  });

  it('the charge never decreases as tokens grow, so a hold at the token bounds covers it', () => {
    const prices = { pricePerMInput: 300_000n, pricePerMOutput: 2_000_000n };
    const terms = { minCharge: 5000n, discounts: [{ fromOutputTokens: 10, basisPoints: 9000 }, { fromOutputTokens: 20, basisPoints: 10_000 }] };
    let prev = 0n;
    for (let out = 0; out <= 40; out++) {
      const c = workerCostUnder(prices, terms, 50_000, out);
      expect(c >= prev).toBe(true);
      prev = c;
    }
    expect(workerCostUnder(prices, terms, 0, 0)).toBe(5000n);
  });
});

describe('price terms: signed and strictly parsed', async () => {
  const w = await makeWorker('wt');

  it('an offer with a minimum and a schedule round-trips through signing and verification', async () => {
    const o = offerFor(w, { terms: { kind: 'postpaid', creditLimit: 10n, settlementPeriodSeconds: 60, minCharge: 700n, discounts: TIERS } });
    const v = await verifySignedOffer(await signOffer(o, w.privateKey, w.hotkey.secretKey), { workerPublicKey: w.publicKey, now: NOW });
    expect(v.offer.terms).toEqual(o.terms);
    expect(offerJson(v.offer).terms).toEqual({ kind: 'postpaid', creditLimit: '10', settlementPeriodSeconds: 60, minCharge: '700', discounts: TIERS });
    // Without price terms the encoding is unchanged (no empty keys).
    const plain = decodeDeterministic(encodeOffer(offerFor(w))) as { terms: object };
    expect(plain.terms).toEqual({ kind: 'per-request' });
  });

  it.each([
    ['unsorted tiers', { discounts: [TIERS[1]!, TIERS[0]!] }],
    ['overlapping tiers (same threshold)', { discounts: [{ fromOutputTokens: 1000, basisPoints: 100 }, { fromOutputTokens: 1000, basisPoints: 200 }] }],
    ['a discount that shrinks', { discounts: [{ fromOutputTokens: 10, basisPoints: 500 }, { fromOutputTokens: 20, basisPoints: 400 }] }],
    ['a zero discount', { discounts: [{ fromOutputTokens: 10, basisPoints: 0 }] }],
    ['a discount above 100 %', { discounts: [{ fromOutputTokens: 10, basisPoints: 10_001 }] }],
    ['a tier from 0 tokens', { discounts: [{ fromOutputTokens: 0, basisPoints: 10 }] }],
    ['an empty schedule', { discounts: [] }],
    ['17 tiers', { discounts: Array.from({ length: 17 }, (_, i) => ({ fromOutputTokens: i + 1, basisPoints: i + 1 })) }],
    ['a zero minimum', { minCharge: 0n }],
    ['a minimum above 2^53-1', { minCharge: 1n << 53n }],
  ])('%s → OFFER_TERMS_INVALID, when encoding and when decoding', async (_why, extra) => {
    const o = offerFor(w, { terms: { kind: 'per-request', ...extra } as Offer['terms'] });
    await expectCode(() => encodeOffer(o), 'OFFER_TERMS_INVALID');
    // The same fields on the wire (bypassing the encoder's check) are refused by the strict decoder.
    const good = decodeDeterministic(encodeOffer(offerFor(w))) as Record<string, unknown>;
    const t = extra as { minCharge?: bigint; discounts?: { fromOutputTokens: number; basisPoints: number }[] };
    const bytes = encodeDeterministic({ ...good, terms: { kind: 'per-request', ...(t.minCharge !== undefined ? { minCharge: t.minCharge } : {}), ...(t.discounts ? { discounts: t.discounts.map((d) => ({ ...d })) } : {}) } } as never);
    await expectCode(() => decodeOffer(bytes), 'OFFER_TERMS_INVALID');
  });

  it('unknown keys in the terms or a tier → OFFER_MALFORMED', async () => {
    const good = decodeDeterministic(encodeOffer(offerFor(w))) as Record<string, unknown>;
    await expectCode(() => decodeOffer(encodeDeterministic({ ...good, terms: { kind: 'prepaid', rebate: 5 } } as never)), 'OFFER_MALFORMED');
    await expectCode(() => decodeOffer(encodeDeterministic({ ...good, terms: { kind: 'prepaid', discounts: [{ fromOutputTokens: 5, basisPoints: 5, cap: 1 }] } } as never)), 'OFFER_MALFORMED');
    await expectCode(() => decodeOffer(encodeDeterministic({ ...good, terms: { kind: 'prepaid', discounts: { fromOutputTokens: 5 } } } as never)), 'OFFER_MALFORMED');
    expect(() => checkPriceTerms({ discounts: TIERS })).not.toThrow();
  });
});

describe('price terms in receipts and their audit', async () => {
  const w = await makeWorker('wr');
  const key = await generateReceiptKey();

  async function receiptFor(offer: Awaited<ReturnType<typeof verifiedOffer>>, charge: { workerCost: bigint; fee: bigint; total: bigint }, terms = offer.offer.terms) {
    const o = offer.offer;
    const r: Omit<Receipt, 'v' | 'receiptKey'> = {
      seq: 1, prev: new Uint8Array(32), requestId: 'r1', time: NOW, model: o.model, account: 'acct_0011223344556677', workerId: o.workerId, workerKey: o.workerKey,
      evidenceDigest: w.info.evidenceDigest, offerId: o.offerId, offerDigest: offer.digest, inputTokens: 0, outputTokens: 12_000, currency: o.currency,
      pricePerMInput: o.pricePerMInput, pricePerMOutput: o.pricePerMOutput, feeBasisPoints: 100, ...charge, terms, sim: true,
    };
    return key.sign(r);
  }

  it('the audit recomputes the discounted charge and catches a receipt whose charge ignores the terms', async () => {
    const offer = await verifiedOffer(w, { pricePerMInput: 0n, pricePerMOutput: 2_000_000n, terms: { kind: 'per-request', discounts: TIERS } });
    const honest = await receiptFor(offer, computeCharge(offer.offer, 100, 0, 12_000));
    expect(honest.receipt.workerCost).toBe(17_500n);
    const v = await verifyReceipt(honest.signed, key.publicKey);
    expect(v.receipt.terms).toEqual(offer.offer.terms);
    checkReceiptAgainstOffer(v.receipt, offer);
    const file = (s: typeof honest) => new TextEncoder().encode(JSON.stringify(receiptEnvelope(s, offer.signed)));
    expect((await verifyReceiptFile(file(honest), 'honest', [key.publicKey])).verified).toBe(true);

    // Charged at the nominal prices while the signed terms discount: the arithmetic check refuses it.
    const nominal = computeCharge({ pricePerMInput: 0n, pricePerMOutput: 2_000_000n }, 100, 0, 12_000);
    expect(nominal.workerCost).toBe(24_000n);
    const overcharged = await receiptFor(offer, nominal);
    await expectCode(verifyReceipt(overcharged.signed), 'RECEIPT_COST_MISMATCH');
    // `gm receipts verify` (the receipts-file audit) refuses it the same way.
    await expectCode(verifyReceiptFile(file(overcharged), 'overcharged', [key.publicKey]), 'RECEIPT_COST_MISMATCH');

    // Terms dropped from the receipt so its own arithmetic holds: the offer it cites still gives it away.
    const dropped = await receiptFor(offer, nominal, { kind: 'per-request' });
    await verifyReceipt(dropped.signed);
    await expectCode(() => checkReceiptAgainstOffer(dropped.receipt, offer), 'RECEIPT_PRICE_MISMATCH');
    await expectCode(verifyReceiptFile(file(dropped), 'dropped', [key.publicKey]), 'RECEIPT_PRICE_MISMATCH');
  });

  it('a TAO offer settles in rao, exactly', async () => {
    // 1.2 TAO per million output tokens = 1,200,000,000 rao; 12,000 tokens with the schedule: 1000·1.2 + 9000·0.9 + 2000·0.6 µTAO.
    const offer = await verifiedOffer(w, { currency: 'TAO', pricePerMInput: 0n, pricePerMOutput: 1_200_000_000n, terms: { kind: 'prepaid', minCharge: 1_000_000n, discounts: TIERS } });
    expect(offerJson(offer.offer)).toMatchObject({ currency: 'TAO', pricePerMOutput: '1200000000' });
    expect(UNIT_NAMES.TAO).toBe('rao');
    const c = computeCharge(offer.offer, 100, 0, 12_000);
    expect(c).toEqual({ workerCost: 10_500_000n, fee: 105_000n, total: 10_605_000n });
    expect(unitsToDecimal(c.total, 'TAO')).toBe('0.010605');
    expect(unitsToDecimal(1n, 'TAO')).toBe('0.000000001');
    expect(unitsToDecimal(1n, 'USD')).toBe('0.000001');
    // Three tokens cost 0.0036 rao metered: the minimum (0.001 TAO) applies.
    expect(computeCharge(offer.offer, 0, 0, 3).workerCost).toBe(1_000_000n);
    const s = await receiptFor(offer, c);
    const v = await verifyReceipt(s.signed, key.publicKey);
    expect([v.receipt.currency, v.receipt.total]).toEqual(['TAO', 10_605_000n]);
    checkReceiptAgainstOffer(v.receipt, offer);
  });
});
