/**
 * Withdrawing an offer end to end through the stack (docs/market.md "Withdrawing an offer"): the worker agent signs a
 * cancel (its evidence-bound Ed25519 key + the operator's sr25519 hotkey, protocol/offer.ts) and posts it to
 * `POST /v1/workers/{id}/offers/cancel`; the offer leaves the enclave's book at once, requests for its model find no
 * offer, re-registration and re-verification do not bring it back, and `restore` posts it again at a higher
 * sequence. Forged, foreign and malformed cancels are refused with their codes and change nothing.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fromBase64, toBase64 } from '../attestation/bytes.ts';
import { decodeDeterministic } from '../protocol/market-cbor.ts';
import { decodeOffer, generateWorkerKey, hotkeyFromSeed, signCancel, type OfferCancel } from '../protocol/offer.ts';
import { serve } from '../enclave/serve.ts';
import { simProvider } from '../enclave/tee/sim.ts';
import { startWorker } from '../worker/agent.ts';
import { devModelApp } from '../worker/dev-model/server.ts';
import { simGpuSource } from '../worker/gpu.ts';
import { offerSigner } from '../worker/offers.ts';
import { connect, type TestClient } from './stack/client.ts';
import { type Stack, simVendors, startStack } from './stack/harness.ts';

let stack: Stack;
let client: TestClient;
/** Sequence of the offer before it was withdrawn. */
let withdrawnSequence = 0;

interface Listed { offerId: string; workerId: string; model: string; sequence: number; signed: string }
const listed = async (): Promise<Listed[]> => ((await (await fetch(`${stack.enclaveUrl}/v1/market/offers`)).json()) as { offers: Listed[] }).offers;
const offerOf = async (model: string): Promise<Listed | undefined> => (await listed()).find((o) => o.model === model);
const postCancel = (workerId: string, body: unknown) =>
  fetch(`${stack.enclaveUrl}/v1/workers/${workerId}/offers/cancel`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: typeof body === 'string' ? body : JSON.stringify(body) });
const refusal = async (r: Response): Promise<[number, string | undefined]> => [r.status, ((await r.json()) as { error?: { code?: string } }).error?.code];
const chat = async (model: string): Promise<[number, string | undefined]> => {
  const r = await client.post('/v1/chat/completions', { model, messages: [{ role: 'user', content: 'hi' }], max_tokens: 4 });
  const j = (await new Response(r.body).json()) as { error?: { code?: string } };
  return [r.status, j.error?.code];
};

beforeAll(async () => {
  stack = await startStack();
  client = await connect(stack.enclaveUrl);
}, 60_000);
afterAll(async () => {
  await stack?.stop();
});

