import { afterEach, describe, expect, it, vi } from 'vitest';
import { parseReceiptHeader, verifyReceipt } from '../../protocol/receipt.ts';
import { expectCode, makeWorker, NOW, signedOffer, type TestWorker } from '../../test/market-fixtures.ts';
import { SqliteLedger } from '../ledger/sqlite.ts';
import { generateEnclaveReceiptKey } from '../ledger/signer.ts';
import type { VerifiedWorker, WorkerRegistry } from '../workers/registry.ts';
import { createMarket } from './index.ts';
import { marketRouter } from './router.ts';

/** The registry as the router sees it: workers by id, `usable` being the attestation gate. */
function fakeRegistry(ws: VerifiedWorker[]): WorkerRegistry {
  return { usable: (id: string) => ws.find((w) => w.id === id), list: () => ws } as unknown as WorkerRegistry;
}

async function verifiedWorker(t: TestWorker, over: { price?: bigint } = {}): Promise<VerifiedWorker> {
  const offer = await signedOffer(t, { pricePerMInput: over.price ?? 1_000_000n, pricePerMOutput: over.price ?? 1_000_000n });
  return { id: t.id, signingKey: t.publicKey, evidenceDigest: t.info.evidenceDigest, expiresAt: NOW + 600_000, sim: true, offers: [offer], models: ['dev-model'] } as unknown as VerifiedWorker;
}

async function setup() {
  const [a, b] = await Promise.all([makeWorker('wa', { seed: 1 }), makeWorker('wb', { seed: 2 })]);
  const wa = await verifiedWorker(a!, { price: 1_000_000n });
  const wb = await verifiedWorker(b!, { price: 3_000_000n });
  const ledger = SqliteLedger.open(':memory:', { signer: generateEnclaveReceiptKey() });
  const market = createMarket({ feeBasisPoints: 0 });
  const house = (await ledger.createAccount({ currency: 'USD', prepaid: 1_000_000n }, NOW)).account;
  const m = marketRouter({ market, ledger, enclaveSim: false, anonymous: house, now: () => NOW, abandonAfterMs: 1000 });
  await m.onWorkerChange('verified', wa);
  await m.onWorkerChange('verified', wb);
  const router = m.router(fakeRegistry([wa, wb]));
  return { ledger, market, house, m, router, wa, wb };
}

const body = { model: 'dev-model', max_tokens: 100, messages: [{ role: 'user', content: 'hi' }] };
const req = (over: object = {}) => ({ requestId: 'r1', model: 'dev-model', body, stream: false, now: NOW, ...over });

afterEach(() => vi.useRealTimers());

