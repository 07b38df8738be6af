/**
 * Whole stack on loopback in sim mode: enclave, two workers, two dev-models, and a client built on the
 * protocol module. Streaming and non-streaming answers are the dev-model's exact tokens; workers with bad evidence
 * are refused with the reason and never receive a request; a worker dying mid-stream ends the stream with a clear
 * error event; a relay flipping a byte is detected; oversized bodies get 413 before decryption; no prompt bytes in
 * logs or metrics.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseReceiptEnvelope, parseReceiptHeader, verifyReceipt } from '../protocol/receipt.ts';
import { devAnswer } from '../worker/dev-model/server.ts';
import { connect, readSse, type TestClient } from './stack/client.ts';
import { type Stack, startStack } from './stack/harness.ts';

const PROMPT = 'PROMPT-CANARY-7f3a9c: the secret plan is to paint the moon teal';
const OPERATOR_TOKEN = 'stack-operator-token-0123456789';

describe('stack: enclave + 2 workers + 2 dev-models (sim)', () => {
  let s: Stack;
  let client: TestClient;
  beforeAll(async () => {
    s = await startStack({ enclave: { operatorToken: OPERATOR_TOKEN } });
    client = await connect(s.enclaveUrl);
  });
  afterAll(async () => {
    await s?.stop();
  });

  it('lists the models the verified workers offer', async () => {
    const r = await client.get('/v1/models');
    const j = (await new Response(r.body).json()) as { data: { id: string }[] };
    expect(j.data.map((m) => m.id)).toEqual(['gm-dev-1', 'gm-dev-2']);
  });

  it('non-streaming chat completion returns the exact tokens', async () => {
    const r = await client.post('/v1/chat/completions', { model: 'gm-dev-2', messages: [{ role: 'user', content: PROMPT }], max_tokens: 12 });
    expect(r.status).toBe(200);
    const j = (await new Response(r.body).json()) as { choices: { message: { content: string } }[] };
    expect(j.choices[0]!.message.content).toBe(devAnswer('gm-dev-2', 12));
    // the signed receipt rides in the encrypted response, signed by the attested receipt key, marked sim
    const env = parseReceiptHeader(r.headers.get('gm-receipt')!);
    const v = await verifyReceipt(env.signed, s.enclave.keys.receipt.publicKey);
    expect(v.receipt.sim).toBe(true);
    expect(v.receipt.outputTokens).toBe(12);
  });

  it('streaming chat completion returns the exact tokens, event by event', async () => {
    const r = await client.post('/v1/chat/completions', { model: 'gm-dev-1', stream: true, messages: [{ role: 'user', content: PROMPT }], max_tokens: 30 }, { stream: true });
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toBe('text/event-stream');
    const { text, events } = await readSse(r.body);
    expect(text).toBe(devAnswer('gm-dev-1', 30));
    expect(events.at(-1)!.data).toBe('[DONE]');
    const receipt = events.at(-2)!;
    expect(receipt.event).toBe('gm.receipt');
    const v = await verifyReceipt(parseReceiptEnvelope(JSON.parse(receipt.data)).signed, s.enclave.keys.receipt.publicKey);
    expect(v.receipt.sim).toBe(true);
  });

  it('completions and embeddings go through too', async () => {
    const c = await client.post('/v1/completions', { model: 'gm-dev-1', prompt: PROMPT, max_tokens: 4 });
    expect(((await new Response(c.body).json()) as { choices: { text: string }[] }).choices[0]!.text).toBe(devAnswer('gm-dev-1', 4));
    const e = await client.post('/v1/embeddings', { model: 'gm-dev-2', input: PROMPT });
    expect(((await new Response(e.body).json()) as { data: { embedding: number[] }[] }).data[0]!.embedding).toHaveLength(8);
  });

  it('an unknown model is a clear error, not a fallback', async () => {
    const r = await client.post('/v1/chat/completions', { model: 'nope', messages: [{ role: 'user', content: PROMPT }] });
    expect(r.status).toBe(404);
    expect(((await new Response(r.body).json()) as { error: { code: string; param: string } }).error).toMatchObject({ code: 'model_not_found', param: 'model' });
  });

  it('never logs or exports the prompt, and marks every log line sim', async () => {
    const metrics = await (await fetch(`${s.enclaveUrl}/metrics`)).text();
    expect(metrics).toContain('gm_workers{state="verified"} 2');
    expect(metrics).not.toContain('gm_dispatch_total');
    const operator = await (await fetch(`${s.enclaveUrl}/v1/operator/metrics`, { headers: { authorization: `Bearer ${OPERATOR_TOKEN}` } })).text();
    expect(operator).toMatch(/gm_dispatch_total\{outcome="ok",worker="w-[0-9a-f]{16}"\} \d+/);
    // The workers' /metrics too: they decrypt the same prompts.
    const workerMetrics = await Promise.all(s.workers.map(async (w) => (await fetch(`${w.worker.url}/metrics`)).text()));
    expect(workerMetrics.every((m) => m.length > 0)).toBe(true);
    const all = s.logs.join('') + metrics + operator + workerMetrics.join('');
    for (const needle of ['PROMPT-CANARY', 'paint the moon', Buffer.from(PROMPT).toString('base64').slice(0, 20)]) expect(all).not.toContain(needle);
    expect(s.logs.length).toBeGreaterThan(5);
    expect(s.logs.every((l) => JSON.parse(l).sim === true)).toBe(true);
    expect(s.logs.some((l) => JSON.parse(l).event === 'worker.verified')).toBe(true);
    expect(s.logs.some((l) => JSON.parse(l).event === 'request.routed')).toBe(true);
  });

  it('keeps routing to a worker across its OHTTP key rotation (re-registration carries the new config)', async () => {
    const w = s.workers[0]!.worker;
    const before = s.enclave.registry.usable(w.id)!.keyConfig.keyId;
    const registered = () => s.logs.filter((l) => l.includes('"worker.verified"') && l.includes(w.id)).length;
    const n = registered();
    await w.rotateKeys();
    // Wait for the re-registration itself (the enclave logs worker.verified), not a fixed 2 s: under CPU load the
    // attestation round trip, or a registration retried after a 503 (verification limit), takes longer.
    await expect.poll(registered, { timeout: 20_000, interval: 20 }).toBeGreaterThan(n);
    expect(s.enclave.registry.usable(w.id)!.keyConfig.keyId).not.toBe(before);
    const r = await client.post('/v1/chat/completions', { model: 'gm-dev-1', messages: [{ role: 'user', content: PROMPT }], max_tokens: 3 });
    expect(((await new Response(r.body).json()) as { choices: { message: { content: string } }[] }).choices[0]!.message.content).toBe(devAnswer('gm-dev-1', 3));
  });

  it('says sim in a response header', async () => {
    const r = await fetch(`${s.enclaveUrl}/healthz`);
    expect(r.headers.get('gm-tee')).toBe('sim');
  });
});
