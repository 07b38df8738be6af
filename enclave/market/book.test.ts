/**
 * Order book cancels (docs/market.md "Withdrawing an offer"): tombstones are scoped to the worker that signed them,
 * survive the worker leaving, and are bounded per worker and in total (unregistered workers' evicted first).
 */
import { describe, expect, it } from 'vitest';
import { type OfferCancel, signCancel } from '../../protocol/offer.ts';
import { expectCode, makeWorker, NOW, NOW_S, signedOffer, type TestWorker } from '../../test/market-fixtures.ts';
import { OrderBook } from './book.ts';

const cancelOf = (w: TestWorker, over: Partial<OfferCancel> = {}) =>
  signCancel({ v: 1, type: 'cancel', offerId: `${w.id}-offer`, workerId: w.id, workerKey: w.publicKey, hotkey: w.hotkey.address, sequence: 5, at: NOW_S, ...over }, w.privateKey, w.hotkey.secretKey);

describe('order book cancels', () => {
  it("one worker's cancel of an id it does not hold does not block another worker's offer with that id", async () => {
    const [a, b] = [await makeWorker('wa', { seed: 1 }), await makeWorker('wb', { seed: 2 })];
    const book = new OrderBook();
    book.upsertWorker(a.info);
    book.upsertWorker(b.info);
    expect(await book.cancel(await cancelOf(a, { offerId: 'wb-offer', sequence: 1_000 }), 'wa')).toEqual({ offerId: 'wb-offer', sequence: 1_000, removed: false });
    await book.addSignedOffer(await signedOffer(b, { sequence: 3 }), NOW);
    expect(book.byOffer('wb', 'wb-offer')?.offer.workerId).toBe('wb');
    // Now held by wb: wa's cancel of that id reaches only wa's own namespace, and wb's offer stays.
    expect((await book.cancel(await cancelOf(a, { offerId: 'wb-offer', sequence: 1_001 }), 'wa')).removed).toBe(false);
    expect(book.size).toBe(1);
  });

  it("a worker that takes another's offer id first neither blocks, replaces nor cancels the owner's offer", async () => {
    const [victim, squatter] = [await makeWorker('wa', { seed: 1 }), await makeWorker('wb', { seed: 2 })];
    const book = new OrderBook();
    book.upsertWorker(victim.info);
    book.upsertWorker(squatter.info);
    await book.addSignedOffer(await signedOffer(squatter, { offerId: 'wa-offer', sequence: 1_000_000 }), NOW);
    // The victim's offer (and its later renewals, at lower sequences than the squatter's) go in beside it.
    await book.addSignedOffer(await signedOffer(victim, { sequence: 5 }), NOW);
    await book.addSignedOffer(await signedOffer(victim, { sequence: 6 }), NOW);
    expect(book.byOffer('wa', 'wa-offer')?.offer.sequence).toBe(6);
    expect(book.byOffer('wb', 'wa-offer')?.offer.sequence).toBe(1_000_000);
    expect(book.size).toBe(2);
    expect((await book.cancel(await cancelOf(squatter, { offerId: 'wa-offer', sequence: 2_000_000 }), 'wb')).removed).toBe(true);
    expect(book.byOffer('wa', 'wa-offer')?.offer.sequence).toBe(6);
    expect(book.size).toBe(1);
  });

  it('removes versions at or below its sequence, refuses them later, even after the worker left and came back', async () => {
    const a = await makeWorker('wa', { seed: 1 });
    const book = new OrderBook();
    book.upsertWorker(a.info);
    await book.addSignedOffer(await signedOffer(a, { sequence: 5 }), NOW);
    expect((await book.cancel(await cancelOf(a, { sequence: 4 }), 'wa')).removed).toBe(false);
    expect(book.size).toBe(1);
    expect((await book.cancel(await cancelOf(a, { sequence: 5 }), 'wa')).removed).toBe(true);
    expect(book.size).toBe(0);
    book.removeWorker('wa');
    book.upsertWorker(a.info);
    await expectCode(book.addSignedOffer(await signedOffer(a, { sequence: 5 }), NOW), 'OFFER_SUPERSEDED');
    await book.addSignedOffer(await signedOffer(a, { sequence: 6 }), NOW);
    expect(book.size).toBe(1);
  });

  it('bounds tombstones: OFFER_CANCEL_LIMIT per worker; in total, departed workers are evicted first', async () => {
    const [a, b, c] = [await makeWorker('wa', { seed: 1 }), await makeWorker('wb', { seed: 2 }), await makeWorker('wc', { seed: 3 })];
    const book = new OrderBook({ maxTombstonesPerWorker: 2, maxTombstones: 4 });
    for (const w of [a, b, c]) book.upsertWorker(w.info);
    await book.cancel(await cancelOf(a, { offerId: 'x1' }), 'wa');
    await book.cancel(await cancelOf(a, { offerId: 'x2' }), 'wa');
    await book.cancel(await cancelOf(a, { offerId: 'x2', sequence: 9 }), 'wa'); // raising an existing one takes no room
    await expectCode(book.cancel(await cancelOf(a, { offerId: 'x3' }), 'wa'), 'OFFER_CANCEL_LIMIT');
    await book.cancel(await cancelOf(b, { offerId: 'y1' }), 'wb');
    await book.cancel(await cancelOf(b, { offerId: 'y2' }), 'wb');
    await expectCode(book.cancel(await cancelOf(c, { offerId: 'z1' }), 'wc'), 'OFFER_CANCEL_LIMIT');
    book.removeWorker('wa');
    await book.cancel(await cancelOf(c, { offerId: 'z1' }), 'wc'); // wa's two tombstones made room
    // wb's are kept: it is still registered.
    book.upsertWorker(b.info);
    await expectCode(book.addSignedOffer(await signedOffer(b, { offerId: 'y1', sequence: 5 }), NOW), 'OFFER_SUPERSEDED');
  });
});