describe('signed cancels refused', () => {
  // Worker 2 (hotkey seed 2 in the harness) holds the offer these try to cancel.
  const base = (w: Stack['workers'][number], over: Partial<OfferCancel> = {}): OfferCancel => ({
    v: 1, type: 'cancel', offerId: `${w.worker.id}-${w.modelName}`, workerId: w.worker.id, workerKey: w.worker.keys.signing.publicKey,
    hotkey: hotkeyFromSeed(new Uint8Array(32).fill(2)).address, sequence: Number.MAX_SAFE_INTEGER, at: Math.floor(Date.now() / 1000), ...over,
  });
  const hk = hotkeyFromSeed(new Uint8Array(32).fill(2));

  it('a cancel signed by another Ed25519 key (forged worker signature) → 403 OFFER_SIGNATURE_WORKER', async () => {
    const w = stack.workers[1]!;
    const impostor = await generateWorkerKey();
    const forged = await signCancel(base(w), impostor.privateKey, hk.secretKey);
    expect(await refusal(await postCancel(w.worker.id, { cancel: toBase64(forged) }))).toEqual([403, 'OFFER_SIGNATURE_WORKER']);
  });

  it("a cancel naming the impostor's own key → 403 OFFER_WORKER_KEY_MISMATCH (not the key bound in the evidence)", async () => {
    const w = stack.workers[1]!;
    const impostor = await generateWorkerKey();
    const forged = await signCancel(base(w, { workerKey: impostor.publicKey }), impostor.privateKey, hk.secretKey);
    expect(await refusal(await postCancel(w.worker.id, { cancel: toBase64(forged) }))).toEqual([403, 'OFFER_WORKER_KEY_MISMATCH']);
  });

  it('the right worker key but a forged hotkey signature → 403 OFFER_SIGNATURE_HOTKEY', async () => {
    const w = stack.workers[1]!;
    const other = hotkeyFromSeed(new Uint8Array(32).fill(9));
    const forged = await signCancel(base(w), w.worker.keys.signing.privateKey, other.secretKey);
    expect(await refusal(await postCancel(w.worker.id, { cancel: toBase64(forged) }))).toEqual([403, 'OFFER_SIGNATURE_HOTKEY']);
  });

  it("validly signed by another operator's hotkey → 403 OFFER_HOTKEY_MISMATCH (the offer's hotkey must withdraw it)", async () => {
    const w = stack.workers[1]!;
    const other = hotkeyFromSeed(new Uint8Array(32).fill(9));
    const c = await signCancel(base(w, { hotkey: other.address }), w.worker.keys.signing.privateKey, other.secretKey);
    expect(await refusal(await postCancel(w.worker.id, { cancel: toBase64(c) }))).toEqual([403, 'OFFER_HOTKEY_MISMATCH']);
  });

  it("posted under another worker's id → 403 OFFER_WORKER_KEY_MISMATCH; another worker's offer id names only the sender's own offer", async () => {
    const [w1, w2] = [stack.workers[0]!, stack.workers[1]!];
    const c = await signCancel(base(w2), w2.worker.keys.signing.privateKey, hk.secretKey);
    expect(await refusal(await postCancel(w1.worker.id, { cancel: toBase64(c) }))).toEqual([403, 'OFFER_WORKER_KEY_MISMATCH']);
    // Offer ids are per worker: w2 can cancel "w1's id" only in its own namespace, where it holds nothing.
    const victimId = `${w1.worker.id}-${w1.modelName}`;
    const foreign = await signCancel(base(w2, { offerId: victimId }), w2.worker.keys.signing.privateKey, hk.secretKey);
    const r = await postCancel(w2.worker.id, { cancel: toBase64(foreign) });
    expect(r.status).toBe(200);
    expect(((await r.json()) as { cancel: { removed: boolean } }).cancel.removed).toBe(false);
    expect((await listed()).some((o) => o.offerId === victimId && o.workerId === w1.worker.id)).toBe(true);
  });

  it('unknown worker → 404 OFFER_UNKNOWN_WORKER; malformed bodies → 400 with their codes', async () => {
    const w = stack.workers[1]!;
    const c = await signCancel(base(w), w.worker.keys.signing.privateKey, hk.secretKey);
    expect(await refusal(await postCancel('w-0000000000000000', { cancel: toBase64(c) }))).toEqual([404, 'OFFER_UNKNOWN_WORKER']);
    expect(await refusal(await postCancel(w.worker.id, 'not json'))).toEqual([400, 'CANCEL_MALFORMED']);
    expect(await refusal(await postCancel(w.worker.id, { cancel: 42 }))).toEqual([400, 'CANCEL_MALFORMED']);
    expect(await refusal(await postCancel(w.worker.id, { cancel: '%%%' }))).toEqual([400, 'BAD_BASE64']);
    expect(await refusal(await postCancel(w.worker.id, { cancel: toBase64(new Uint8Array([0xa0])) }))).toEqual([400, 'OFFER_MALFORMED']);
    // The signed offer is not a cancel (another envelope field, another signing context).
    const offer = (await offerOf(w.modelName))!;
    expect(await refusal(await postCancel(w.worker.id, { cancel: offer.signed }))).toEqual([400, 'OFFER_MALFORMED']);
    expect((await postCancel(w.worker.id, { cancel: 'A'.repeat(20_000) })).status).toBe(413);
  });

  it('after every refusal the offer is still in the book and still served', async () => {
    const w = stack.workers[1]!;
    expect((await offerOf(w.modelName))?.workerId).toBe(w.worker.id);
    expect((await chat(w.modelName))[0]).toBe(200);
    expect(stack.logs.some((l) => l.includes('"market.cancel_refused"') && l.includes('OFFER_SIGNATURE_WORKER'))).toBe(true);
  });
});

