import { describe, expect, it } from 'vitest';
import { Metrics } from '../metrics.ts';
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
    metrics: new Metrics(),
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

/** The OpenAI layer with a router that records its outcome callbacks. */
function recording(o: { dispatch: Dispatch; clientIdleMs?: number }) {
  const events: string[] = [];
  const cancels: { bytes: number; choices: number; toolCalls?: number; texts?: readonly string[] }[] = [];
  const calls: string[] = [];
  const router: Router = {
    select: () => ({
      candidates: ['a', 'b'].map((id) => ({ worker: worker(id) })),
      allowFallbacks: true,
      onFailure: (c, code) => void events.push(`failure ${c.worker.id} ${code}`),
      onWorkerFault: (c, code) => void events.push(`fault ${c.worker.id} ${code}`),
      onCancel: (c, d) => {
        events.push(`cancel ${c.worker.id}`);
        if (d) cancels.push(d);
      },
      onSuccess: (c) => void events.push(`success ${c.worker.id}`),
    }),
    models: () => ['m'],
  };
  const app = openaiApp({
    router,
    usable: worker,
    dispatch: async (w, req, d) => (calls.push(w.id), o.dispatch(w, req, d)),
    log: memoryLogger('enclave').log,
    metrics: new Metrics(),
    ...(o.clientIdleMs !== undefined ? { clientIdleMs: o.clientIdleMs } : {}),
  });
  const post = (body: object) => app.request('/v1/chat/completions', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { post, events, cancels, calls };
}

const tokenEvent = (t: string) => `data: {"choices":[{"index":0,"delta":{"content":"${t}"}}]}\n\n`;

describe('streams the worker cannot abuse, clients that stop reading', () => {
  it('a never-ending event is a worker fault: a coded error event, no failover, the worker demoted', async () => {
    // One token, then an event that does not end: 64 KiB pieces with no blank line (4 MiB, then the worker gives up).
    const piece = `data: ${'x'.repeat(65_536)}`;
    let sent = 0;
    const endless = new ReadableStream<Uint8Array>({
      pull(c) {
        if (sent > 64) return c.close();
        c.enqueue(te.encode(sent++ === 0 ? tokenEvent('a') : piece));
      },
    });
    const s = recording({ dispatch: async () => ok(endless) });
    const text = await (await s.post({ model: 'm', stream: true, messages: [] })).text();
    expect(text).toContain('event: error\ndata: {"error":{"code":"WORKER_EVENT_TOO_LARGE"');
    expect(text).not.toContain('[DONE]');
    expect(s.calls).toEqual(['a']);
    expect(s.events).toEqual(['fault a WORKER_EVENT_TOO_LARGE']);
    // The enclave read about 1 MiB of it, not the unbounded rest.
    expect(sent).toBeLessThan(40);
  });

  it('a client that stops reading is cut off after clientIdleMs and charged for what it was sent', async () => {
    let i = 0;
    const long = new ReadableStream<Uint8Array>({
      pull(c) {
        c.enqueue(te.encode(i++ < 1000 ? tokenEvent('tok') : 'data: [DONE]\n\n'));
        if (i > 1000) c.close();
      },
    });
    const s = recording({ dispatch: async () => ok(long), clientIdleMs: 100 });
    const r = await s.post({ model: 'm', stream: true, messages: [] });
    const reader = r.body!.getReader();
    const first = new TextDecoder().decode((await reader.read()).value);
    expect(first).toBe(tokenEvent('tok'));
    // The client reads nothing more.
    await new Promise((res) => setTimeout(res, 400));
    expect(s.events).toEqual(['cancel a']);
    expect(s.cancels).toEqual([{ bytes: 3, choices: 1, toolCalls: 0, texts: ['tok'] }]);
    await expect(reader.read()).rejects.toMatchObject({ code: 'CLIENT_STALLED' });
  });

  it('a client that hangs up is reported as a cancel with what it was sent, not as a worker failure', async () => {
    let i = 0;
    const long = new ReadableStream<Uint8Array>({
      async pull(c) {
        await new Promise((res) => setTimeout(res, 5));
        c.enqueue(te.encode(tokenEvent(`t${i++}`)));
      },
    });
    const s = recording({ dispatch: async () => ok(long) });
    const r = await s.post({ model: 'm', stream: true, messages: [] });
    const reader = r.body!.getReader();
    await reader.read();
    await reader.read();
    await reader.cancel();
    expect(s.events).toEqual(['cancel a']);
    expect(s.cancels).toEqual([{ bytes: 4, choices: 1, toolCalls: 0, texts: ['t0t1'] }]);
  });
});
