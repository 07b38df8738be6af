import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Offer, PaymentTerms, TermsKind } from '../../protocol/offer.ts';
import { bitSet, compareDigests, leafHash, merkleRoot } from '../../protocol/best-execution.ts';
import { type PriceTerms, withinPriceCap } from '../../protocol/offer-terms.ts';
import { computeCharge } from '../../protocol/receipt.ts';
import { expectCode, makeWorker, NOW, NOW_S, offerFor, signedOffer, type TestWorker, unsignedVerified } from '../../test/market-fixtures.ts';
import { OrderBook, quotedPrice } from './book.ts';
import { parseRouteConstraints, type RouteConstraints } from './constraints.ts';
import { createMarket } from './index.ts';
import { nextCandidate, select } from './select.ts';

const MODELS = ['m-a', 'm-b', 'm-c'];
const TERMS: PaymentTerms[] = [{ kind: 'prepaid' }, { kind: 'per-request' }, { kind: 'postpaid', creditLimit: 10_000_000n, settlementPeriodSeconds: 3600 }];

interface Spec {
  model: number;
  worker: number;
  pin: number;
  pout: number;
  terms: number;
  capacity: number;
  inFlight: number;
  expired: boolean;
  currency: number;
}

const specArb = fc.record<Spec>({
  model: fc.integer({ min: 0, max: 2 }),
  worker: fc.integer({ min: 0, max: 5 }),
  pin: fc.integer({ min: 0, max: 3_000_000 }),
  pout: fc.integer({ min: 0, max: 6_000_000 }),
  terms: fc.integer({ min: 0, max: 2 }),
  capacity: fc.integer({ min: 1, max: 3 }),
  inFlight: fc.integer({ min: 0, max: 3 }),
  expired: fc.boolean(),
  currency: fc.integer({ min: 0, max: 4 }),
});

const bodyArb = fc.record({
  model: fc.constantFrom(...MODELS),
  sort: fc.constantFrom(undefined, 'price', 'latency', 'throughput'),
  maxIn: fc.option(fc.integer({ min: 0, max: 3_500_000 }), { nil: undefined }),
  maxOut: fc.option(fc.integer({ min: 0, max: 7_000_000 }), { nil: undefined }),
  terms: fc.option(fc.subarray(['prepaid', 'postpaid', 'per-request'] as TermsKind[], { minLength: 1 }), { nil: undefined }),
  only: fc.option(fc.subarray(['w0', 'w1', 'w2', 'w3', 'w4', 'w5'], { minLength: 1 }), { nil: undefined }),
  ignore: fc.option(fc.subarray(['w0', 'w1', 'w2', 'w3', 'w4', 'w5']), { nil: undefined }),
  staleWorker: fc.integer({ min: 0, max: 6 }),
  promptChars: fc.integer({ min: 0, max: 4000 }),
  maxTokens: fc.integer({ min: 1, max: 4000 }),
});

/** Builds a book from specs; worker keys are shared fixtures, offers inserted unsigned (the property is about selection). */
function build(workers: TestWorker[], specs: Spec[], staleWorker: number, fee: number): { book: OrderBook; offers: Offer[] } {
  const book = new OrderBook({ feeBasisPoints: fee });
  for (const [i, w] of workers.entries()) book.upsertWorker({ ...w.info, verifiedUntil: i === staleWorker ? NOW - 1 : NOW + 60_000 });
  const offers: Offer[] = [];
  specs.forEach((s, i) => {
    const w = workers[s.worker]!;
    const o = offerFor(w, {
      offerId: `o${i}`,
      model: MODELS[s.model]!,
      pricePerMInput: BigInt(s.pin),
      pricePerMOutput: BigInt(s.pout),
      terms: TERMS[s.terms]!,
      capacity: s.capacity,
      currency: s.currency === 0 ? 'EUR' : 'USD',
      validUntil: s.expired ? NOW_S + 10 : NOW_S + 3600,
    });
    const e = book.insert(unsignedVerified(o, i), NOW);
    e.stats.inFlight = s.inFlight;
    offers.push(o);
  });
  return { book, offers };
}

