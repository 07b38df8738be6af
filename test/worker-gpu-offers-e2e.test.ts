/**
 * gm worker states its GPUs in its offers (worker/offers.ts, docs/operator.md): by default those of the GPU evidence
 * it collected, which the enclave's book takes because its verified evidence shows the same count and model; a
 * statement the evidence does not show (`--gpu-count 2` on a one-GPU worker, or another model) is refused by the book
 * as OFFER_GPU_MISMATCH, so the offer never reaches the listing, and the worker logs the refusal with its code.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fromBase64 } from '../attestation/bytes.ts';
import { decodeDeterministic } from '../protocol/market-cbor.ts';
import { decodeOffer } from '../protocol/offer.ts';
import { serve } from '../enclave/serve.ts';
import { simProvider } from '../enclave/tee/sim.ts';
import { startWorker } from '../worker/agent.ts';
import { devModelApp } from '../worker/dev-model/server.ts';
import { simGpuSource } from '../worker/gpu.ts';
import { gpusFromFlags } from '../worker/main.ts';
import { offerSigner, statingGpus } from '../worker/offers.ts';
import { type Stack, simVendors, startStack } from './stack/harness.ts';

let stack: Stack;
beforeAll(async () => {
  stack = await startStack({ workers: [] });
}, 60_000);
afterAll(async () => {
  await stack?.stop();
});

interface Listed { workerId: string; model: string; signed: string }
const listedOffer = async (model: string) => {
  const all = ((await (await fetch(`${stack.enclaveUrl}/v1/market/offers`)).json()) as { offers: Listed[] }).offers;
  const l = all.find((o) => o.model === model);
  return l && decodeOffer((decodeDeterministic(fromBase64(l.signed, 'offer')) as { offer: Uint8Array }).offer);
};

/** A sim worker serving `model`, its offers stating GPUs as the flags say. */
async function runWorker(model: string, flags: Parameters<typeof gpusFromFlags>[0]) {
  const { amd, nvidia } = await simVendors();
  const upstream = await serve({ fetch: devModelApp({ name: model }).fetch });
  const gpu = statingGpus(simGpuSource({ signer: nvidia }));
  const w = await startWorker({
    upstream: upstream.url, enclaves: [stack.enclaveUrl], tee: simProvider({ amd }), gpu: gpu.source, log: stack.log, fetch, now: () => new Date(),
    offers: offerSigner({ currency: 'USD', pricePerMInput: 1n, pricePerMOutput: 1n, terms: { kind: 'per-request' }, capacity: 1, ttftMs: 1, tokensPerSecond: 1, hotkeySeed: new Uint8Array(32).fill(5), gpus: gpusFromFlags(flags, gpu.stated) }),
  });
  await w.registered;
  return { w, stop: async () => (await w.stop(), await upstream.close(100)) };
}

describe('offers state the GPUs of the worker', () => {
  it('by default the GPUs of the collected evidence: the book takes the offer, which names one sim GH100', async () => {
    const { w, stop } = await runWorker('gm-gpu-default', {});
    try {
      const o = await listedOffer('gm-gpu-default');
      expect(o?.workerId).toBe(w.id);
      expect(o?.gpus).toEqual({ count: 1, model: 'SIM GH100 A01 GSP BROM' });
    } finally {
      await stop();
    }
  }, 60_000);

  it('a count or model the evidence does not show is refused as OFFER_GPU_MISMATCH and never listed', async () => {
    for (const [model, flags] of [['gm-gpu-two', { 'gpu-count': '2', 'gpu-model': 'SIM GH100 A01 GSP BROM' }], ['gm-gpu-other', { 'gpu-count': '1', 'gpu-model': 'GB100 A01 GSP BROM' }]] as const) {
      const before = stack.logs.length;
      const { stop } = await runWorker(model, flags);
      try {
        expect(await listedOffer(model)).toBeUndefined();
        const refusal = stack.logs.slice(before).find((l) => l.includes('worker.offers_refused'));
        expect(refusal).toContain('0:OFFER_GPU_MISMATCH');
      } finally {
        await stop();
      }
    }
  }, 60_000);
});
