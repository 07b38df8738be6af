/**
 * Failures on the routing path: a worker failing before the first token is failed over; one dying
 * mid-stream ends the stream with a clear `event: error`; a relay that flips a byte is detected by the client
 * (tamper code); oversized bodies get 413 before any decryption; a client disconnect cancels the upstream.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isGmError } from '../attestation/errors.ts';
import { fetchTransport, type Transport } from '../enclave/ohttp/client.ts';
import { devAnswer } from '../worker/dev-model/server.ts';
import { connect, readSse, type TestClient } from './stack/client.ts';
import { type Stack, startStack } from './stack/harness.ts';

const PROMPT = 'FAILURE-CANARY: a prompt that must stay sealed';
const chat = (model: string, n: number, stream: boolean) => ({ model, stream, messages: [{ role: 'user', content: PROMPT }], max_tokens: n });

describe('stack failures', () => {
  let s: Stack;
  let client: TestClient;
  beforeAll(async () => {
    s = await startStack({
      workers: [
        { model: { name: 'flaky', failAfter: 0 }, offer: { pricePerMInput: 1n, pricePerMOutput: 1n } }, // cheapest, dies before its first token
        { model: { name: 'flaky' } },
        { model: { name: 'dies', failAfter: 5, tokenMs: 2 } }, // dies after 5 tokens
        { model: { name: 'slow', tokenMs: 20 } },
      ],
      enclave: { limits: { maxRequestBytes: 64 * 1024 } },
    });
    client = await connect(s.enclaveUrl);
  });
  afterAll(async () => {
    await s?.stop();
  });

  it('fails over to the next worker when the first fails before the first token', async () => {
    const r = await client.post('/v1/chat/completions', chat('flaky', 8, true), { stream: true });
    const { text } = await readSse(r.body);
    expect(text).toBe(devAnswer('flaky', 8));
    expect(s.workers[0]!.requestsAtSocket()).toBe(1);
    expect(s.workers[1]!.requestsAtSocket()).toBe(1);
  });

  it('does not fail over when the user disallowed fallbacks', async () => {
    const r = await client.post('/v1/chat/completions', { ...chat('flaky', 8, true), provider: { allow_fallbacks: false } }, { stream: true });
    expect(r.status).toBe(503);
    expect(s.workers[1]!.requestsAtSocket()).toBe(1);
  });

  it('ends the stream with a clear error event when the worker dies after the first token', async () => {
    const r = await client.post('/v1/chat/completions', chat('dies', 50, true), { stream: true });
    expect(r.status).toBe(200);
    const { text, events } = await readSse(r.body);
    expect(text).toBe(devAnswer('dies', 5));
    const last = events.at(-1)!;
    expect(last.event).toBe('error');
    expect(JSON.parse(last.data).error.code).toBe('WORKER_FAILED_MID_STREAM');
    expect(events.some((e) => e.data === '[DONE]')).toBe(false);
  });

  it('ends the stream with a clear error event when the worker process goes away mid-stream', async () => {
    const r = await client.post('/v1/chat/completions', chat('slow', 100, true), { stream: true });
    const reader = r.body.getReader();
    const first = await reader.read();
    expect(first.done).toBe(false);
    s.workers[3]!.worker.served.server.closeAllConnections(); // the worker's sockets drop
    let rest = new TextDecoder().decode(first.value);
    for (;;) {
      const x = await reader.read();
      if (x.done) break;
      rest += new TextDecoder().decode(x.value);
    }
    expect(rest).toContain('event: error');
    expect(rest).toContain('WORKER_FAILED_MID_STREAM');
  });

  it('detects a relay that flips a byte of a response chunk (tamper code)', async () => {
    const flipAt = 60;
    const base = fetchTransport(`${s.enclaveUrl}/v1/ohttp`);
    const flipping: Transport = async (body, ct, signal) => {
      const t = await base(body, ct, signal);
      return {
        ...t,
        body: {
          async *[Symbol.asyncIterator]() {
            let seen = 0;
            for await (const c of t.body) {
              const out = c.slice();
              if (seen <= flipAt && flipAt < seen + c.length) out[flipAt - seen] = out[flipAt - seen]! ^ 0x01;
              seen += c.length;
              yield out;
            }
          },
        },
      };
    };
    const tampered = await connect(s.enclaveUrl, { transport: flipping });
    const err = await (async () => {
      const r = await tampered.post('/v1/chat/completions', chat('flaky', 20, true), { stream: true });
      await readSse(r.body);
    })().catch((e: unknown) => e);
    expect(isGmError(err)).toBe(true);
    expect((err as { code: string }).code).toMatch(/^CHUNKED_(DECRYPT_FAILED|REORDERED|DROPPED|DUPLICATE)$/);
    const plainErr = await tampered.post('/v1/chat/completions', chat('flaky', 3, false)).catch((e: unknown) => e);
    expect(isGmError(plainErr, 'OHTTP_DECRYPT_FAILED')).toBe(true);
  });

  it('answers 413 to oversized bodies before any decryption (announced or streamed)', async () => {
    const big = new Uint8Array(65 * 1024).fill(0x41); // not even a valid encapsulation: a decryption attempt would say 400
    const r1 = await fetch(`${s.enclaveUrl}/v1/ohttp`, { method: 'POST', headers: { 'content-type': 'message/ohttp-req' }, body: big });
    expect(r1.status).toBe(413);
    expect(((await r1.json()) as { code: string; error: { code: string } }).error.code).toBe('TOO_LARGE');
    const streamed = new ReadableStream<Uint8Array>({
      start(c) {
        for (let i = 0; i < 17; i++) c.enqueue(new Uint8Array(4096).fill(0x42));
        c.close();
      },
    });
    const r2 = await fetch(`${s.enclaveUrl}/v1/ohttp`, { method: 'POST', headers: { 'content-type': 'message/ohttp-chunked-req' }, body: streamed, duplex: 'half' } as RequestInit);
    expect(r2.status).toBe(413);
    const small = await fetch(`${s.enclaveUrl}/v1/ohttp`, { method: 'POST', headers: { 'content-type': 'message/ohttp-req' }, body: new Uint8Array(100).fill(0x41) });
    expect(small.status).toBe(400); // same garbage under the limit reaches decryption and fails there
    const metrics = await (await fetch(`${s.enclaveUrl}/metrics`)).text();
    expect(metrics).toContain('gm_errors_total{code="TOO_LARGE"} 2');
  });

  it('cancels the upstream when the client goes away', async () => {
    const ac = new AbortController();
    const before = s.logs.filter((l) => l.includes('"request.cancelled"')).length;
    const r = await client.post('/v1/chat/completions', chat('slow', 1000, true), { stream: true, signal: ac.signal });
    const reader = r.body.getReader();
    await reader.read();
    ac.abort();
    await reader.cancel().catch(() => undefined);
    // The cancellation reaches the enclave asynchronously: wait for its log line (not a fixed 1 s, too short under
    // CPU load), and then there must be exactly one.
    const cancelled = () => s.logs.filter((l) => l.includes('"request.cancelled"')).length;
    await expect.poll(cancelled, { timeout: 20_000, interval: 20 }).not.toBe(before);
    expect(cancelled()).toBe(before + 1);
  });

  it('kept every prompt out of the logs', () => {
    expect(s.logs.join('')).not.toContain('FAILURE-CANARY');
  });
});