/** The eligibility rule, restated independently of select.ts. */
function eligible(o: Offer, c: RouteConstraints, book: OrderBook, now: number, inFlight: number): boolean {
  const w = book.worker(o.workerId);
  const fee = book.feeBasisPoints;
  return (
    c.models.includes(o.model) &&
    now >= o.validFrom * 1000 &&
    now < o.validUntil * 1000 &&
    w !== undefined &&
    w.verifiedUntil > now &&
    (!c.only || c.only.has(o.workerId) || c.only.has(o.hotkey)) &&
    !(c.ignore && (c.ignore.has(o.workerId) || c.ignore.has(o.hotkey))) &&
    (c.maxPricePerMInput === undefined || quotedPrice(o.pricePerMInput, fee) <= c.maxPricePerMInput) &&
    (c.maxPricePerMOutput === undefined || quotedPrice(o.pricePerMOutput, fee) <= c.maxPricePerMOutput) &&
    (c.maxPricePerMInput === undefined && c.maxPricePerMOutput === undefined ? true : o.currency === c.maxPriceCurrency) &&
    c.acceptTerms.has(o.terms.kind) &&
    inFlight < o.capacity
  );
}

const effective = (o: Offer, c: RouteConstraints, fee: number): bigint =>
  quotedPrice(o.pricePerMInput, fee) * BigInt(c.expectedInputTokens) + quotedPrice(o.pricePerMOutput, fee) * BigInt(c.expectedOutputTokens);

