/**
 * The enclave's public listings (docs/operator.md §2, docs/market.md "Listing"): `GET /v1/workers` (claims from the
 * verified evidence, nothing secret, no URL) and `GET /v1/market/offers` (the live signed offers of verified workers
 * with their digests; nothing derived from requests), and the host shim's status page in front of a separate
 * enclave showing them, each offer "verified" only after the shim checked its signatures, and REJECTED with the
 * code when the bytes it is given were tampered with.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fromBase64, fromHex, hex, toBase64 } from '../attestation/bytes.ts';
import { parseClientPolicy, simPolicyDoc } from '../client/policy.ts';
import { hostApp } from '../host/app.ts';
import { EnclaveGate } from '../host/gate.ts';
import { startHost, type RunningHost } from '../host/main.ts';
import { verifySignedOffer } from '../protocol/offer.ts';
import { connect } from './stack/client.ts';
import { type Stack, startStack } from './stack/harness.ts';

let stack: Stack;
let host: RunningHost;
let dir: string;

const WORKER_KEYS = ['id', 'state', 'platform', 'measurement', 'sim', 'evidenceDigest', 'workerKey', 'models', 'gpus', 'verifiedAt', 'expiresAt'].sort();
const OFFER_KEYS = ['offerId', 'sequence', 'workerId', 'workerKey', 'hotkey', 'model', 'currency', 'pricePerMInput', 'pricePerMOutput', 'terms', 'capacity', 'ttftMs', 'tokensPerSecond', 'validFrom', 'validUntil', 'digest', 'quotedPerMInput', 'quotedPerMOutput', 'feeBasisPoints', 'evidenceDigest', 'sim', 'signed'].sort();

type Json = Record<string, unknown>;
const getJson = async (path: string): Promise<{ status: number; type: string | null; body: Json }> => {
  const r = await fetch(`${stack.enclaveUrl}${path}`);
  return { status: r.status, type: r.headers.get('content-type'), body: (await r.json()) as Json };
};

beforeAll(async () => {
  stack = await startStack();
  dir = await mkdtemp(join(tmpdir(), 'gm-listing-'));
  host = await startHost({ enclave: stack.enclaveUrl, policy: parseClientPolicy(simPolicyDoc()), allowSim: true, trust: undefined, cacheDir: join(dir, 'cache'), checkIntervalMs: 3_600_000 });
}, 60_000);
afterAll(async () => {
  await host?.close();
  await stack?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('enclave listings', () => {
  it('GET /v1/workers lists the verified workers with public claims only', async () => {
    const r = await getJson('/v1/workers');
    expect(r.status).toBe(200);
    expect(r.type).toMatch(/^application\/json/);
    const ws = r.body.workers as Json[];
    expect(ws.map((w) => w.id).sort()).toEqual(stack.workers.map((w) => w.worker.id).sort());
    for (const w of ws) {
      expect(Object.keys(w).sort()).toEqual(WORKER_KEYS);
      const sw = stack.workers.find((x) => x.worker.id === w.id)!;
      expect(w).toMatchObject({ state: 'verified', platform: 'sim-sev-snp', sim: true, models: [sw.modelName], workerKey: hex(sw.worker.keys.signing.publicKey) });
      expect(w.evidenceDigest).toMatch(/^[0-9a-f]{64}$/);
      // The verified GPU claims an operator reads, nothing per device (no serial, nonce or measurements).
      expect(w.gpus).toEqual([{ arch: 'HOPPER', hwmodel: 'SIM GH100 A01 GSP BROM', driverVersion: '550.90.07', ccMode: 'on' }]);
      expect(JSON.stringify(w)).not.toContain('127.0.0.1'); // no worker URLs
    }
  });

  it('GET /v1/market/offers lists each live signed offer; its bytes verify against the listed worker key; nothing from traffic', async () => {
    const c = await connect(stack.enclaveUrl);
    const served = await c.post('/v1/chat/completions', { model: stack.workers[0]!.modelName, messages: [{ role: 'user', content: 'a secret prompt' }], max_tokens: 4 });
    expect(served.status).toBe(200);
    await new Response(served.body).text();
    const r = await getJson('/v1/market/offers');
    expect(r.status).toBe(200);
    expect(r.type).toMatch(/^application\/json/);
    const offers = r.body.offers as Json[];
    expect(offers.map((o) => o.model).sort()).toEqual(stack.workers.map((w) => w.modelName).sort());
    const workers = (await getJson('/v1/workers')).body.workers as Json[];
    for (const o of offers) {
      expect(Object.keys(o).sort()).toEqual(OFFER_KEYS);
      const key = workers.find((w) => w.id === o.workerId)!.workerKey as string;
      const v = await verifySignedOffer(fromBase64(o.signed as string), { workerPublicKey: fromHex(key), now: Date.now() });
      expect(hex(v.digest)).toBe(o.digest);
      expect(v.offer.offerId).toBe(o.offerId);
      expect(o.pricePerMInput).toBe(v.offer.pricePerMInput.toString());
    }
    expect(JSON.stringify(r.body)).not.toMatch(/secret prompt|inFlight|errorRate|samples|account|acct_/);
  });

  it('with the first-verified router there is no book: 404 NOT_FOUND, and the worker list still answers', async () => {
    const s = await startStack({ router: 'first', workers: [{}] });
    try {
      const r = await fetch(`${s.enclaveUrl}/v1/market/offers`);
      expect(r.status).toBe(404);
      expect(((await r.json()) as { code: string }).code).toBe('NOT_FOUND');
      const c = await fetch(`${s.enclaveUrl}/v1/workers/${s.workers[0]!.worker.id}/offers/cancel`, { method: 'POST', body: '{}' });
      expect(c.status).toBe(404);
      expect(((await (await fetch(`${s.enclaveUrl}/v1/workers`)).json()) as { workers: unknown[] }).workers).toHaveLength(1);
    } finally {
      await s.stop();
    }
  });
});

describe('host status page in front of a separate enclave', () => {
  it('shows the verified workers and each live offer as signature-verified', async () => {
    const html = await (await fetch(`${host.url}/`)).text();
    expect(html).toContain('id="gate" class="state-open">OPEN');
    expect(html).toMatch(/<table id="worker-states">.*<td data-label="state">verified<\/td><td data-label="workers">2<\/td>/s);
    for (const w of stack.workers) expect(html).toMatch(new RegExp(`<table id="workers">.*<code>${w.worker.id}</code>`, 's'));
    const offers = html.slice(html.indexOf('<table id="offers">'));
    expect(offers.match(/<span class="st st-pass">verified<\/span>/g)).toHaveLength(2);
    // Prices per 1M tokens in currency units (the stack's offers: 100000 and 200000 micro-USD), never micro-units.
    expect(offers).toContain('<th>input / 1M tokens</th>');
    expect(offers.match(/<td data-label="input \/ 1M tokens">0\.1 USD<\/td><td data-label="output \/ 1M tokens">0\.2 USD<\/td>/g)).toHaveLength(2);
    expect(offers).not.toContain('100000 USD');
    expect(offers).not.toContain('REJECTED');
    expect(html).not.toContain('signed offer details not listed');
    const j = (await (await fetch(`${host.url}/status.json`)).json()) as { offers: { signature: string; digest: string }[] };
    expect(j.offers.map((o) => o.signature)).toEqual(['verified', 'verified']);
  });

  it('tampered listings are shown REJECTED with the code, never as verified', async () => {
    const gate = new EnclaveGate({ check: async () => ({ report: { subject: 'enclave', verified: true, checks: [] }, summary: {} }), intervalMs: 3_600_000 });
    await gate.start();
    try {
      // The shim's fetch of the listings goes through a tamperer: one offer's worker signature flipped; the other's
      // bytes swapped with the first's (signed by another worker's key); a view citing another digest; no bytes.
      const tamper = async (input: string, init?: RequestInit): Promise<Response> => {
        const r = await fetch(input, init);
        if (!input.endsWith('/v1/market/offers')) return r;
        const j = (await r.json()) as { offers: Json[] };
        const [a, b] = j.offers as [Json, Json];
        const bytes = fromBase64(a.signed as string);
        bytes[bytes.length - 1]! ^= 1; // the last field of the envelope is workerSig
        j.offers = [{ ...a, signed: toBase64(bytes) }, { ...b, signed: a.signed }, { ...b, digest: '00'.repeat(32) }, { ...b, offerId: 'x', signed: undefined }];
        return Response.json(j);
      };
      const app = hostApp({ relay: { enclave: stack.enclaveUrl }, gate, listings: async () => ({ workers: undefined, offers: undefined }), fetch: tamper });
      const j = (await (await app.request('/status.json')).json()) as { offers: { signature: string }[] };
      expect(j.offers.map((o) => o.signature)).toEqual(['REJECTED OFFER_SIGNATURE_WORKER', 'REJECTED OFFER_WORKER_KEY_MISMATCH', 'REJECTED OFFER_VIEW_MISMATCH', 'REJECTED OFFER_NOT_SIGNED']);
      const html = await (await app.request('/')).text();
      expect(html).not.toContain('<span class="st st-pass">verified</span>');
      expect(html).toContain('<span class="st st-fail">REJECTED OFFER_SIGNATURE_WORKER</span>');
    } finally {
      gate.stop();
    }
  });
});
