/**
 * The attestation gate (docs/design.md §1, fail closed): workers whose evidence fails the worker policy are
 * refused with a clear reason, and plaintext never reaches a worker that is not verified: the refused workers, and a
 * verified worker after it disappeared, see zero gateway requests at their sockets.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { devAnswer } from '../worker/dev-model/server.ts';
import { connect, type TestClient } from './stack/client.ts';
import { type Stack, startStack } from './stack/harness.ts';

const PROMPT = 'REFUSAL-CANARY: do not send me anywhere unverified';
const ask = (c: TestClient, model: string) => c.post('/v1/chat/completions', { model, messages: [{ role: 'user', content: PROMPT }], max_tokens: 3 });

describe('stack: refused workers never see plaintext', () => {
  let s: Stack;
  let client: TestClient;
  beforeAll(async () => {
    s = await startStack({
      workers: [
        { model: { name: 'good' } },
        { model: { name: 'bad' }, report: { measurement: new Uint8Array(48).fill(0x11) }, expectRefusal: true },
        { model: { name: 'bad' }, gpu: { ccMode: 'off' }, expectRefusal: true },
        { model: { name: 'bad' }, gpu: { nonceOverride: new Uint8Array(32).fill(7) }, expectRefusal: true },
        { model: { name: 'bad' }, gpu: { ccMode: 'devtools' }, expectRefusal: true },
        { model: { name: 'bad' }, report: { policy: 0x30000n | (1n << 19n) }, expectRefusal: true },
      ],
    });
    client = await connect(s.enclaveUrl);
  });
  afterAll(async () => {
    await s?.stop();
  });

  it('refuses each with the reason', async () => {
    const codes = await Promise.all(s.workers.map((w) => w.refusal));
    expect(codes[0]).toBeUndefined();
    // bundle.cpu carries the platform code of the failing check; the worker sees exactly that code.
    expect(codes[1]).toBe('SNP_POLICY_MEASUREMENT');
    expect(codes[2]).toBe('NVIDIA_CC_MODE_OFF');
    expect(codes[3]).toBe('NVIDIA_NONCE_MISMATCH');
    expect(codes[4]).toBe('NVIDIA_DEVTOOLS_ON');
    expect(codes[5]).toBe('SNP_POLICY_DEBUG');
    const refused = s.logs.map((l) => JSON.parse(l) as { event: string; code?: string }).filter((l) => l.event === 'worker.refused');
    expect(refused.map((r) => r.code).sort()).toEqual([...codes.slice(1)].sort());
  });

  it('serves the verified worker and sends nothing to the refused ones', async () => {
    const ok = await ask(client, 'good');
    expect(((await new Response(ok.body).json()) as { choices: { message: { content: string } }[] }).choices[0]!.message.content).toBe(devAnswer('good', 3));
    const r = await ask(client, 'bad');
    // Only refused workers offered it: no verified worker ever did, so for clients the model does not exist here.
    expect(r.status).toBe(404);
    expect(((await new Response(r.body).json()) as { error: { code: string } }).error.code).toBe('model_not_found');
    expect(s.workers[0]!.requestsAtSocket()).toBe(1);
    for (const w of s.workers.slice(1)) expect(w.requestsAtSocket()).toBe(0);
    const models = (await new Response((await client.get('/v1/models')).body).json()) as { data: { id: string }[] };
    expect(models.data.map((m) => m.id)).toEqual(['good']);
  });

  it('drops a worker that disappears and then sends it nothing', async () => {
    const w = s.workers[0]!;
    await w.worker.stop();
    expect(await s.enclave.registry.reverify(w.worker.id)).toBe(false);
    const before = w.requestsAtSocket();
    const r = await ask(client, 'good');
    expect(r.status).toBe(503);
    expect(w.requestsAtSocket()).toBe(before);
    expect(s.logs.some((l) => JSON.parse(l).event === 'worker.dropped')).toBe(true);
    expect(s.logs.join('')).not.toContain('REFUSAL-CANARY');
  });
});
