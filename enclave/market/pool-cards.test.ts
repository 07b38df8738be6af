import { describe, expect, it } from 'vitest';
import { makeWorker, NOW, signedOffer, testIdentity } from '../../test/market-fixtures.ts';
import { openaiApp } from '../api/openai.ts';
import { SqliteLedger } from '../ledger/sqlite.ts';
import { generateEnclaveReceiptKey } from '../ledger/signer.ts';
import { memoryLogger } from '../log.ts';
import { Metrics } from '../metrics.ts';
import type { VerifiedWorker, WorkerRegistry } from '../workers/registry.ts';
import { createMarket } from './index.ts';
import { poolCards, withPools } from './pool-cards.ts';
import { marketRouter } from './router.ts';

const POOLS = { fast: ['big-model', 'dev-model', 'absent-model'], 'dev-model': ['big-model'] };

/** Three verified workers: two offering dev-model (0.1 and 0.3 USD per 1M input), one big-model (0.05). */
async function book() {
  const [a, b, c] = await Promise.all([makeWorker('wa', { seed: 1 }), makeWorker('wb', { seed: 2 }), makeWorker('wc', { seed: 3 })]);
  const m = createMarket({ feeBasisPoints: 0, pools: POOLS });
  const offers = [
    await signedOffer(a!, { pricePerMInput: 100_000n, pricePerMOutput: 200_000n }),
    await signedOffer(b!, { pricePerMInput: 300_000n, pricePerMOutput: 600_000n }),
    await signedOffer(c!, { model: 'big-model', pricePerMInput: 50_000n, pricePerMOutput: 2_000_000n }),
  ];
  const workers = [a!, b!, c!].map((w, i) => ({ id: w.id, signingKey: w.publicKey, evidenceDigest: w.info.evidenceDigest, expiresAt: NOW + 600_000, sim: true, offers: [offers[i]!], models: [] }) as unknown as VerifiedWorker);
  return { m, workers };
}