describe('selection properties (fast-check)', async () => {
  const workers = await Promise.all([0, 1, 2, 3, 4, 5].map((i) => makeWorker(`w${i}`, { seed: i + 1 })));

  it('never returns an ineligible offer, and finds one whenever one exists', () => {
    fc.assert(
      fc.property(fc.array(specArb, { maxLength: 40 }), bodyArb, fc.integer({ min: 0, max: 2000 }), fc.integer({ min: 0, max: 20_000 }), (specs, b, fee, later) => {
        const { book, offers } = build(workers, specs, b.staleWorker, fee);
        const now = NOW + later;
        const body = {
          model: b.model,
          messages: [{ role: 'user', content: 'x'.repeat(b.promptChars) }],
          max_tokens: b.maxTokens,
          provider: {
            ...(b.sort ? { sort: b.sort } : {}),
            ...(b.maxIn !== undefined || b.maxOut !== undefined ? { max_price: { ...(b.maxIn !== undefined ? { prompt: (b.maxIn / 1e6).toFixed(6) } : {}), ...(b.maxOut !== undefined ? { completion: (b.maxOut / 1e6).toFixed(6) } : {}) } } : {}),
            ...(b.only ? { only: b.only } : {}),
            ...(b.ignore ? { ignore: b.ignore } : {}),
          },
          ...(b.terms ? { payment: { terms: b.terms } } : {}),
        };
        const c = parseRouteConstraints(body);
        // in-flight is counted per (worker, model), shared by that worker's offers for the model
        const oracle = offers.filter((o) => eligible(o, c, book, now, book.byOffer(o.workerId, o.offerId)!.stats.inFlight));
        let sel;
        try {
          sel = select(book, c, now, { requestId: 'r' });
        } catch (e) {
          // A model no offer in the book ever named is MODEL_NOT_FOUND; any other empty selection NO_ELIGIBLE_OFFER.
          const known = c.models.length > 1 || offers.some((o) => o.model === c.models[0]);
          expect((e as { code: string }).code).toBe(known ? 'NO_ELIGIBLE_OFFER' : 'MODEL_NOT_FOUND');
          expect(oracle).toHaveLength(0);
          return;
        }
        expect(sel.candidates.length).toBeGreaterThan(0);
        // The best-execution bitmap marks exactly the oracle's offers, in the considered set's digest order.
        const committed = select(book, c, now, { requestId: 'r', commit: true });
        expect(committed.candidates.map((x) => x.offer.offerId)).toEqual(sel.candidates.map((x) => x.offer.offerId));
        const considered = book.entriesFor(c.models[0]!, now).slice().sort((x, y) => x.leafIndex - y.leafIndex);
        expect(committed.proof!.considered).toBe(considered.length);
        expect(considered.filter((_, i) => bitSet(committed.proof!.bitmap, i)).map((x) => x.offer)).toEqual(expect.arrayContaining(oracle));
        expect(committed.proof!.count).toBe(oracle.length);
        for (const cand of sel.candidates) expect(oracle).toContain(cand.offer);
        expect(sel.candidates.length).toBe(Math.min(8, oracle.length));
        if (c.sort === 'price') {
          const min = oracle.reduce((m, o) => (effective(o, c, fee) < m ? effective(o, c, fee) : m), effective(oracle[0]!, c, fee));
          expect(effective(sel.candidates[0]!.offer, c, fee)).toBe(min);
          // and candidates come in non-decreasing effective price
          for (let i = 1; i < sel.candidates.length; i++) expect(effective(sel.candidates[i]!.offer, c, fee) >= effective(sel.candidates[i - 1]!.offer, c, fee)).toBe(true);
        }
      }),
      { numRuns: 400 },
    );
  });

  it('the threshold scan returns exactly what the full scan returns', () => {
    fc.assert(
      fc.property(fc.array(specArb, { maxLength: 60 }), bodyArb, fc.integer({ min: 0, max: 500 }), fc.integer({ min: 1, max: 8 }), (specs, b, fee, limit) => {
        const { book } = build(workers, specs, b.staleWorker, fee);
        const body = { model: b.model, max_tokens: b.maxTokens, messages: [{ role: 'user', content: 'y'.repeat(b.promptChars) }], provider: { ...(b.maxIn !== undefined ? { max_price: { prompt: (b.maxIn / 1e6).toFixed(6) } } : {}), ...(b.ignore ? { ignore: b.ignore } : {}) }, ...(b.terms ? { payment: { terms: b.terms } } : {}) };
        const c = parseRouteConstraints(body);
        const run = (scan: 'auto' | 'linear'): string[] | string => {
          try {
            return select(book, c, NOW, { requestId: 'same', limit, scan }).candidates.map((x) => x.offer.offerId);
          } catch (e) {
            return (e as Error).message;
          }
        };
        expect(run('auto')).toEqual(run('linear'));
      }),
      { numRuns: 400 },
    );
  });

  it('is deterministic: the same book, request and id give the same order', () => {
    fc.assert(
      fc.property(fc.array(specArb, { minLength: 1, maxLength: 30 }), fc.string(), (specs, rid) => {
        const { book } = build(workers, specs, 9, 100);
        const c = parseRouteConstraints({ model: 'm-a', messages: [] });
        const ids = (): string[] => {
          try {
            return select(book, c, NOW, { requestId: rid }).candidates.map((x) => x.offer.offerId);
          } catch {
            return [];
          }
        };
        expect(ids()).toEqual(ids());
      }),
      { numRuns: 100 },
    );
  });
});

