/**
 * A client disconnect cancels the upstream request all the way down (docs/operator.md §2): client → enclave →
 * worker → the inference server. test/stack-failures.test.ts sees the enclave log `request.cancelled`; this test
 * looks at the far end instead: an OpenAI-compatible upstream
 * that streams slowly and records when its response connection goes away before the answer is complete.
 */
import { Hono } from 'hono';
import type { ServerResponse } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serve, type Served } from '../enclave/serve.ts';
import { connect, type TestClient } from './stack/client.ts';
import { type Stack, startStack } from './stack/harness.ts';

const MODEL = 'cancel-me';
const TOKENS = 2_000; // 10 ms apart: 20 s if nobody cancels
let upstream: Served;
let s: Stack;
let client: TestClient;
const state = { requests: 0, produced: 0, abortedEarly: 0, finished: 0 };

beforeAll(async () => {
  const app = new Hono<{ Bindings: { outgoing: ServerResponse } }>();
  app.get('/v1/models', (c) => c.json({ object: 'list', data: [{ id: MODEL, object: 'model', created: 0, owned_by: 'test' }] }));
  app.post('/v1/chat/completions', async (c) => {
    await c.req.json();
    state.requests++;
    const out = c.env.outgoing;
    out.on('close', () => void (out.writableFinished ? state.finished++ : state.abortedEarly++));
    const te = new TextEncoder();
    let i = 0;
    const body = new ReadableStream<Uint8Array>({
      async pull(ctl) {
        if (i >= TOKENS) {
          ctl.enqueue(te.encode('data: [DONE]\n\n'));
          ctl.close();
          return;
        }
        if (i > 0) await new Promise((r) => setTimeout(r, 10));
        ctl.enqueue(te.encode(`data: ${JSON.stringify({ id: 'x', object: 'chat.completion.chunk', created: 0, model: MODEL, choices: [{ index: 0, delta: { content: `t${i} ` }, finish_reason: null }] })}\n\n`));
        i++;
        state.produced = i;
      },
    });
    return new Response(body, { headers: { 'content-type': 'text/event-stream' } });
  });
  upstream = await serve({ fetch: app.fetch as never });
  s = await startStack({ workers: [{ upstream: upstream.url, model: { name: MODEL } }] });
  client = await connect(s.enclaveUrl);
}, 60_000);
afterAll(async () => {
  await s?.stop();
  await upstream?.close(100);
});

describe('client disconnect', () => {
  it('cancels the request at the inference server behind the worker, long before the answer would end', async () => {
    const ac = new AbortController();
    const r = await client.post('/v1/chat/completions', { model: MODEL, stream: true, messages: [{ role: 'user', content: 'go on forever' }], max_tokens: TOKENS }, { stream: true, signal: ac.signal });
    expect(r.status).toBe(200);
    const reader = r.body.getReader();
    expect((await reader.read()).done).toBe(false);
    ac.abort();
    await reader.cancel().catch(() => undefined);
    // Wait for the upstream connection to close (not a fixed sleep): under CPU load the cancellation takes longer.
    await expect.poll(() => state.abortedEarly, { timeout: 15_000, interval: 20 }).toBe(1);
    expect(state.requests).toBe(1);
    expect(state.finished).toBe(0);
    const at = state.produced;
    expect(at).toBeLessThan(TOKENS);
    // Once cancelled, the upstream produces nothing more.
    await new Promise((res) => setTimeout(res, 200));
    expect(state.produced).toBeLessThanOrEqual(at + 1);
  });
});
