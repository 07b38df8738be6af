/**
 * Attested model identity in the market (docs/market.md "Model identity"): the book takes an offer's identity only
 * when the worker's verified evidence states the same, and selection honours provider.quantizations,
 * provider.weights_digests and provider.require_parameters against those identities, failing closed on offers that
 * state none.
 */
import { describe, expect, it } from 'vitest';
import { hex } from '../../attestation/bytes.ts';
import { expectCode, makeWorker, NOW, offerFor, signedOffer, testIdentity, unsignedVerified } from '../../test/market-fixtures.ts';
import { OrderBook } from './book.ts';
import { parseRouteConstraints } from './constraints.ts';
import { select } from './select.ts';

const fp8 = testIdentity('fp8', { parameters: ['tools'] });
const bf16 = testIdentity('bf16', { parameters: ['logprobs', 'response_format', 'tools'] });

async function market() {
  const [a, b, c] = await Promise.all([makeWorker('wa', { seed: 1 }), makeWorker('wb', { seed: 2 }), makeWorker('wc', { seed: 3 })]);
  const book = new OrderBook();
  book.upsertWorker({ ...a.info, identities: new Map([['m', fp8]]) });
  book.upsertWorker({ ...b.info, identities: new Map([['m', bf16]]) });
  book.upsertWorker(c.info); // states no identity
  // The bf16 and identity-less offers are cheaper: only a constraint can make the fp8 one win.
  book.insert(unsignedVerified(offerFor(a, { offerId: 'a', model: 'm', identity: fp8, pricePerMInput: 900_000n }), 1), NOW);
  book.insert(unsignedVerified(offerFor(b, { offerId: 'b', model: 'm', identity: bf16, pricePerMInput: 500_000n }), 2), NOW);
  book.insert(unsignedVerified(offerFor(c, { offerId: 'c', model: 'm', pricePerMInput: 100_000n }), 3), NOW);
  return { a, b, c, book };
}

const winners = (book: OrderBook, body: Record<string, unknown>, scan: 'auto' | 'linear' = 'auto') =>
  select(book, parseRouteConstraints({ model: 'm', messages: [{ role: 'user', content: 'hi' }], ...body }), NOW, { scan }).candidates.map((x) => x.offer.offerId);

describe('model identity: the book takes only what the evidence covers', () => {
  it('an offer whose identity differs from the attested one, or that the evidence does not state, is OFFER_IDENTITY_UNATTESTED', async () => {
    const { a, c, book } = await market();
    await expectCode(book.addSignedOffer(await signedOffer(a, { offerId: 'a2', model: 'm', identity: bf16 }), NOW), 'OFFER_IDENTITY_UNATTESTED');
    await expectCode(book.addSignedOffer(await signedOffer(a, { offerId: 'a3', model: 'other', identity: fp8 }), NOW), 'OFFER_IDENTITY_UNATTESTED');
    await expectCode(book.addSignedOffer(await signedOffer(c, { offerId: 'c2', model: 'm', identity: fp8 }), NOW), 'OFFER_IDENTITY_UNATTESTED');
    // One field off (the context length) is another identity.
    await expectCode(book.addSignedOffer(await signedOffer(a, { offerId: 'a4', model: 'm', identity: { ...fp8, contextLength: fp8.contextLength + 1 } }), NOW), 'OFFER_IDENTITY_UNATTESTED');
    const ok = await book.addSignedOffer(await signedOffer(a, { offerId: 'a5', model: 'm', identity: fp8 }), NOW);
    expect(ok.offer.identity?.quantization).toBe('fp8');
  });
});

describe('model identity: selection', () => {
  it('provider.quantizations ["fp8"] routes only to fp8 offers, though others are cheaper; both scans agree', async () => {
    const { book } = await market();
    expect(winners(book, {})).toEqual(['c', 'b', 'a']);
    for (const scan of ['auto', 'linear'] as const) expect(winners(book, { provider: { quantizations: ['fp8'] } }, scan)).toEqual(['a']);
    expect(winners(book, { provider: { quantizations: ['fp8', 'bf16'] } })).toEqual(['b', 'a']);
    expect(() => winners(book, { provider: { quantizations: ['int4'] } })).toThrow(/3 quantization or weights not requested/);
  });

  it('provider.weights_digests keeps only offers with a listed attested weights digest', async () => {
    const { book } = await market();
    expect(winners(book, { provider: { weights_digests: [hex(fp8.weightsDigest)] } })).toEqual(['a']);
  });

  it('require_parameters: only offers declaring every parameter the request uses; without it, all', async () => {
    const { book } = await market();
    expect(winners(book, { logprobs: true, tools: [] })).toEqual(['c', 'b', 'a']);
    expect(winners(book, { logprobs: true, tools: [], provider: { require_parameters: true } })).toEqual(['b']);
    expect(winners(book, { tools: [], provider: { require_parameters: true } })).toEqual(['b', 'a']);
    expect(() => winners(book, { seed: 7, provider: { require_parameters: true } })).toThrow(/3 request parameters not declared/);
  });
});

describe('offers that state their GPUs', () => {
  it('are taken only when the verified evidence shows that many GPUs of that model (OFFER_GPU_MISMATCH)', async () => {
    const a = await makeWorker('wa', { seed: 1 });
    const book = new OrderBook();
    book.upsertWorker({ ...a.info, gpus: [{ hwmodel: 'GH100 A01 GSP BROM' }, { hwmodel: 'GH100 A01 GSP BROM' }] });
    await expectCode(book.addSignedOffer(await signedOffer(a, { offerId: 'x1', gpus: { count: 8, model: 'GH100 A01 GSP BROM' } }), NOW), 'OFFER_GPU_MISMATCH');
    await expectCode(book.addSignedOffer(await signedOffer(a, { offerId: 'x2', gpus: { count: 2, model: 'GB100 A01 GSP BROM' } }), NOW), 'OFFER_GPU_MISMATCH');
    expect((await book.addSignedOffer(await signedOffer(a, { offerId: 'x3', gpus: { count: 2, model: 'GH100 A01 GSP BROM' } }), NOW)).offer.gpus).toEqual({ count: 2, model: 'GH100 A01 GSP BROM' });
  });
});
