import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { expectCode, makeWorker, NOW, verifiedOffer } from '../test/market-fixtures.ts';
import { decodeDeterministic, encodeDeterministic } from './market-cbor.ts';
import { checkReceiptAgainstOffer, computeCharge, decodeReceipt, generateReceiptKey, parseReceiptEnvelope, type Receipt, receiptEnvelope, verifyReceipt, verifyReceiptChain, ZERO_HASH } from './receipt.ts';

describe('charge arithmetic (integers, rounded up once each)', () => {
  it.each([
    // prices per M, fee bps, tokens in/out → workerCost, fee, total
    [500_000n, 1_500_000n, 0, 1000, 1000, 2000n, 0n, 2000n],
    [500_000n, 1_500_000n, 250, 1000, 1000, 2000n, 50n, 2050n],
    [1n, 1n, 0, 1, 0, 1n, 0n, 1n], // 10^-6 of a micro-unit rounds up to one
    [0n, 0n, 10_000, 5, 5, 0n, 0n, 0n],
    [3n, 7n, 1, 333_333, 142_857, 2n, 1n, 3n],
  ])('in %s out %s fee %s bps, %s/%s tokens', (pin, pout, bps, tin, tout, wc, fee, total) => {
    expect(computeCharge({ pricePerMInput: pin, pricePerMOutput: pout }, bps, tin, tout)).toEqual({ workerCost: wc, fee, total });
  });
});

describe('charge arithmetic properties (fast-check)', () => {
  it('never under-pays the worker, rounds up by less than one micro-unit, and total = cost + fee', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: 1n << 40n }), fc.bigInt({ min: 0n, max: 1n << 40n }), fc.integer({ min: 0, max: 10_000 }), fc.nat(10_000_000), fc.nat(10_000_000), (pin, pout, bps, tin, tout) => {
        const c = computeCharge({ pricePerMInput: pin, pricePerMOutput: pout }, bps, tin, tout);
        const exact = pin * BigInt(tin) + pout * BigInt(tout); // in 10^-12 units
        expect(c.workerCost * 1_000_000n >= exact).toBe(true);
        expect(c.workerCost * 1_000_000n - exact < 1_000_000n).toBe(true);
        expect(c.fee * 10_000n >= c.workerCost * BigInt(bps)).toBe(true);
        expect(c.fee * 10_000n - c.workerCost * BigInt(bps) < 10_000n).toBe(true);
        expect(c.total).toBe(c.workerCost + c.fee);
      }),
    );
  });
});

describe('receipts', async () => {
  const w = await makeWorker('w1');
  const offer = await verifiedOffer(w);
  const key = await generateReceiptKey();

  function fields(seq: number, prev: Uint8Array, over: Partial<Receipt> = {}): Omit<Receipt, 'v' | 'receiptKey'> {
    const c = computeCharge(offer.offer, 100, 1200, 345);
    return {
      seq,
      prev,
      requestId: `req-${seq}`,
      time: NOW + seq,
      model: offer.offer.model,
      account: 'acct_0011223344556677',
      workerId: w.id,
      workerKey: w.publicKey,
      evidenceDigest: w.info.evidenceDigest,
      offerId: offer.offer.offerId,
      offerDigest: offer.digest,
      inputTokens: 1200,
      outputTokens: 345,
      currency: 'USD',
      pricePerMInput: offer.offer.pricePerMInput,
      pricePerMOutput: offer.offer.pricePerMOutput,
      feeBasisPoints: 100,
      ...c,
      terms: offer.offer.terms,
      sim: true,
      ...over,
    };
  }

  it('signs, verifies, and matches its offer', async () => {
    const s = await key.sign(fields(1, ZERO_HASH));
    const v = await verifyReceipt(s.signed, key.publicKey);
    expect(v.receipt).toEqual(s.receipt);
    expect(v.hash).toEqual(s.hash);
    checkReceiptAgainstOffer(v.receipt, offer);
    const env = parseReceiptEnvelope(JSON.parse(JSON.stringify(receiptEnvelope(s, offer.signed))));
    expect(env.signed).toEqual(s.signed);
    expect(env.offer).toEqual(offer.signed);
  });

  it('a tampered receipt → RECEIPT_SIGNATURE; another key → RECEIPT_KEY_MISMATCH', async () => {
    const s = await key.sign(fields(1, ZERO_HASH));
    const env = decodeDeterministic(s.signed) as { receipt: Uint8Array; sig: Uint8Array };
    const r = decodeReceipt(env.receipt);
    const { encodeReceipt } = await import('./receipt.ts');
    const forged = encodeReceipt({ ...r, outputTokens: 1, ...computeCharge(r, 100, r.inputTokens, 1) });
    await expectCode(verifyReceipt(encodeDeterministic({ receipt: forged, sig: env.sig })), 'RECEIPT_SIGNATURE');
    const other = await generateReceiptKey();
    await expectCode(verifyReceipt(s.signed, other.publicKey), 'RECEIPT_KEY_MISMATCH');
  });

  it('a signed receipt whose total disagrees with its prices → RECEIPT_COST_MISMATCH', async () => {
    const s = await key.sign(fields(1, ZERO_HASH, { total: 1n }));
    await expectCode(verifyReceipt(s.signed), 'RECEIPT_COST_MISMATCH');
  });

  it('billing another price than the offer → RECEIPT_PRICE_MISMATCH', async () => {
    const f = fields(1, ZERO_HASH, { pricePerMOutput: 1n });
    const s = await key.sign({ ...f, ...computeCharge(f, 100, f.inputTokens, f.outputTokens) });
    const v = await verifyReceipt(s.signed);
    expect(() => checkReceiptAgainstOffer(v.receipt, offer)).toThrow(expect.objectContaining({ code: 'RECEIPT_PRICE_MISMATCH' }));
  });

  it('chains: verifies in order, detects a missing, reordered or relinked receipt', async () => {
    const a = await key.sign(fields(1, ZERO_HASH));
    const b = await key.sign(fields(2, a.hash));
    const c = await key.sign(fields(3, b.hash));
    expect(await verifyReceiptChain([a.signed, b.signed, c.signed], { keys: [key.publicKey] })).toHaveLength(3);
    await expectCode(verifyReceiptChain([a.signed, c.signed]), 'RECEIPT_CHAIN_BROKEN');
    await expectCode(verifyReceiptChain([b.signed, a.signed]), 'RECEIPT_CHAIN_BROKEN');
    const c2 = await key.sign(fields(3, a.hash));
    await expectCode(verifyReceiptChain([a.signed, b.signed, c2.signed]), 'RECEIPT_CHAIN_BROKEN');
  });
});
