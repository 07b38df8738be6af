import { describe, expect, it } from 'vitest';
import { GmError } from '../attestation/errors.ts';
import { openaiApp } from './api/openai.ts';
import { memoryLogger } from './log.ts';
import { Metrics } from './metrics.ts';
import { firstVerifiedRouter } from './router.ts';
import type { VerifiedWorker, WorkerRegistry } from './workers/registry.ts';

const worker = (id: string, models: string[]) => ({ id, models }) as unknown as VerifiedWorker;
const registry = (ws: VerifiedWorker[]) => ({ list: () => ws, usable: (id: string) => ws.find((w) => w.id === id) }) as unknown as WorkerRegistry;
const req = (model: string, body: Record<string, unknown> = {}) => ({ requestId: 'r', model, body: { model, ...body }, stream: false, now: 0 });

describe('first-verified router', () => {
  const ws = [worker('w-a', ['m1']), worker('w-b', ['m1', 'm2'])];

  it('returns every listed worker serving the model, in order, with failover unless refused', async () => {
    const r = firstVerifiedRouter(registry(ws));
    const sel = await r.select(req('m1'));
    expect(sel.candidates.map((c) => c.worker.id)).toEqual(['w-a', 'w-b']);
    expect(sel.allowFallbacks).toBe(true);
    expect((await r.select(req('m2', { provider: { allow_fallbacks: false } }))).allowFallbacks).toBe(false);
    expect(r.models(0)).toEqual(['m1', 'm2']);
  });

  it('an unknown model is MODEL_NOT_FOUND, as with the market, not a retryable 503', async () => {
    const r = firstVerifiedRouter(registry(ws));
    let e: unknown;
    try {
      await r.select(req('nope'));
    } catch (x) {
      e = x;
    }
    expect(e).toBeInstanceOf(GmError);
    expect((e as GmError).code).toBe('MODEL_NOT_FOUND');
    // What an OpenAI client receives from the surface in front of it.
    const app = openaiApp({ router: r, usable: () => undefined, dispatch: () => Promise.reject(new Error('not reached')), log: memoryLogger('enclave').log, metrics: new Metrics() });
    const res = await app.request('/v1/chat/completions', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'nope', messages: [] }) });
    expect(res.status).toBe(404);
    expect(res.headers.get('retry-after')).toBeNull();
    expect(((await res.json()) as { error: unknown }).error).toMatchObject({ code: 'model_not_found', param: 'model', type: 'invalid_request_error' });
    expect((await app.request('/v1/models/nope')).status).toBe(404);
    expect(((await (await app.request('/v1/models/m2')).json()) as { id: string }).id).toBe('m2');
  });
});