describe('selection rules', async () => {
  const [a, b, c] = await Promise.all([makeWorker('wa', { seed: 1 }), makeWorker('wb', { seed: 2 }), makeWorker('wc', { seed: 3 })]);

  async function market(fee = 0): Promise<ReturnType<typeof createMarket>> {
    const m = createMarket({ feeBasisPoints: fee, pools: { fast: ['dev-model', 'big-model'] } });
    for (const w of [a!, b!, c!]) m.book.upsertWorker(w.info);
    await m.book.addSignedOffer(await signedOffer(a!, { pricePerMInput: 100_000n, pricePerMOutput: 200_000n, ttftMs: 900, tokensPerSecond: 30 }), NOW);
    await m.book.addSignedOffer(await signedOffer(b!, { pricePerMInput: 300_000n, pricePerMOutput: 600_000n, ttftMs: 100, tokensPerSecond: 40, terms: { kind: 'prepaid' } }), NOW);
    await m.book.addSignedOffer(await signedOffer(c!, { model: 'big-model', pricePerMInput: 50_000n, pricePerMOutput: 50_000n, ttftMs: 400, tokensPerSecond: 90 }), NOW);
    return m;
  }
  const ids = (s: { candidates: readonly { offer: Offer }[] }): string[] => s.candidates.map((x) => x.offer.workerId);

  it('offersView shows the live book with quoted prices and live measurements, money as strings', async () => {
    const { offersView } = await import('./index.ts');
    const m = await market(1000);
    const v = offersView(m.book, NOW);
    expect(v.map((x) => x.offerId)).toEqual(['wc-offer', 'wa-offer', 'wb-offer']);
    expect(v[1]).toMatchObject({ workerId: 'wa', pricePerMInput: '100000', quotedPerMInput: '110000', workerVerified: true, live: { ttftMs: 900, inFlight: 0, samples: 0 } });
  });

  it('sort price / latency / throughput', async () => {
    const m = await market();
    expect(ids(m.route({ model: 'dev-model' }, { now: NOW, requestId: '1' }))).toEqual(['wa', 'wb']);
    expect(ids(m.route({ model: 'dev-model', provider: { sort: 'latency' } }, { now: NOW, requestId: '1' }))).toEqual(['wb', 'wa']);
    expect(ids(m.route({ model: 'dev-model', provider: { sort: 'throughput' } }, { now: NOW, requestId: '1' }))).toEqual(['wb', 'wa']);
  });

  it('live measurements replace advertised figures', async () => {
    const m = await market();
    const slow = m.book.byOffer('wb', 'wb-offer')!;
    const lease = m.book.acquire(slow, NOW);
    lease.firstToken(NOW + 2000);
    lease.succeeded(10, NOW + 3000);
    expect(ids(m.route({ model: 'dev-model', provider: { sort: 'latency' } }, { now: NOW, requestId: '1' }))).toEqual(['wa', 'wb']);
  });

  it('pools: default in order, default:latency, default:throughput, configured aliases', async () => {
    const m = await market();
    const models = ['big-model', 'dev-model'];
    expect(ids(m.route({ model: 'default', models }, { now: NOW, requestId: '1' }))).toEqual(['wc', 'wa', 'wb']);
    expect(ids(m.route({ model: 'default:latency', models }, { now: NOW, requestId: '1' }))[0]).toBe('wb');
    expect(ids(m.route({ model: 'default:throughput', models }, { now: NOW, requestId: '1' }))[0]).toBe('wc');
    expect(ids(m.route({ model: 'fast' }, { now: NOW, requestId: '1' }))).toEqual(['wa', 'wb', 'wc']);
    await expectCode(() => m.route({ model: 'default', models: Array.from({ length: 21 }, (_, i) => `m${i}`) }, { now: NOW, requestId: '1' }), 'ROUTE_CONSTRAINT_INVALID');
  });

  it('variants on any model or pool: :floor ranks by price, :nitro by throughput, over provider.sort', async () => {
    const m = await market();
    const r = (body: object): string[] => ids(m.route(body, { now: NOW, requestId: '1' }));
    expect(r({ model: 'dev-model:floor', provider: { sort: 'latency' } })).toEqual(['wa', 'wb']);
    expect(r({ model: 'dev-model:nitro' })).toEqual(['wb', 'wa']);
    // On a pool the whole pool is ranked, not walked in order.
    expect(r({ model: 'fast' })).toEqual(['wa', 'wb', 'wc']);
    expect(r({ model: 'fast:floor' })).toEqual(['wc', 'wa', 'wb']);
    expect(r({ model: 'fast:nitro' })[0]).toBe('wc');
    await expectCode(() => m.route({ model: 'nope:floor' }, { now: NOW, requestId: '1' }), 'MODEL_NOT_FOUND');
  });

  it('a configured "default" pool is what model "default" means without a models list', async () => {
    const m = createMarket({ pools: { default: ['big-model', 'dev-model'] } });
    for (const w of [a!, b!, c!]) m.book.upsertWorker(w.info);
    await m.book.addSignedOffer(await signedOffer(a!, { pricePerMInput: 100_000n }), NOW);
    await m.book.addSignedOffer(await signedOffer(c!, { model: 'big-model', pricePerMInput: 900_000n }), NOW);
    expect(ids(m.route({ model: 'default' }, { now: NOW, requestId: '1' }))).toEqual(['wc', 'wa']);
    // The request's own list still wins over the configured one.
    expect(ids(m.route({ model: 'default', models: ['dev-model'] }, { now: NOW, requestId: '1' }))).toEqual(['wa']);
  });

  it('order, only, ignore and allow_fallbacks', async () => {
    const m = await market();
    const r = (provider: object): string[] => ids(m.route({ model: 'dev-model', provider }, { now: NOW, requestId: '1' }));
    expect(r({ order: ['wb'] })).toEqual(['wb', 'wa']);
    expect(r({ order: ['wb'], allow_fallbacks: false })).toEqual(['wb']);
    expect(r({ only: [a!.hotkey.address] })).toEqual(['wa']);
    expect(r({ ignore: ['wa'] })).toEqual(['wb']);
  });

  it('max_price below every offer fails with counts per constraint and no request text', async () => {
    const m = await market(250);
    const secret = 'my secret prompt';
    try {
      m.route({ model: 'dev-model', messages: [{ role: 'user', content: secret }], provider: { max_price: { prompt: 0.05, completion: 0.1 } }, payment: { terms: ['prepaid', 'per-request'] } }, { now: NOW, requestId: '1' });
      expect.unreachable();
    } catch (e) {
      expect((e as { code: string }).code).toBe('NO_ELIGIBLE_OFFER');
      expect((e as Error).message).toBe('no eligible offer for model "dev-model" among 2 offers: 2 over max_price');
      expect((e as Error).message).not.toContain(secret);
    }
    await expectCode(() => m.route({ model: 'nope' }, { now: NOW, requestId: '1' }), 'MODEL_NOT_FOUND');
  });

  it('the routing fee is added to the quote compared with max_price', async () => {
    const m = await market(1000); // 10%: wa quotes 110000 / 220000
    expect(ids(m.route({ model: 'dev-model', provider: { max_price: { prompt: '0.11', completion: '0.22' } } }, { now: NOW, requestId: '1' }))).toEqual(['wa']);
    await expectCode(() => m.route({ model: 'dev-model', provider: { max_price: { prompt: '0.109999', completion: '0.22' } } }, { now: NOW, requestId: '1' }), 'NO_ELIGIBLE_OFFER');
    const sel = m.route({ model: 'dev-model', max_tokens: 100, messages: [{ role: 'user', content: 'hi' }] }, { now: NOW, requestId: '1' });
    expect(sel.candidates[0]!.maxCost).toBe(computeCharge(sel.candidates[0]!.offer, 1000, sel.constraints.maxInputTokens, 100).total);
  });

  it('payment terms, capacity, stale workers', async () => {
    const m = await market();
    expect(ids(m.route({ model: 'dev-model', payment: { terms: ['prepaid'] } }, { now: NOW, requestId: '1' }))).toEqual(['wb']);
    const e = m.book.byOffer('wa', 'wa-offer')!;
    const leases = [0, 1, 2, 3].map(() => m.book.acquire(e, NOW));
    expect(ids(m.route({ model: 'dev-model' }, { now: NOW, requestId: '1' }))).toEqual(['wb']);
    leases[0]!.cancelled();
    expect(ids(m.route({ model: 'dev-model' }, { now: NOW, requestId: '1' }))).toEqual(['wa', 'wb']);
    m.book.upsertWorker({ ...b!.info, verifiedUntil: NOW });
    expect(ids(m.route({ model: 'dev-model' }, { now: NOW, requestId: '1' }))).toEqual(['wa']);
  });

  it('expired offers leave by themselves; replace by sequence; cancel', async () => {
    const m = await market();
    await m.book.addSignedOffer(await signedOffer(a!, { sequence: 2, validUntil: NOW_S + 10, pricePerMInput: 1n, pricePerMOutput: 1n }), NOW);
    expect(m.book.size).toBe(3);
    await expectCode(m.book.addSignedOffer(await signedOffer(a!, { sequence: 2 }), NOW), 'OFFER_SUPERSEDED');
    expect(m.route({ model: 'dev-model' }, { now: NOW, requestId: '1' }).candidates[0]!.offer.pricePerMInput).toBe(1n);
    expect(ids(m.route({ model: 'dev-model' }, { now: NOW + 10_000, requestId: '1' }))).toEqual(['wb']);
    expect(m.book.size).toBe(2);
    const { signCancel } = await import('../../protocol/offer.ts');
    const cancel = await signCancel({ v: 1, type: 'cancel', offerId: 'wb-offer', workerId: 'wb', workerKey: b!.publicKey, hotkey: b!.hotkey.address, sequence: 1, at: NOW_S }, b!.privateKey, b!.hotkey.secretKey);
    expect(await m.book.cancelSigned(cancel, 'wb')).toBe(true);
    await expectCode(m.book.addSignedOffer(await signedOffer(b!), NOW), 'OFFER_SUPERSEDED');
    await expectCode(() => m.route({ model: 'dev-model' }, { now: NOW + 10_000, requestId: '1' }), 'NO_ELIGIBLE_OFFER');
  });

  it('refuses offers from unregistered workers or signed by a key other than the evidence-bound one', async () => {
    const m = await market();
    const stranger = await makeWorker('wz', { seed: 7 });
    await expectCode(m.book.addSignedOffer(await signedOffer(stranger), NOW), 'OFFER_UNKNOWN_WORKER');
    const impostor = await makeWorker('wa', { seed: 8 });
    await expectCode(m.book.addSignedOffer(await signedOffer(impostor), NOW), 'OFFER_WORKER_KEY_MISMATCH');
  });

  it('failover: next eligible only before the first token and only when allowed', async () => {
    const m = await market();
    const sel = m.route({ model: 'dev-model' }, { now: NOW, requestId: '1' });
    expect(nextCandidate(m.book, sel, 0, { firstTokenSent: false, now: NOW })?.candidate.offer.workerId).toBe('wb');
    expect(nextCandidate(m.book, sel, 0, { firstTokenSent: true, now: NOW })).toBeUndefined();
    const strict = m.route({ model: 'dev-model', provider: { allow_fallbacks: false } }, { now: NOW, requestId: '1' });
    expect(nextCandidate(m.book, strict, 0, { firstTokenSent: false, now: NOW })).toBeUndefined();
    m.book.removeWorker('wb');
    expect(nextCandidate(m.book, sel, 0, { firstTokenSent: false, now: NOW })).toBeUndefined();
  });

  it('spreads load across equally priced offers and trips a failing worker', async () => {
    const book = new OrderBook();
    const ws = [a!, b!, c!];
    for (const w of ws) {
      book.upsertWorker(w.info);
      book.insert(unsignedVerified(offerFor(w, { capacity: 10 }), 0), NOW);
    }
    const counts = new Map<string, number>();
    const c0 = parseRouteConstraints({ model: 'dev-model' });
    for (let i = 0; i < 300; i++) {
      const first = select(book, c0, NOW, { requestId: `req-${i}` }).candidates[0]!;
      counts.set(first.offer.workerId, (counts.get(first.offer.workerId) ?? 0) + 1);
    }
    for (const w of ws) expect(counts.get(w.id)!).toBeGreaterThan(50);
    // in-flight load moves the next request to the least loaded
    book.acquire(book.byOffer('wa', 'wa-offer')!, NOW);
    book.acquire(book.byOffer('wb', 'wb-offer')!, NOW);
    expect(select(book, c0, NOW, { requestId: 'x' }).candidates[0]!.offer.workerId).toBe('wc');
    const e = book.byOffer('wc', 'wc-offer')!;
    for (let i = 0; i < 6; i++) book.acquire(e, NOW).failed(NOW);
    expect(select(book, c0, NOW, { requestId: 'x' }).candidates.map((x) => x.offer.workerId)).not.toContain('wc');
    expect(select(book, c0, NOW + 31_000, { requestId: 'x' }).candidates.map((x) => x.offer.workerId)).toContain('wc');
  });
});

