import { describe, expect, it } from 'vitest';
import { makeWorker, NOW, offerFor, testIdentity, unsignedVerified } from '../../test/market-fixtures.ts';
import { OrderBook } from './book.ts';
import { microsToDecimal, modelCards } from './models.ts';

describe('model cards (/v1/models)', () => {
  it('price ranges per 1M tokens in currency units and attested workers per model; stale workers and other models apart', async () => {
    const [a, b, c] = await Promise.all([makeWorker('wa', { seed: 1 }), makeWorker('wb', { seed: 2 }), makeWorker('wc', { seed: 3 })]);
    const book = new OrderBook({ feeBasisPoints: 0 });
    book.upsertWorker({ ...a.info, verifiedUntil: NOW + 60_000 });
    book.upsertWorker({ ...b.info, verifiedUntil: NOW + 60_000 });
    book.upsertWorker({ ...c.info, verifiedUntil: NOW - 1 });
    book.insert(unsignedVerified(offerFor(a, { offerId: 'a1', model: 'llama', pricePerMInput: 100_000n, pricePerMOutput: 2_500_000n }), 1), NOW);
    book.insert(unsignedVerified(offerFor(a, { offerId: 'a2', model: 'llama', pricePerMInput: 120_000n, pricePerMOutput: 2_000_000n }), 2), NOW);
    book.insert(unsignedVerified(offerFor(b, { offerId: 'b1', model: 'llama', pricePerMInput: 90_000n, pricePerMOutput: 3_000_000n }), 3), NOW);
    book.insert(unsignedVerified(offerFor(b, { offerId: 'b2', model: 'qwen', currency: 'EUR', pricePerMInput: 0n, pricePerMOutput: 1_000_001n }), 4), NOW);
    // The stale worker's cheaper offer is neither counted nor priced.
    book.insert(unsignedVerified(offerFor(c, { offerId: 'c1', model: 'llama', pricePerMInput: 1n, pricePerMOutput: 1n }), 5), NOW);
    expect(modelCards(book, NOW)).toEqual([
      { id: 'llama', object: 'model', created: 0, owned_by: 'gm', context_length: null, quantizations: [], workers: 2, pricing: [{ currency: 'USD', input_per_1m: { min: '0.09', max: '0.12' }, output_per_1m: { min: '2', max: '3' } }] },
      { id: 'qwen', object: 'model', created: 0, owned_by: 'gm', context_length: null, quantizations: [], workers: 1, pricing: [{ currency: 'EUR', input_per_1m: { min: '0', max: '0' }, output_per_1m: { min: '1.000001', max: '1.000001' } }] },
    ]);
  });

  it('context length and quantizations come from the offers that state an attested identity; none states one: null', async () => {
    const [a, b] = await Promise.all([makeWorker('wa', { seed: 1 }), makeWorker('wb', { seed: 2 })]);
    const book = new OrderBook({ feeBasisPoints: 0 });
    book.upsertWorker({ ...a.info, identities: new Map([['llama', testIdentity('fp8', { contextLength: 8192 })]]) });
    book.upsertWorker({ ...b.info, identities: new Map([['llama', testIdentity('bf16', { contextLength: 131_072 })]]) });
    book.insert(unsignedVerified(offerFor(a, { offerId: 'a1', model: 'llama', identity: testIdentity('fp8', { contextLength: 8192 }) }), 1), NOW);
    book.insert(unsignedVerified(offerFor(b, { offerId: 'b1', model: 'llama', identity: testIdentity('bf16', { contextLength: 131_072 }) }), 2), NOW);
    book.insert(unsignedVerified(offerFor(b, { offerId: 'b2', model: 'qwen' }), 3), NOW);
    const cards = modelCards(book, NOW);
    expect(cards.map((c) => [c.id, c.context_length, c.quantizations])).toEqual([
      ['llama', 131_072, ['bf16', 'fp8']],
      ['qwen', null, []],
    ]);
  });

  it('prices print in each currency\'s units: TAO from rao (10^-9), USD from micro-USD (10^-6)', async () => {
    const [a, b] = await Promise.all([makeWorker('wa', { seed: 1 }), makeWorker('wb', { seed: 2 })]);
    const book = new OrderBook({ feeBasisPoints: 0 });
    for (const w of [a, b]) book.upsertWorker({ ...w.info, verifiedUntil: NOW + 60_000 });
    // 0.1 TAO and 2.5 TAO per 1M tokens, in rao; beside a USD offer of the same model.
    book.insert(unsignedVerified(offerFor(a, { offerId: 't1', model: 'llama', currency: 'TAO', pricePerMInput: 100_000_000n, pricePerMOutput: 2_500_000_000n }), 1), NOW);
    book.insert(unsignedVerified(offerFor(b, { offerId: 't2', model: 'llama', currency: 'TAO', pricePerMInput: 1n, pricePerMOutput: 3_000_000_000n }), 2), NOW);
    book.insert(unsignedVerified(offerFor(b, { offerId: 'u1', model: 'llama', currency: 'USD', pricePerMInput: 100_000n, pricePerMOutput: 2_500_000n }), 3), NOW);
    expect(modelCards(book, NOW)[0]!.pricing).toEqual([
      { currency: 'TAO', input_per_1m: { min: '0.000000001', max: '0.1' }, output_per_1m: { min: '2.5', max: '3' } },
      { currency: 'USD', input_per_1m: { min: '0.1', max: '0.1' }, output_per_1m: { min: '2.5', max: '2.5' } },
    ]);
  });

  it('micro-units print as exact decimals', () => {
    expect([0n, 1n, 100_000n, 1_000_000n, 2_500_000n, 123_456_789n].map(microsToDecimal)).toEqual(['0', '0.000001', '0.1', '1', '2.5', '123.456789']);
  });
});
