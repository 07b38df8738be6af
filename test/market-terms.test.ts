/**
 * Price terms in selection (enclave/market/select.ts) and in the best-execution audit (protocol/best-execution.ts):
 * the router ranks by the effective price after each offer's signed minimum and discount schedule, the hold covers
 * the minimum, and `gm receipts prove` recomputes the same ranking from the signed offers.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sha256 } from '@noble/hashes/sha2.js';
import { afterAll, describe, expect, it } from 'vitest';
import { SqliteLedger } from '../enclave/ledger/sqlite.ts';
import { auditLedger, sqliteStatements, workerStatement } from '../enclave/ledger/statements.ts';
import { createMarket } from '../enclave/market/index.ts';
import { parseRouteConstraints } from '../enclave/market/constraints.ts';
import { selectionRule } from '../enclave/market/select.ts';
import { encodeRule, proveBestExecution, type SelectionCommitment } from '../protocol/best-execution.ts';
import type { VerifiedOffer } from '../protocol/offer.ts';
import { computeCharge, generateReceiptKey, verifyReceiptChain } from '../protocol/receipt.ts';
import { expectCode, makeWorker, NOW, verifiedOffer } from './market-fixtures.ts';

const dir = mkdtempSync(join(tmpdir(), 'gm-terms-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function fixture(fee = 100) {
  const [wa, wb, wc] = await Promise.all(['wa', 'wb', 'wc'].map((id, i) => makeWorker(id, { seed: i + 11 })));
  const market = createMarket({ feeBasisPoints: fee });
  for (const w of [wa!, wb!, wc!]) market.book.upsertWorker(w.info);
  // Nominally cheapest: 1.0 per M output, no terms.
  const plain = await verifiedOffer(wa!, { model: 'm', pricePerMInput: 100_000n, pricePerMOutput: 1_000_000n });
  // Nominally dearer (1.2) but half price beyond 100 output tokens: 100·1.2 + 900·0.6 = 660 µ for 1000 tokens.
  const discounted = await verifiedOffer(wb!, { model: 'm', pricePerMInput: 100_000n, pricePerMOutput: 1_200_000n, terms: { kind: 'per-request', discounts: [{ fromOutputTokens: 100, basisPoints: 5000 }] } });
  // Nominally cheapest of all (0.5) but with a 5000 µ minimum per request.
  const minimum = await verifiedOffer(wc!, { model: 'm', pricePerMInput: 50_000n, pricePerMOutput: 500_000n, terms: { kind: 'per-request', minCharge: 5000n } });
  const offers: VerifiedOffer[] = [plain, discounted, minimum];
  for (const v of offers) market.book.insert(v, NOW);
  const c = parseRouteConstraints({ model: 'm', max_tokens: 1000, messages: [{ role: 'user', content: 'hi' }] });
  return { market, offers, c };
}

describe('selection by effective price after terms', () => {
  it('picks the discounted offer over the nominally cheaper ones, and the minimum ranks last', async () => {
    const { market, c } = await fixture();
    for (const scan of ['threshold', 'linear'] as const) {
      const sel = market.selectParsed(c, { now: NOW, requestId: 'r1', ...(scan === 'linear' ? { scan } : {}) });
      expect(sel.candidates.map((x) => x.offer.workerId)).toEqual(['wb', 'wa', 'wc']);
    }
    // With few expected output tokens the discount does not reach and the plain offer wins again.
    const short = parseRouteConstraints({ model: 'm', max_tokens: 50, messages: [{ role: 'user', content: 'hi' }] });
    expect(market.selectParsed(short, { now: NOW, requestId: 'r2' }).candidates[0]!.offer.workerId).toBe('wa');
  });

  it('the hold bound covers the minimum charge, and a short answer is charged the minimum within it', async () => {
    const { market, c } = await fixture();
    const sel = market.selectParsed(c, { now: NOW, requestId: 'r1' });
    const min = sel.candidates.find((x) => x.offer.workerId === 'wc')!;
    // At the request's bounds the metered charge is far below 5000 µ: the hold is the minimum plus its fee.
    expect(min.maxCost).toBe(5050n);
    const short = computeCharge(min.offer, 100, 1, 1);
    expect(short.total).toBe(5050n);
    expect(short.total <= min.maxCost).toBe(true);
    // The discounted offer's hold is its discounted charge at the bounds, never below what it can be charged.
    const disc = sel.candidates.find((x) => x.offer.workerId === 'wb')!;
    expect(disc.maxCost).toBe(computeCharge(disc.offer, 100, c.maxInputTokens, c.maxOutputTokens).total);
    for (const out of [0, 99, 100, 101, 500, c.maxOutputTokens]) expect(computeCharge(disc.offer, 100, c.maxInputTokens, out).total <= disc.maxCost).toBe(true);
  });

  it('gm receipts prove ranks by the same terms: the discounted winner is proven, a nominal-price claim is caught', async () => {
    const { market, offers, c } = await fixture();
    const sel = market.selectParsed(c, { now: NOW, requestId: 'r1', commit: true });
    const p = sel.proof!;
    const rule = encodeRule(selectionRule(c));
    const commitment = (rank: number): SelectionCommitment => ({ root: p.root, considered: p.considered, eligible: sha256(p.bitmap), count: p.count, strategy: p.strategy, constraints: sha256(rule), rank });
    const proof = (winner: VerifiedOffer, rank: number) => proveBestExecution({ selection: commitment(rank), winner: winner.digest, feeBasisPoints: 100, rule, bitmap: p.bitmap, offers });
    expect(proof(offers[1]!, 0)).toMatchObject({ better: 0, rankChecked: 'price' });
    // The plain offer is nominally cheaper, but claiming it was the best choice is a violation after terms.
    await expectCode(() => proof(offers[0]!, 0), 'BEST_EXECUTION_VIOLATED');
    expect(proof(offers[0]!, 1)).toMatchObject({ better: 1 });
    await expectCode(() => proof(offers[2]!, 1), 'BEST_EXECUTION_VIOLATED');
  });
});

describe('terms in the ledger: holds, receipts and the worker statement', () => {
  it('a TAO account pays a TAO offer in rao, charged under its minimum and discount, and the worker statement shows it', async () => {
    const signer = await generateReceiptKey();
    const ledger = SqliteLedger.open(join(dir, 'tao.sqlite'), { signer });
    const w = await makeWorker('wt', { seed: 21 });
    const market = createMarket({ feeBasisPoints: 100 });
    market.book.upsertWorker(w.info);
    // 0.1 TAO per M input, 1.2 TAO per M output (rao), a 0.001 TAO minimum, output beyond 1000 tokens a quarter off.
    const offer = await verifiedOffer(w, { model: 'm', currency: 'TAO', pricePerMInput: 100_000_000n, pricePerMOutput: 1_200_000_000n, terms: { kind: 'per-request', minCharge: 1_000_000n, discounts: [{ fromOutputTokens: 1000, basisPoints: 2500 }] } });
    market.book.insert(offer, NOW);
    const { account } = await ledger.createAccount({ currency: 'TAO', prepaid: 1_000_000_000n }, NOW);
    const route = (id: string) => market.route({ model: 'm', max_tokens: 4000, messages: [{ role: 'user', content: 'hi' }] }, { now: NOW, requestId: id, account });
    const settle = async (id: string, tin: number, tout: number) => {
      const sel = route(id);
      return ledger.settle(await ledger.authorize(account, sel.candidates[0]!, sel.feeBasisPoints), { requestId: id, inputTokens: tin, outputTokens: tout, now: NOW });
    };
    // 1 in, 2000 out: 100 + 1000·1200 + 1000·900 rao = 2,100,100 rao.
    const big = await settle('a', 1, 2000);
    expect([big.receipt.currency, big.receipt.workerCost, big.receipt.fee]).toEqual(['TAO', 2_100_100n, 21_001n]);
    // 1 in, 10 out: 12,100 rao metered, so the 1,000,000-rao minimum is charged.
    const small = await settle('b', 1, 10);
    expect([small.receipt.workerCost, small.receipt.total]).toEqual([1_000_000n, 1_010_000n]);
    await verifyReceiptChain([big.signed, small.signed], { keys: [signer.publicKey] });
    const ws = workerStatement(sqliteStatements(ledger), 'wt', NOW);
    expect(ws.rows).toEqual([{ currency: 'TAO', terms: 'per-request', requests: 2, inputTokens: 2, outputTokens: 2010, earned: 3_100_100n, dueNow: 3_100_100n, accruing: 0n }]);
    expect(auditLedger(ledger)).toMatchObject({ ok: true, receipts: 2 });
    ledger.close();
  });
});