describe('model pools in the model list', () => {
  it('a pool card spans its live models: workers, price ranges, and its models in priority order', async () => {
    const { m, workers } = await book();
    for (const w of workers) m.book.upsertWorker({ workerId: w.id, workerKey: w.signingKey, evidenceDigest: w.evidenceDigest, verifiedUntil: w.expiresAt, sim: true });
    for (const w of workers) await m.book.addSignedOffer(w.offers[0]!, NOW, w.id);
    const [devPool, fast] = poolCards(m.book, POOLS, NOW);
    expect(fast).toEqual({
      id: 'fast', object: 'model', created: 0, owned_by: 'gm', context_length: null, quantizations: [], workers: 3,
      pricing: [{ currency: 'USD', input_per_1m: { min: '0.05', max: '0.3' }, output_per_1m: { min: '0.2', max: '2' } }],
      gm_pool: { models: ['big-model', 'dev-model', 'absent-model'], available: ['big-model', 'dev-model'], modes: ['latency', 'throughput', 'floor', 'nitro'] },
    });
    expect(devPool!.workers).toBe(1);
    // A worker whose verification lapsed counts no more.
    expect(poolCards(m.book, POOLS, NOW + 700_000)[1]).toMatchObject({ workers: 0, pricing: [], gm_pool: { available: [] } });
    expect(withPools([], []).length).toBe(0);
  });

  it('a pool card prices each currency in its own units (TAO from rao)', async () => {
    const [a, b] = await Promise.all([makeWorker('wa', { seed: 1 }), makeWorker('wb', { seed: 2 })]);
    const m = createMarket({ feeBasisPoints: 0, pools: { both: ['dev-model', 'big-model'] } });
    for (const w of [a!, b!]) m.book.upsertWorker(w.info);
    await m.book.addSignedOffer(await signedOffer(a!, { currency: 'TAO', pricePerMInput: 50_000_000n, pricePerMOutput: 1_000_000_000n }), NOW);
    await m.book.addSignedOffer(await signedOffer(b!, { model: 'big-model', currency: 'TAO', pricePerMInput: 200_000_000n, pricePerMOutput: 1_500_000_000n }), NOW);
    expect(poolCards(m.book, { both: ['dev-model', 'big-model'] }, NOW)[0]!.pricing).toEqual([{ currency: 'TAO', input_per_1m: { min: '0.05', max: '0.2' }, output_per_1m: { min: '1', max: '1.5' } }]);
  });

  it('a pool takes the context length all its live models take, and lists their attested quantizations', async () => {
    const [a, b, c] = await Promise.all([makeWorker('wa', { seed: 1 }), makeWorker('wb', { seed: 2 }), makeWorker('wc', { seed: 3 })]);
    const dev = testIdentity('fp8', { contextLength: 131_072 });
    const big = testIdentity('bf16', { contextLength: 8_192 });
    const m = createMarket({ feeBasisPoints: 0, pools: { both: ['dev-model', 'big-model'], plain: ['dev-model', 'other-model'] } });
    m.book.upsertWorker({ ...a!.info, identities: new Map([['dev-model', dev]]) });
    m.book.upsertWorker({ ...b!.info, identities: new Map([['big-model', big]]) });
    m.book.upsertWorker(c!.info);
    await m.book.addSignedOffer(await signedOffer(a!, { identity: dev }), NOW);
    await m.book.addSignedOffer(await signedOffer(b!, { model: 'big-model', identity: big }), NOW);
    const cards = () => Object.fromEntries(poolCards(m.book, { both: ['dev-model', 'big-model'], plain: ['dev-model', 'other-model'] }, NOW).map((x) => [x.id, x]));
    expect(cards().both).toMatchObject({ context_length: 8_192, quantizations: ['bf16', 'fp8'] });
    expect(cards().plain).toMatchObject({ context_length: 131_072, quantizations: ['fp8'] });
    // A live model of the pool that states no identity: its context length is unknown, so the pool's is too.
    await m.book.addSignedOffer(await signedOffer(c!, { model: 'other-model' }), NOW);
    expect(cards().plain).toMatchObject({ context_length: null, quantizations: ['fp8'], gm_pool: { available: ['dev-model', 'other-model'] } });
  });

  it('GET /v1/models lists pools beside the models (a pool hides a model of its name); GET /v1/models/{pool} answers', async () => {
    const { m, workers } = await book();
    const ledger = SqliteLedger.open(':memory:', { signer: generateEnclaveReceiptKey() });
    const house = (await ledger.createAccount({ currency: 'USD', prepaid: 1_000_000n }, NOW)).account;
    const mr = marketRouter({ market: m, ledger, enclaveSim: false, anonymous: house, now: () => NOW });
    for (const w of workers) await mr.onWorkerChange('verified', w);
    const registry = { usable: (id: string) => workers.find((w) => w.id === id), list: () => workers } as unknown as WorkerRegistry;
    const app = openaiApp({ router: mr.router(registry), usable: registry.usable.bind(registry), dispatch: () => Promise.reject(new Error('not reached')), log: memoryLogger('enclave').log, metrics: new Metrics(), now: () => NOW });
    const list = (await (await app.request('/v1/models')).json()) as { data: { id: string; gm_pool?: { models: string[] } }[] };
    expect(list.data.map((x) => [x.id, x.gm_pool?.models ?? null])).toEqual([
      ['big-model', null],
      ['dev-model', ['big-model']],
      ['fast', ['big-model', 'dev-model', 'absent-model']],
    ]);
    const one = await app.request('/v1/models/fast');
    expect(one.status).toBe(200);
    expect(((await one.json()) as { gm_pool: { available: string[] } }).gm_pool.available).toEqual(['big-model', 'dev-model']);
    expect((await app.request('/v1/models/slow')).status).toBe(404);
  });
});