describe('market router (enclave Router adapter)', () => {
  it('mirrors the registry: offers enter the book, a removed worker takes them out', async () => {
    const { market, m, wb, router } = await setup();
    expect(router.models(NOW)).toEqual(['dev-model']);
    await m.onWorkerChange('verified', wb); // re-verification re-posts the same offer: no error
    expect(market.book.size).toBe(2);
    await m.onWorkerChange('removed', wb);
    expect(market.book.size).toBe(1);
  });

  it('one hold covers failover; the receipt charges the offer actually served; the lease moves on', async () => {
    const { ledger, house, market, router } = await setup();
    const sel = await router.select(req());
    expect(sel.candidates.map((c) => c.worker.id)).toEqual(['wa', 'wb']);
    // bound: (2 bytes + 16 + 8 for one message) in + 100 out at 3 µ/token for wb, the dearer candidate
    expect(await ledger.available(house.id)).toBe(1_000_000n - 378n);
    expect(market.book.byOffer('wa', 'wa-offer')!.stats.inFlight).toBe(1);
    sel.onFailure!(sel.candidates[0]!, 'UPSTREAM_FAILED');
    expect(market.book.byOffer('wa', 'wa-offer')!.stats.inFlight).toBe(0);
    expect(market.book.byOffer('wb', 'wb-offer')!.stats.inFlight).toBe(1);
    sel.onFirstToken!(sel.candidates[1]!);
    const extras = await sel.onSuccess!(sel.candidates[1]!, { promptTokens: 5, completionTokens: 50 }, { bytes: 1000, choices: 1 });
    const v = await verifyReceipt(parseReceiptHeader(extras!.header![1]).signed);
    expect([v.receipt.workerId, v.receipt.total]).toEqual(['wb', 165n]);
    expect(await ledger.available(house.id)).toBe(1_000_000n - 165n);
    expect(market.book.byOffer('wb', 'wb-offer')!.stats.inFlight).toBe(0);
    expect(JSON.parse(extras!.sseEvent!.data).type).toBe('gm.receipt');
  });

  it('a candidate the dispatcher skipped without a callback (its gate) frees its slot when a later one reports', async () => {
    const { market, router } = await setup();
    const sel = await router.select(req());
    expect(market.book.byOffer('wa', 'wa-offer')!.stats.inFlight).toBe(1);
    sel.onFirstToken!(sel.candidates[1]!);
    expect(market.book.byOffer('wa', 'wa-offer')!.stats.inFlight).toBe(0);
    expect(market.book.byOffer('wb', 'wb-offer')!.stats.inFlight).toBe(1);
    await sel.onSuccess!(sel.candidates[1]!, { promptTokens: 1, completionTokens: 1 }, { bytes: 1000, choices: 1 });
    expect(market.book.byOffer('wb', 'wb-offer')!.stats.inFlight).toBe(0);
  });

  it('drops candidates the account cannot afford, and says 402 when it cannot afford the best', async () => {
    const { ledger, router } = await setup();
    const { apiKey } = await ledger.createAccount({ currency: 'USD', prepaid: 200n }, NOW);
    const sel = await router.select(req({ apiKey }));
    expect(sel.candidates.map((c) => c.worker.id)).toEqual(['wa']);
    const broke = await ledger.createAccount({ currency: 'USD', prepaid: 10n }, NOW);
    await expectCode(Promise.resolve().then(() => router.select(req({ apiKey: broke.apiKey }))), 'PAYMENT_INSUFFICIENT_FUNDS');
    await expectCode(Promise.resolve().then(() => router.select(req({ apiKey: 'gm_not-a-key-of-this-ledger-at-all' }))), 'ACCOUNT_UNKNOWN');
  });

  it('counts selections by outcome code and receipts, with no payload-derived labels', async () => {
    const { Metrics } = await import('../metrics.ts');
    const { market, ledger, wa, house } = await setup();
    const metrics = new Metrics();
    const r = marketRouter({ market, ledger, enclaveSim: false, anonymous: house, now: () => NOW, metrics }).router(fakeRegistry([wa]));
    const sel = await r.select(req());
    await sel.onSuccess!(sel.candidates[0]!, { promptTokens: 1, completionTokens: 1 }, { bytes: 1000, choices: 1 });
    await expectCode(Promise.resolve().then(() => r.select(req({ body: { ...body, provider: { max_price: { prompt: 0 } } } }))), 'NO_ELIGIBLE_OFFER');
    const text = await metrics.render();
    expect(text).toContain('gm_market_selections_total{outcome="ok"} 1');
    expect(text).toContain('gm_market_selections_total{outcome="NO_ELIGIBLE_OFFER"} 1');
    expect(text).toContain('gm_market_receipts_total 1');
    expect(text).toContain('gm_market_offers 2');
  });

  it('an inflating worker: charged the bound, counted in gm_market_usage_inflated_total, its offer demoted out of selection', async () => {
    const { Metrics } = await import('../metrics.ts');
    const { market, ledger, wa, wb, house } = await setup();
    const metrics = new Metrics();
    let t = NOW;
    const r = marketRouter({ market, ledger, enclaveSim: false, anonymous: house, now: () => t, metrics, inflationCoolOffMs: 60_000 }).router(fakeRegistry([wa, wb]));
    const honest = await r.select(req());
    // Within the tolerance: 40 delivered bytes allow 56 tokens; 60 is under 56 · 1.1.
    await honest.onSuccess!(honest.candidates[0]!, { promptTokens: 5, completionTokens: 60 }, { bytes: 40, choices: 1 });
    expect(await metrics.render()).toContain('gm_market_usage_inflated_total 0');
    const sel = await r.select(req());
    expect(sel.candidates[0]!.worker.id).toBe('wa');
    const extras = await sel.onSuccess!(sel.candidates[0]!, { promptTokens: 5, completionTokens: 100 }, { bytes: 40, choices: 1 });
    expect((await verifyReceipt(parseReceiptHeader(extras!.header![1]).signed)).receipt.outputTokens).toBe(56);
    expect(await metrics.render()).toContain('gm_market_usage_inflated_total 1');
    // The cheaper wa is demoted: the next request goes to wb; after the cool-off wa is back.
    expect((await r.select(req())).candidates.map((c) => c.worker.id)).toEqual(['wb']);
    t += 60_001;
    expect((await r.select(req())).candidates[0]!.worker.id).toBe('wa');
  });

  it('without an anonymous account a request with no key is ACCOUNT_MISSING', async () => {
    const { market, ledger, wa } = await setup();
    const strict = marketRouter({ market, ledger, enclaveSim: false, now: () => NOW }).router(fakeRegistry([wa]));
    await expectCode(Promise.resolve().then(() => strict.select(req())), 'ACCOUNT_MISSING');
  });

  it('an abandoned request releases its hold and lease', async () => {
    vi.useFakeTimers();
    const { ledger, house, market, router } = await setup();
    await router.select(req());
    expect(await ledger.available(house.id)).toBeLessThan(1_000_000n);
    vi.advanceTimersByTime(1001);
    expect(await ledger.available(house.id)).toBe(1_000_000n);
    expect(market.book.byOffer('wa', 'wa-offer')!.stats.inFlight).toBe(0);
  });

  it('a stream that keeps moving past the abandon period is settled on completion, whatever its duration', async () => {
    vi.useFakeTimers();
    const { ledger, house, router } = await setup();
    const sel = await router.select(req({ stream: true }));
    const c = sel.candidates[0]!;
    sel.onFirstToken!(c);
    // 10 abandon periods of a live stream: an event every 300 ms.
    for (let t = 0; t < 10_000; t += 300) {
      vi.advanceTimersByTime(300);
      sel.onProgress?.(c);
    }
    expect(await ledger.available(house.id)).toBeLessThan(1_000_000n);
    const extras = await sel.onSuccess!(c, { promptTokens: 5, completionTokens: 50 }, { bytes: 200, choices: 1 });
    const v = await verifyReceipt(parseReceiptHeader(extras!.header![1]).signed);
    expect(v.receipt.outputTokens).toBe(50);
    expect((await ledger.account(house.id)).balance).toBe(1_000_000n - v.receipt.total);
    expect(await ledger.available(house.id)).toBe(1_000_000n - v.receipt.total);
  });

  it('a stream that stops moving is reaped after an idle abandon period', async () => {
    vi.useFakeTimers();
    const { ledger, house, router } = await setup();
    const sel = await router.select(req({ stream: true }));
    sel.onFirstToken!(sel.candidates[0]!);
    vi.advanceTimersByTime(2001);
    expect(await ledger.available(house.id)).toBe(1_000_000n);
  });

  it('charges the smaller of the worker report and the enclave bounds; a cancel is receipted as cancelled', async () => {
    const { ledger, house, router, market } = await setup();
    const sel = await router.select(req());
    const extras = await sel.onSuccess!(sel.candidates[0]!, { promptTokens: 10 ** 12, completionTokens: 10 ** 12 }, { bytes: 40, choices: 1 });
    const v = await verifyReceipt(parseReceiptHeader(extras!.header![1]).signed);
    // input bound 2 + 16 + 8 = 26; output bound 40 bytes + 16
    expect([v.receipt.inputTokens, v.receipt.outputTokens]).toEqual([26, 56]);
    const sel2 = await router.select(req({ requestId: 'r2' }));
    await sel2.onCancel!(sel2.candidates[0]!, { bytes: 20, choices: 1 });
    const rows = ledger.db.prepare('SELECT output_tokens FROM receipts ORDER BY seq').all() as { output_tokens: number }[];
    expect(rows.map((r) => r.output_tokens)).toEqual([56, 5]);
    expect(await ledger.available(house.id)).toBe((await ledger.account(house.id)).balance);
    expect(market.book.byOffer('wa', 'wa-offer')!.stats.errorRate).toBe(0);
    expect(market.book.byOffer('wa', 'wa-offer')!.stats.inFlight).toBe(0);
  });

  it('a worker failing mid-stream is paid once for what the client was sent: a failed receipt, the rest of the hold released', async () => {
    const { ledger, house, router, market } = await setup();
    const sel = await router.select(req({ stream: true }));
    const c = sel.candidates[0]!;
    sel.onFirstToken!(c);
    const extras = await sel.onFailedMidStream!(c, 'WORKER_STREAM_FAILED', { bytes: 40, choices: 1 }, undefined);
    const env = JSON.parse(extras!.sseEvent!.data) as { type: string; receipt: string };
    expect(env.type).toBe('gm.receipt');
    const rows = ledger.db.prepare('SELECT signed, total FROM receipts ORDER BY seq').all() as { signed: Uint8Array; total: number }[];
    expect(rows.length).toBe(1);
    const v = await verifyReceipt(new Uint8Array(rows[0]!.signed));
    // No usage report arrived: the estimate of what was sent, ceil(40 / 4) output tokens, and the request's input estimate.
    expect([v.receipt.status, v.receipt.workerId, v.receipt.outputTokens]).toEqual(['failed', 'wa', 10]);
    expect((await ledger.account(house.id)).balance).toBe(1_000_000n - v.receipt.total);
    expect(await ledger.available(house.id)).toBe(1_000_000n - v.receipt.total);
    // Whatever arrives after the first outcome settles nothing more.
    expect(await sel.onFailedMidStream!(c, 'WORKER_STREAM_FAILED', { bytes: 40, choices: 1 }, undefined)).toBeUndefined();
    await sel.onCancel!(c, { bytes: 80, choices: 1 });
    expect((ledger.db.prepare('SELECT COUNT(*) AS n FROM receipts').get() as { n: number }).n).toBe(1);
    expect((await ledger.account(house.id)).balance).toBe(1_000_000n - v.receipt.total);
    // The failure counts against the worker, unlike a cancel.
    expect(market.book.byOffer('wa', 'wa-offer')!.stats.errorRate).toBeGreaterThan(0);
    expect(market.book.byOffer('wa', 'wa-offer')!.stats.inFlight).toBe(0);
  });

  it('a worker fault ends the request uncharged and demotes the worker at once', async () => {
    const { ledger, house, router, market } = await setup();
    const sel = await router.select(req());
    sel.onWorkerFault!(sel.candidates[0]!, 'WORKER_USAGE_INVALID');
    expect(await ledger.available(house.id)).toBe(1_000_000n);
    expect(market.book.byOffer('wa', 'wa-offer')!.stats.unhealthy(NOW)).toBe(true);
    const next = await router.select(req({ requestId: 'r3' }));
    expect(next.candidates.map((c) => c.worker.id)).toEqual(['wb']);
  });

  it('forwards the hold as caps: max_tokens per choice and n', async () => {
    const { router } = await setup();
    const sel = await router.select(req({ body: { ...body, n: 3 } }));
    expect(sel.caps).toEqual({ maxTokens: 100, n: 3 });
  });
});