describe('withdraw through the worker agent', () => {
  it('removes the offer at once; the model then has no eligible offer; the other worker is untouched', async () => {
    const w = stack.workers[0]!;
    const before = (await offerOf(w.modelName))!;
    expect((await chat(w.modelName))[0]).toBe(200);
    expect(await w.worker.withdraw(w.modelName)).toEqual([{ enclave: stack.enclaveUrl, ok: true, removed: true }]);
    expect(await offerOf(w.modelName)).toBeUndefined();
    expect(await chat(w.modelName)).toEqual([503, 'NO_ELIGIBLE_OFFER']);
    expect((await offerOf(stack.workers[1]!.modelName))?.workerId).toBe(stack.workers[1]!.worker.id);
    // The worker itself stays verified (only its offer left).
    const ws = ((await (await fetch(`${stack.enclaveUrl}/v1/workers`)).json()) as { workers: { id: string }[] }).workers;
    expect(ws.map((x) => x.id)).toContain(w.worker.id);
    withdrawnSequence = before.sequence;
    expect(stack.logs.some((l) => l.includes('"market.offer_cancelled"') && l.includes(w.worker.id))).toBe(true);
  });

  it('neither re-registration nor re-verification brings it back; replaying the cancelled offer is superseded', async () => {
    const w = stack.workers[0]!;
    const regs = () => stack.logs.filter((l) => l.includes('"worker.registered"') && l.includes(w.worker.id)).length;
    const n = regs();
    await w.worker.rotateKeys(); // re-registers at once with a new bundle, and re-signed offers
    await expect.poll(regs, { timeout: 10_000, interval: 20 }).toBeGreaterThan(n);
    expect(await offerOf(w.modelName)).toBeUndefined();
    // Re-verification re-posts what the last registration carried (not the offer), and the tombstone refuses older versions.
    expect(await stack.enclave.registry.reverify(w.worker.id)).toBe(true);
    expect(await offerOf(w.modelName)).toBeUndefined();
    expect(await chat(w.modelName)).toEqual([503, 'NO_ELIGIBLE_OFFER']);
  });

  it('a second withdraw of the same model is accepted and removes nothing', async () => {
    const w = stack.workers[0]!;
    expect(await w.worker.withdraw(w.modelName)).toEqual([{ enclave: stack.enclaveUrl, ok: true, removed: false }]);
  });

  it('restore posts the offer again at a higher sequence and the model is served again', async () => {
    const w = stack.workers[0]!;
    w.worker.restore(w.modelName);
    await expect.poll(async () => (await offerOf(w.modelName))?.workerId, { timeout: 10_000, interval: 20 }).toBe(w.worker.id);
    const back = (await offerOf(w.modelName))!;
    const env = decodeDeterministic(fromBase64(back.signed)) as { offer: Uint8Array };
    expect(decodeOffer(env.offer).sequence).toBe(back.sequence);
    // Above the withdrawn version and the cancel (which the tombstone would otherwise refuse).
    expect(back.sequence).toBeGreaterThan(withdrawnSequence + 1);
    expect((await chat(w.modelName))[0]).toBe(200);
  });
});

describe('an enclave that could not take the cancel', () => {
  it('gets it again after its next registration; a 4xx refusal is not retried', async () => {
    // The worker reaches the enclave through a proxy whose cancel path answers 503 until told otherwise.
    let cancelDown = true;
    const cancelsSeen: number[] = [];
    const proxy = await serve({
      fetch: async (req) => {
        const u = new URL(req.url);
        if (u.pathname.endsWith('/offers/cancel')) {
          cancelsSeen.push(cancelDown ? 503 : 200);
          if (cancelDown) return Response.json({ error: { code: 'TEMPORARILY_DOWN' } }, { status: 503 });
        }
        return fetch(`${stack.enclaveUrl}${u.pathname}${u.search}`, { method: req.method, headers: req.headers, body: req.method === 'GET' ? null : await req.arrayBuffer() });
      },
    });
    const { amd, nvidia } = await simVendors();
    const model = await serve({ fetch: devModelApp({ name: 'gm-dev-late' }).fetch });
    const w = await startWorker({
      upstream: model.url, enclaves: [proxy.url], tee: simProvider({ amd }), gpu: simGpuSource({ signer: nvidia }), log: stack.log, fetch, now: () => new Date(),
      offers: offerSigner({ currency: 'USD', pricePerMInput: 1n, pricePerMOutput: 1n, terms: { kind: 'per-request' }, capacity: 1, ttftMs: 1, tokensPerSecond: 1, hotkeySeed: new Uint8Array(32).fill(7) }),
    });
    try {
      await w.registered;
      expect((await offerOf('gm-dev-late'))?.workerId).toBe(w.id);
      expect(await w.withdraw('gm-dev-late')).toEqual([{ enclave: proxy.url, ok: false, code: 'TEMPORARILY_DOWN', pending: true }]);
      expect((await offerOf('gm-dev-late'))?.workerId).toBe(w.id); // the enclave never saw it
      cancelDown = false;
      await w.rotateKeys(); // the next registration, after which pending cancels are posted again
      await expect.poll(async () => (await offerOf('gm-dev-late')) === undefined, { timeout: 10_000, interval: 20 }).toBe(true);
      expect(cancelsSeen).toEqual([503, 200]);
      // Withdrawn again: accepted at once, nothing left to remove.
      expect(await w.withdraw('gm-dev-late')).toEqual([{ enclave: proxy.url, ok: true, removed: false }]);
    } finally {
      await w.stop();
      await model.close(100);
      await proxy.close(100);
    }
  });
});