describe('selection over a changing book with price terms (fast-check)', async () => {
  const workers = await Promise.all([0, 1, 2, 3].map((i) => makeWorker(`t${i}`, { seed: i + 11 })));
  const TERMS_CHOICES: PriceTerms[] = [{}, { minCharge: 40n }, { discounts: [{ fromOutputTokens: 100, basisPoints: 5000 }] }, { minCharge: 5n, discounts: [{ fromOutputTokens: 10, basisPoints: 1000 }, { fromOutputTokens: 500, basisPoints: 9000 }] }];
  const offerArb = fc.record({ worker: fc.integer({ min: 0, max: 3 }), id: fc.integer({ min: 0, max: 15 }), pin: fc.integer({ min: 1, max: 400_000 }), pout: fc.integer({ min: 1, max: 900_000 }), terms: fc.integer({ min: 0, max: 3 }), inFlight: fc.integer({ min: 0, max: 2 }), life: fc.constantFrom(5, 12, 3600) });
  const opArb = fc.oneof(
    offerArb.map((o) => ({ op: 'put' as const, o })),
    fc.integer({ min: 0, max: 3 }).map((w) => ({ op: 'drop' as const, w })),
    fc.record({ maxIn: fc.option(fc.integer({ min: 0, max: 450_000 }), { nil: undefined }), maxOut: fc.option(fc.integer({ min: 0, max: 1_000_000 }), { nil: undefined }), maxTokens: fc.integer({ min: 1, max: 2000 }), chars: fc.integer({ min: 0, max: 3000 }), limit: fc.integer({ min: 1, max: 8 }), later: fc.constantFrom(0, 0, 4000, 9000) }).map((q) => ({ op: 'select' as const, q })),
  );

  it('threshold and full scans agree, and the commitment (root, bitmap, count) matches the book after every change and expiry', () => {
    fc.assert(
      fc.property(fc.array(offerArb, { maxLength: 30 }), fc.array(opArb, { minLength: 1, maxLength: 25 }), fc.integer({ min: 0, max: 500 }), (initial, ops, fee) => {
        const book = new OrderBook({ feeBasisPoints: fee });
        for (const w of workers) book.upsertWorker({ ...w.info, verifiedUntil: NOW + 3_600_000 });
        let n = 0;
        let now = NOW;
        const put = (s: (typeof initial)[number]): void => {
          const w = workers[s.worker]!;
          const prev = book.byOffer(w.id, `x${s.id}`);
          if (!book.worker(w.id)) book.upsertWorker({ ...w.info, verifiedUntil: NOW + 3_600_000 });
          const o = offerFor(w, { offerId: `x${s.id}`, sequence: (prev?.offer.sequence ?? 0) + 1, model: 'm', pricePerMInput: BigInt(s.pin), pricePerMOutput: BigInt(s.pout), terms: { kind: 'per-request', ...TERMS_CHOICES[s.terms]! }, capacity: 2, validUntil: Math.floor(now / 1000) + s.life });
          book.insert(unsignedVerified(o, ++n * 7919), now).stats.inFlight = s.inFlight;
        };
        initial.forEach(put);
        for (const step of ops) {
          if (step.op === 'put') put(step.o);
          else if (step.op === 'drop') book.removeWorker(workers[step.w]!.id);
          else {
            const q = step.q;
            now += q.later;
            const c = parseRouteConstraints({ model: 'm', max_tokens: q.maxTokens, messages: [{ role: 'user', content: 'z'.repeat(q.chars) }], provider: { ...(q.maxIn !== undefined || q.maxOut !== undefined ? { max_price: { ...(q.maxIn !== undefined ? { prompt: (q.maxIn / 1e6).toFixed(6) } : {}), ...(q.maxOut !== undefined ? { completion: (q.maxOut / 1e6).toFixed(6) } : {}) } } : {}) } });
            const cap = { ...(c.maxPricePerMInput !== undefined ? { maxIn: c.maxPricePerMInput } : {}), ...(c.maxPricePerMOutput !== undefined ? { maxOut: c.maxPricePerMOutput } : {}) };
            const live = [...book.entriesFor('m', now)];
            const oracle = live.filter((e) => {
              const o = e.offer;
              const min = o.terms.minCharge !== undefined ? quotedPrice(o.terms.minCharge, fee) : 0n;
              return e.stats.inFlight < o.capacity && withinPriceCap(quotedPrice(o.pricePerMInput, fee), quotedPrice(o.pricePerMOutput, fee), min, o.terms, cap, c.expectedInputTokens, c.expectedOutputTokens);
            });
            const run = (scan: 'auto' | 'linear', commit: boolean) => {
              try {
                return select(book, c, now, { requestId: 'q', limit: q.limit, scan, commit });
              } catch (e) {
                return (e as { code: string }).code;
              }
            };
            const ids = (s: ReturnType<typeof run>) => (typeof s === 'string' ? s : s.candidates.map((x) => `${x.offer.workerId}/${x.offer.offerId}`));
            const full = run('linear', false);
            expect(ids(run('auto', false))).toEqual(ids(full));
            const committed = run('auto', true);
            expect(ids(committed)).toEqual(ids(full));
            if (typeof committed === 'string') {
              expect(oracle).toHaveLength(0);
              continue;
            }
            const sorted = live.slice().sort((x, y) => compareDigests(x.verified.digest, y.verified.digest));
            const p = committed.proof!;
            expect(p.root).toEqual(merkleRoot(sorted.map((e) => leafHash(e.verified.digest))));
            expect(p.considered).toBe(sorted.length);
            expect(sorted.filter((_, i) => bitSet(p.bitmap, i))).toEqual(sorted.filter((e) => oracle.includes(e)));
            expect(p.count).toBe(oracle.length);
          }
        }
      }),
      { numRuns: 250 },
    );
  });
});

