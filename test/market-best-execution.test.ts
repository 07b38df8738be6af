/**
 * Provable best execution (protocol/best-execution.ts, `gm receipts prove`): a selection from a real order book
 * commits to the considered offers' Merkle root, the eligible bitmap, the rule and the winner's rank; the auditor's
 * check passes for the honest receipt and catches a receipt that claims the best rank for an offer while a cheaper
 * eligible one existed, a set with an offer left out, and a rule changed after signing.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sha256 } from '@noble/hashes/sha2.js';
import { afterAll, describe, expect, it } from 'vitest';
import { toBase64 } from '../attestation/bytes.ts';
import { main } from '../cli/main.ts';
import { nodeIo } from '../cli/io.ts';
import { createMarket } from '../enclave/market/index.ts';
import { parseRouteConstraints } from '../enclave/market/constraints.ts';
import { selectionRule } from '../enclave/market/select.ts';
import { encodeRule, leafHash, merkleRoot, proveBestExecution, type SelectionCommitment } from '../protocol/best-execution.ts';
import type { VerifiedOffer } from '../protocol/offer.ts';
import { computeCharge, generateReceiptKey, receiptEnvelope, type ReceiptSigner } from '../protocol/receipt.ts';
import { expectCode, makeWorker, NOW, verifiedOffer } from './market-fixtures.ts';

const dir = mkdtempSync(join(tmpdir(), 'gm-prove-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function fixture() {
  const workers = await Promise.all(['wa', 'wb', 'wc', 'wd'].map((id, i) => makeWorker(id, { seed: i + 1 })));
  const market = createMarket({ feeBasisPoints: 100 });
  const offers: VerifiedOffer[] = [];
  const prices = [300_000n, 100_000n, 200_000n, 50_000n];
  for (const [i, w] of workers.entries()) {
    market.book.upsertWorker(w.info);
    // wd is cheapest but postpaid, which the request does not accept: considered, not eligible.
    const v = await verifiedOffer(w, { model: 'm', pricePerMInput: prices[i]!, pricePerMOutput: prices[i]! * 2n, terms: i === 3 ? { kind: 'postpaid', creditLimit: 1n, settlementPeriodSeconds: 60 } : { kind: 'per-request' } });
    market.book.insert(v, NOW);
    offers.push(v);
  }
  // An offer for another model is in the listing but not in the considered set.
  const other = await verifiedOffer(workers[0]!, { offerId: 'other', model: 'other-model' });
  market.book.insert(other, NOW);
  const c = parseRouteConstraints({ model: 'm', max_tokens: 100, messages: [{ role: 'user', content: 'hi' }], payment: { terms: ['per-request', 'prepaid'] } });
  const sel = market.selectParsed(c, { now: NOW, requestId: 'r1', commit: true });
  const rule = encodeRule(selectionRule(c));
  return { market, offers, listing: [...offers, other], sel, rule, signer: await generateReceiptKey() };
}

type Fixture = Awaited<ReturnType<typeof fixture>>;

function commitment(f: Fixture, rank: number): SelectionCommitment {
  const p = f.sel.proof!;
  return { root: p.root, considered: p.considered, eligible: sha256(p.bitmap), count: p.count, strategy: p.strategy, constraints: sha256(f.rule), rank };
}

async function signedFor(signer: ReceiptSigner, served: VerifiedOffer, selection: SelectionCommitment) {
  const o = served.offer;
  return signer.sign({
    seq: 1, prev: new Uint8Array(32), requestId: 'r1', time: NOW, model: o.model, account: 'acct', workerId: o.workerId, workerKey: o.workerKey, evidenceDigest: new Uint8Array(32),
    offerId: o.offerId, offerDigest: served.digest, inputTokens: 10, outputTokens: 20, currency: o.currency, pricePerMInput: o.pricePerMInput, pricePerMOutput: o.pricePerMOutput,
    feeBasisPoints: 100, ...computeCharge(o, 100, 10, 20), terms: o.terms, sim: true, selection,
  });
}

let files = 0;
async function prove(env: object, listing: VerifiedOffer[], ...extra: string[]) {
  const n = files++;
  writeFileSync(join(dir, `r-${n}.json`), JSON.stringify(env));
  writeFileSync(join(dir, `o-${n}.json`), JSON.stringify(listing.map((v) => ({ signed: toBase64(v.signed) }))));
  let out = '';
  const code = await main(['receipts', 'prove', '--receipt', join(dir, `r-${n}.json`), '--offers', join(dir, `o-${n}.json`), ...extra], { ...nodeIo, out: (s) => void (out += s), err: (s) => void (out += s) });
  return { code, out };
}

describe('best-execution commitment', () => {
  it('the root is RFC 6962 over the considered offers sorted by digest; the bitmap marks the eligible ones', async () => {
    const f = await fixture();
    const p = f.sel.proof!;
    const sorted = [...f.offers].sort((a, b) => Buffer.compare(Buffer.from(a.digest), Buffer.from(b.digest)));
    const l = sorted.map((v) => leafHash(v.digest));
    // Four leaves: a balanced tree, computed by hand.
    const node = (a: Uint8Array, b: Uint8Array) => sha256(new Uint8Array([1, ...a, ...b]));
    expect(p.root).toEqual(node(node(l[0]!, l[1]!), node(l[2]!, l[3]!)));
    expect(merkleRoot(l.slice(0, 3))).toEqual(node(node(l[0]!, l[1]!), l[2]!));
    expect([p.considered, p.count]).toEqual([4, 3]);
    expect(f.sel.candidates[0]!.offer.workerId).toBe('wb');
  });

  it('gm receipts prove: the honest receipt is proven (exit 0)', async () => {
    const f = await fixture();
    const winner = f.offers[1]!;
    const s = await signedFor(f.signer, winner, commitment(f, 0));
    const r = await prove(receiptEnvelope(s, winner.signed, { rule: f.rule, eligible: f.sel.proof!.bitmap }), f.listing, '--key', Buffer.from(f.signer.publicKey).toString('hex'), '--json');
    expect(r.code).toBe(0);
    expect(JSON.parse(r.out)).toMatchObject({ proven: true, rank: 0, considered: 4, eligible: 3, better: 0, excludedLive: 0, rankChecked: 'price' });
  });

  it('catches a receipt that claims the cheapest offer while a cheaper eligible one existed (BEST_EXECUTION_VIOLATED)', async () => {
    const f = await fixture();
    const dearer = f.offers[2]!; // 200000 while wb offers 100000 on the same terms
    const s = await signedFor(f.signer, dearer, commitment(f, 0));
    const r = await prove(receiptEnvelope(s, dearer.signed, { rule: f.rule, eligible: f.sel.proof!.bitmap }), f.listing);
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/^REJECTED BEST_EXECUTION_VIOLATED: 1 eligible offer\(s\) rank above/);
    // At rank 1 (a failover past the best) the same receipt is consistent.
    const ok = await signedFor(f.signer, dearer, commitment(f, 1));
    expect((await prove(receiptEnvelope(ok, dearer.signed, { rule: f.rule, eligible: f.sel.proof!.bitmap }), f.listing)).code).toBe(0);
  });

  it('catches an eligible set that leaves the cheaper offer out, and a rule or bitmap changed after signing', async () => {
    const f = await fixture();
    const dearer = f.offers[2]!;
    const p = f.sel.proof!;
    // The enclave commits to a set without wb: the listing shows wb, so the root cannot match.
    const without = f.offers.filter((v) => v !== f.offers[1]).sort((a, b) => Buffer.compare(Buffer.from(a.digest), Buffer.from(b.digest)));
    const lied: SelectionCommitment = { ...commitment(f, 0), root: merkleRoot(without.map((v) => leafHash(v.digest))), considered: 3, count: 2, eligible: sha256(new Uint8Array([0b011])) };
    const s = await signedFor(f.signer, dearer, lied);
    expect((await prove(receiptEnvelope(s, dearer.signed, { rule: f.rule, eligible: new Uint8Array([0b011]) }), f.listing)).out).toMatch(/^REJECTED SELECTION_SET_MISMATCH/);
    const honest = await signedFor(f.signer, f.offers[1]!, commitment(f, 0));
    const otherRule = encodeRule({ ...selectionRule(parseRouteConstraints({ model: 'm', max_tokens: 100 })), terms: ['postpaid'] });
    expect((await prove(receiptEnvelope(honest, f.offers[1]!.signed, { rule: otherRule, eligible: p.bitmap }), f.listing)).out).toMatch(/^REJECTED SELECTION_CONSTRAINTS_MISMATCH/);
    const flipped = p.bitmap.slice();
    flipped[0]! ^= 0xff;
    expect((await prove(receiptEnvelope(honest, f.offers[1]!.signed, { rule: f.rule, eligible: flipped }), f.listing)).out).toMatch(/^REJECTED SELECTION_BITMAP_MISMATCH/);
  });

  it('max_price caps the price after terms, in selection and in the proof: a discounted offer under the cap wins and is proven', async () => {
    const [wa, wb] = await Promise.all(['wa', 'wb'].map((id, i) => makeWorker(id, { seed: i + 1 })));
    const market = createMarket({ feeBasisPoints: 0 });
    for (const w of [wa!, wb!]) market.book.upsertWorker(w.info);
    // wa lists 2.00 per 1M output but takes 60% off beyond 100 tokens: 1000 tokens average 0.92 per 1M.
    const discounted = await verifiedOffer(wa!, { model: 'm', pricePerMInput: 100_000n, pricePerMOutput: 2_000_000n, terms: { kind: 'per-request', discounts: [{ fromOutputTokens: 100, basisPoints: 6000 }] } });
    // wb lists 1.00 flat, and a minimum charge of 5000 micro-units: over what a 1.0 cap allows for 1000 tokens.
    const minimum = await verifiedOffer(wb!, { model: 'm', pricePerMInput: 100_000n, pricePerMOutput: 900_000n, terms: { kind: 'per-request', minCharge: 5000n } });
    for (const v of [discounted, minimum]) market.book.insert(v, NOW);
    const body = (maxTokens: number) => ({ model: 'm', max_tokens: maxTokens, messages: [], provider: { max_price: { completion: '1.0' } } });
    const c = parseRouteConstraints(body(1000));
    const sel = market.selectParsed(c, { now: NOW, requestId: 'r', commit: true });
    expect(sel.candidates.map((x) => x.offer.workerId)).toEqual(['wa']);
    // At 50 tokens no discount applies: the list price 2.00 is what the request would pay, over the cap.
    await expectCode(async () => market.selectParsed(parseRouteConstraints(body(50)), { now: NOW, requestId: 'r' }), 'NO_ELIGIBLE_OFFER');
    const rule = encodeRule(selectionRule(c));
    const p = sel.proof!;
    const signer = await generateReceiptKey();
    const s = await signedFor(signer, discounted, { root: p.root, considered: p.considered, eligible: sha256(p.bitmap), count: p.count, strategy: p.strategy, constraints: sha256(rule), rank: 0 });
    const r = await prove(receiptEnvelope(s, discounted.signed, { rule, eligible: p.bitmap }), [discounted, minimum], '--json');
    expect(r.code).toBe(0);
    expect(JSON.parse(r.out)).toMatchObject({ proven: true, considered: 2, eligible: 1, excludedLive: 0 });
    // A receipt marking the minimum-charge offer eligible too is caught: the rule excludes it by price.
    const both = new Uint8Array([0b11]);
    const lie = await signedFor(signer, discounted, { root: p.root, considered: 2, eligible: sha256(both), count: 2, strategy: p.strategy, constraints: sha256(rule), rank: 0 });
    expect((await prove(receiptEnvelope(lie, discounted.signed, { rule, eligible: both }), [discounted, minimum])).out).toMatch(/^REJECTED SELECTION_NOT_ELIGIBLE: offer wb-offer is marked eligible but fails the rule \(price\)/);
  });

  it('an offer marked eligible that the rule excludes is SELECTION_NOT_ELIGIBLE', async () => {
    const f = await fixture();
    const p = f.sel.proof!;
    const all = new Uint8Array([0b1111]);
    const s = await signedFor(f.signer, f.offers[1]!, { ...commitment(f, 0), eligible: sha256(all), count: 4 });
    await expectCode(async () => proveBestExecution({ selection: s.receipt.selection!, winner: f.offers[1]!.digest, feeBasisPoints: 100, rule: f.rule, bitmap: all, offers: f.listing }), 'SELECTION_NOT_ELIGIBLE');
    expect(p.bitmap.length).toBe(1);
  });
});
