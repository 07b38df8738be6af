/**
 * Registration and identity under attack, through the stack on loopback: a worker's public evidence re-posted with
 * another URL (a proxy that relays the nonce challenge to the real worker) does not move the worker; a replayed or
 * stale registration is refused; another worker taking a victim's offer id first neither blocks the victim's offer
 * nor goes unreported, and an offer the market refuses is named in the registration answer; inference sent straight
 * to a worker (bypassing the enclave, its ledger and receipts) is refused while the enclave's requests are served.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hex, toBase64 } from '../attestation/bytes.ts';
import { serve, type Served } from '../enclave/serve.ts';
import { signRegistration } from '../protocol/registration.ts';
import { hotkeyFromSeed, signOffer, type Offer } from '../protocol/offer.ts';
import { encodeRequest } from '../protocol/bhttp.ts';
import { bhttpRequest } from '../enclave/ohttp/messages.ts';
import { decodeKeyConfigs, encapsulateRequest } from '../protocol/ohttp.ts';
import { connect } from './stack/client.ts';
import { type Stack, startStack } from './stack/harness.ts';

let stack: Stack;
let proxy: Served;
let relayed = 0;

beforeAll(async () => {
  stack = await startStack();
  const victim = stack.workers[0]!.worker.url;
  // The attacker's "worker": relays everything (the nonce challenge included) to the victim.
  proxy = await serve({
    fetch: async (req) => {
      relayed++;
      const u = new URL(req.url);
      return fetch(`${victim}${u.pathname}${u.search}`, { method: req.method, headers: req.headers, ...(req.method === 'GET' ? {} : { body: await req.arrayBuffer() }) });
    },
  });
}, 60_000);
afterAll(async () => {
  await proxy?.close(100);
  await stack?.stop();
});

const post = async (body: unknown): Promise<{ status: number; json: Record<string, any> }> => {
  const r = await fetch(`${stack.enclaveUrl}/v1/workers`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: r.status, json: (await r.json()) as Record<string, any> };
};
const publicBundle = async (workerUrl: string) => new Uint8Array(await (await fetch(`${workerUrl}/v1/attestation`)).arrayBuffer());

describe('a worker registration cannot be hijacked', () => {
  it("re-posting a live worker's public bundle with a proxy URL is refused, and the worker keeps its URL and models", async () => {
    const v = stack.workers[0]!;
    const before = stack.enclave.registry.usable(v.worker.id)!;
    const bundle = await publicBundle(v.worker.url);
    const time = Date.now();
    const claims = { url: proxy.url, models: ['hijacked'], offers: [], bundle, time };
    // Unsigned, signed by a key of the attacker's own, or carrying nothing at all.
    const attacker = await crypto.subtle.generateKey({ name: 'Ed25519' }, false, ['sign', 'verify']) as CryptoKeyPair;
    for (const signature of [new Uint8Array(64), await signRegistration(claims, attacker.privateKey)]) {
      const r = await post({ url: proxy.url, bundle: toBase64(bundle), models: ['hijacked'], offers: [], time, signature: toBase64(signature) });
      expect([r.status, r.json.error?.code]).toEqual([403, 'REGISTRATION_SIGNATURE']);
    }
    expect((await post({ url: proxy.url, bundle: toBase64(bundle), models: ['hijacked'] })).json.error?.code).toBe('REGISTRATION_MALFORMED');
    // The victim's own signature over its genuine registration does not cover another URL.
    const genuine = { url: v.worker.url, models: [v.modelName], offers: [], bundle, time };
    const stolen = await signRegistration(genuine, v.worker.keys.signing.privateKey);
    expect((await post({ url: proxy.url, bundle: toBase64(bundle), models: [v.modelName], offers: [], time, signature: toBase64(stolen) })).json.error?.code).toBe('REGISTRATION_SIGNATURE');
    expect(relayed).toBe(0); // refused before the enclave challenged anything
    const after = stack.enclave.registry.usable(v.worker.id)!;
    expect(after.url).toBe(before.url);
    expect(after.models).toEqual(before.models);
  });

  it('a replay of an older registration, or one signed far from the enclave clock, is refused', async () => {
    const v = stack.workers[0]!;
    const w = stack.enclave.registry.usable(v.worker.id)!;
    const bundle = await publicBundle(v.worker.url);
    const signed = async (time: number) => {
      const claims = { url: v.worker.url, models: [v.modelName], offers: [], bundle, time };
      return post({ ...claims, bundle: toBase64(bundle), signature: toBase64(await signRegistration(claims, v.worker.keys.signing.privateKey)) });
    };
    expect((await signed(w.registeredAt)).json.error?.code).toBe('REGISTRATION_REPLAYED');
    expect((await signed(Date.now() - 10 * 60_000)).json.error?.code).toBe('REGISTRATION_STALE');
    expect((await signed(Date.now() + 10 * 60_000)).json.error?.code).toBe('REGISTRATION_STALE');
  });
});

describe('offer ids are per worker, and refused offers are reported', () => {
  const offerOf = (w: Stack['workers'][number], over: Partial<Offer>): Promise<Uint8Array> => {
    const now = Math.floor(Date.now() / 1000);
    return signOffer({
      v: 1, offerId: `${w.worker.id}-${w.modelName}`, sequence: now + 1_000_000, workerId: w.worker.id, workerKey: w.worker.keys.signing.publicKey,
      hotkey: hotkeyFromSeed(new Uint8Array(32).fill(2)).address, model: w.modelName, currency: 'USD', pricePerMInput: 1n, pricePerMOutput: 1n,
      terms: { kind: 'per-request' }, capacity: 1, ttftMs: 1, tokensPerSecond: 1, validFrom: now - 60, validUntil: now + 3600, ...over,
    }, w.worker.keys.signing.privateKey, hotkeyFromSeed(new Uint8Array(32).fill(2)).secretKey);
  };
  const register = async (w: Stack['workers'][number], offers: Uint8Array[]) => {
    const bundle = await publicBundle(w.worker.url);
    const claims = { url: w.worker.url, models: [w.modelName], offers, bundle, time: Date.now() };
    return post({ ...claims, bundle: toBase64(bundle), offers: offers.map(toBase64), signature: toBase64(await signRegistration(claims, w.worker.keys.signing.privateKey)) });
  };
  const listed = async () => ((await (await fetch(`${stack.enclaveUrl}/v1/market/offers`)).json()) as { offers: { offerId: string; workerId: string; sequence: number }[] }).offers;

  it("a squatter registering the victim's offer id first does not block the victim's renewals", async () => {
    const [victim, squatter] = [stack.workers[0]!, stack.workers[1]!];
    // An offer id the victim will use but has not posted yet (e.g. for a model it is about to serve).
    const victimOfferId = `${victim.worker.id}-next`;
    const squat = await register(squatter, [await offerOf(squatter, { offerId: victimOfferId })]);
    expect(squat.status).toBe(200);
    expect(squat.json.worker.offers.refused).toEqual([]);
    // The victim posts it at a lower sequence than the squatter's: taken, and the answer says nothing was refused.
    const renewed = await register(victim, [await offerOf(victim, { offerId: victimOfferId, sequence: Math.floor(Date.now() / 1000) + 10 })]);
    expect(renewed.status).toBe(200);
    expect(renewed.json.worker.offers).toEqual({ posted: 1, refused: [] });
    const mine = (await listed()).filter((o) => o.offerId === victimOfferId);
    expect(mine.map((o) => o.workerId).sort()).toEqual([victim.worker.id, squatter.worker.id].sort());
  });

  it('an offer the market refuses is named in the registration answer, with its code', async () => {
    const w = stack.workers[1]!;
    const now = Math.floor(Date.now() / 1000);
    const good = await offerOf(w, { sequence: now + 3_000_000 });
    const expired = await offerOf(w, { offerId: 'old', validFrom: now - 7200, validUntil: now - 3600 });
    const r = await register(w, [good, expired]);
    expect(r.status).toBe(200);
    expect(r.json.worker.offers.posted).toBe(2);
    expect(r.json.worker.offers.refused).toHaveLength(1);
    expect(r.json.worker.offers.refused[0].index).toBe(1);
    expect(r.json.worker.offers.refused[0].code).toMatch(/^OFFER_/);
  });
});

describe('a worker serves only the enclaves it registered with', () => {
  it('inference straight at a worker is refused; the same model through the enclave is served', async () => {
    const w = stack.workers[1]!;
    const config = decodeKeyConfigs(new Uint8Array(await (await fetch(`${w.worker.url}/.well-known/ohttp-gateway`)).arrayBuffer()))[0]!;
    const body = new TextEncoder().encode(JSON.stringify({ model: w.modelName, messages: [{ role: 'user', content: 'free?' }], max_tokens: 3 }));
    const { encapsulated } = await encapsulateRequest(config, encodeRequest(bhttpRequest('POST', '/v1/chat/completions', [['content-type', 'application/json']], body)));
    const before = w.requestsAtSocket();
    const direct = await fetch(`${w.worker.url}/v1/ohttp`, { method: 'POST', headers: { 'content-type': 'message/ohttp-req' }, body: encapsulated as Uint8Array<ArrayBuffer> });
    expect(direct.status).toBe(401);
    expect(((await direct.json()) as { error?: { code?: string } }).error?.code).toBe('WORKER_AUTH_REQUIRED');
    const forged = await fetch(`${w.worker.url}/v1/ohttp`, { method: 'POST', headers: { 'content-type': 'message/ohttp-req', 'gm-worker-auth': `v1 ${'0'.repeat(16)} ${'0'.repeat(64)}` }, body: encapsulated as Uint8Array<ArrayBuffer> });
    expect(forged.status).toBe(401);
    expect(w.requestsAtSocket() - before).toBe(2);
    const c = await connect(stack.enclaveUrl);
    const r = await c.post('/v1/chat/completions', { model: w.modelName, messages: [{ role: 'user', content: 'hi' }], max_tokens: 3 });
    expect(r.status).toBe(200);
  });

  it("the credential appears in no log line and no public listing", async () => {
    const listing = await (await fetch(`${stack.enclaveUrl}/v1/workers`)).text();
    for (const w of stack.workers) {
      const credential = stack.enclave.registry.usable(w.worker.id)!.credential;
      for (const form of [hex(credential), toBase64(credential)]) {
        expect(stack.logs.some((l) => l.includes(form))).toBe(false);
        expect(listing.includes(form)).toBe(false);
      }
    }
  });
});