describe('best-execution root over a pool', async () => {
  const [a, b] = await Promise.all([makeWorker('pa', { seed: 21 }), makeWorker('pb', { seed: 22 })]);

  it('is the MTH over each model set in the pool order, and follows a change to any of them', () => {
    const book = new OrderBook();
    for (const w of [a!, b!]) book.upsertWorker(w.info);
    let n = 100;
    const put = (w: TestWorker, model: string, id: string) => book.insert(unsignedVerified(offerFor(w, { offerId: id, model }), n++), NOW);
    put(a!, 'm-x', 'x1');
    put(b!, 'm-x', 'x2');
    put(a!, 'm-y', 'y1');
    const c = parseRouteConstraints({ model: 'default', models: ['m-y', 'm-x'] });
    const expected = (): Uint8Array => merkleRoot(['m-y', 'm-x'].flatMap((m) => book.entriesFor(m, NOW).slice().sort((p, q) => compareDigests(p.verified.digest, q.verified.digest)).map((e) => leafHash(e.verified.digest))));
    const root = () => select(book, c, NOW, { requestId: 'p', commit: true }).proof!.root;
    const first = root();
    expect(first).toEqual(expected());
    expect(root()).toEqual(first);
    put(b!, 'm-y', 'y2');
    expect(root()).toEqual(expected());
    expect(root()).not.toEqual(first);
    book.removeWorker('pa');
    expect(root()).toEqual(expected());
  });
});
