import { describe, expect, it } from 'vitest';
import { Registry } from '../metrics.ts';
import { memoryLogger } from '../log.ts';
import type { InnerResponse } from '../ohttp/client.ts';
import type { Router } from '../router.ts';
import type { VerifiedWorker } from '../workers/registry.ts';
import { type Dispatch, openaiApp } from './openai.ts';

const te = new TextEncoder();
const worker = (id: string) => ({ id }) as VerifiedWorker;
const sse = (parts: string[], failAfter?: number): ReadableStream<Uint8Array> => {
  let i = 0;
  return new ReadableStream({
    pull(c) {
      if (failAfter !== undefined && i === failAfter) return c.error(new Error('socket closed'));
      if (i < parts.length) c.enqueue(te.encode(parts[i++]!));
      else c.close();
    },
  });
};
const ok = (stream: ReadableStream<Uint8Array>, ct = 'text/event-stream'): InnerResponse => ({ status: 200, headers: new Headers({ 'content-type': ct }), body: stream });

/** The OpenAI layer alone (router, gate and dispatch replaced), driven with app.request(). */
function setup(o: { usable?: string[]; dispatch: Dispatch; allowFallbacks?: boolean }) {
  const calls: { id: string; body: string }[] = [];
  const router: Router = {
    select: () => ({ candidates: ['a', 'b'].map((id) => ({ worker: worker(id) })), allowFallbacks: o.allowFallbacks ?? true }),
    models: () => ['m'],
  };
  const { log, lines } = memoryLogger('enclave');
  const app = openaiApp({
    router,
    usable: (id) => ((o.usable ?? ['a', 'b']).includes(id) ? worker(id) : undefined),
    dispatch: async (w, req, d) => {
      calls.push({ id: w.id, body: new TextDecoder().decode(req.content) });
      return o.dispatch(w, req, d);
    },
    log,
    metrics: new Registry(),
  });
  const post = (body: object) => app.request('/v1/chat/completions', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { app, calls, post, lines };
}

describe('OpenAI surface', () => {
  it('never dispatches to a candidate the gate does not pass', async () => {
    const s = setup({ usable: ['b'], dispatch: async () => ok(sse(['{"x":1}']), 'application/json') });
    const r = await s.post({ model: 'm', messages: [] });
    expect(r.status).toBe(200);
    expect(s.calls.map((c) => c.id)).toEqual(['b']);
    // Logged with its code, without the worker: a per-request line naming it would link the request to it.
    expect(s.lines.some((l) => l.includes('"dispatch.gate"') && l.includes('"code":"WORKER_NOT_VERIFIED"') && !l.includes('"worker"'))).toBe(true);
  });

  it('strips gm fields before forwarding', async () => {
    const s = setup({ dispatch: async () => ok(sse(['{}']), 'application/json') });
    await s.post({ model: 'm', messages: [], provider: { sort: 'price' }, payment: { terms: ['prepaid'] }, models: ['m'] });
    expect(JSON.parse(s.calls[0]!.body)).toEqual({ model: 'm', messages: [] });
  });

  it('fails over before the first token, and not when fallbacks are off', async () => {
    const dispatch: Dispatch = async (w) => (w.id === 'a' ? ok(sse([], 0)) : ok(sse(['data: {"choices":[{"delta":{"content":"hi"}}]}\n\n', 'data: [DONE]\n\n'])));
    const s = setup({ dispatch });
    const r = await s.post({ model: 'm', stream: true, messages: [] });
    expect(await r.text()).toBe('data: {"choices":[{"delta":{"content":"hi"}}]}\n\ndata: [DONE]\n\n');
    expect(s.calls.map((c) => c.id)).toEqual(['a', 'b']);
    const t = setup({ dispatch, allowFallbacks: false });
    expect((await t.post({ model: 'm', stream: true, messages: [] })).status).toBe(502); // UPSTREAM_FAILED, no second try
    expect(t.calls.map((c) => c.id)).toEqual(['a']);
  });

  it('after the first token, a worker failure ends the stream with an error event and no [DONE]', async () => {
    const s = setup({ dispatch: async () => ok(sse(['data: {"choices":[{"delta":{"content":"a"}}]}\n\n', 'data: {"choices":[{"delta":{"content":"b"}}]}\n\n'], 2)) });
    const text = await (await s.post({ model: 'm', stream: true, messages: [] })).text();
    expect(text).toContain('event: error\ndata: {"error":{"code":"WORKER_FAILED_MID_STREAM"');
    expect(text).not.toContain('[DONE]');
    expect(s.calls.map((c) => c.id)).toEqual(['a']);
  });

  it('answers errors OpenAI-style: missing model, bad JSON', async () => {
    const s = setup({ dispatch: async () => ok(sse([])) });
    const r = await s.post({ messages: [] });
    expect(r.status).toBe(400);
    expect(((await r.json()) as { error: { code: string } }).error.code).toBe('MODEL_REQUIRED');
    const bad = await s.app.request('/v1/chat/completions', { method: 'POST', body: '{' });
    expect(((await bad.json()) as { error: { code: string } }).error.code).toBe('BAD_JSON');
    expect(s.calls).toEqual([]);
  });
});
