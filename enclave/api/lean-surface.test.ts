/**
 * The inference routes on decrypted fields and bytes (openai.ts `serve`) answer exactly as the same routes do through
 * hono with web objects (`app.request()`): same status, fields and bytes, same request forwarded to the worker, for
 * any body (valid, malformed, not an object, with a BOM, gm fields, streams) and any Authorization field. Through the
 * whole enclave on node:http, errors before dispatch leave sealed and coded.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeResponse, encodeRequest, type Field } from '../../protocol/bhttp.ts';
import { decodeKeyConfigs, encapsulateRequest, type KeyConfig } from '../../protocol/ohttp.ts';
import { simVendors, simWorkerPolicy } from '../../test/stack/harness.ts';
import { createEnclave, type Enclave } from '../app.ts';
import { memoryLogger } from '../log.ts';
import { Metrics } from '../metrics.ts';
import { answerOf, type InnerAnswer, readSource } from '../ohttp/inner.ts';
import { bhttpRequest } from '../ohttp/messages.ts';
import type { Router } from '../router.ts';
import { serve, type Served } from '../serve.ts';
import { simProvider } from '../tee/sim.ts';
import type { VerifiedWorker } from '../workers/registry.ts';
import { type Dispatch, inferenceRoute, openaiSurface } from './openai.ts';

const te = new TextEncoder();
const td = new TextDecoder();
const worker = (id: string) => ({ id }) as VerifiedWorker;

describe('inferenceRoute', () => {
  it.each([
    ['POST', '/v1/chat/completions', '/v1/chat/completions'],
    ['POST', '/v1/completions?x=1', '/v1/completions'],
    ['POST', '/v1/embeddings', '/v1/embeddings'],
    ['GET', '/v1/chat/completions', undefined],
    ['post', '/v1/chat/completions', undefined],
    ['POST', '/v1/chat/completions/', undefined],
    ['POST', '/v1/chat/%63ompletions', undefined],
    ['POST', '/v1/chat/completions#f', undefined],
    ['POST', '/v1/models', undefined],
  ])('%s %s → %s', (method, path, route) => {
    expect(inferenceRoute(method, path)).toBe(route);
  });
});

/** A surface whose worker answers `answer` (JSON, or SSE when the request streams), recording what it was sent. */
function surface() {
  const sent: string[] = [];
  const router: Router = {
    select: (q) => {
      sent.push(`account ${q.apiKey ?? '-'}`);
      return { candidates: [{ worker: worker('a') }], allowFallbacks: false };
    },
    models: () => ['m'],
  };
  const dispatch: Dispatch = async (_w, req, d) => {
    sent.push(`${req.path} ${req.headers.map(([k, v]) => `${k}=${v}`).join(',')} ${td.decode(req.content)}`);
    if (d.stream) {
      const parts = ['data: {"choices":[{"delta":{"content":"a"}}]}\n\n', 'data: {"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}\n\n', 'data: [DONE]\n\n'];
      return { status: 200, headers: new Headers({ 'content-type': 'text/event-stream' }), body: new ReadableStream({ pull: (c) => (parts.length ? c.enqueue(te.encode(parts.shift()!)) : c.close()) }) };
    }
    const content = te.encode('{"choices":[{"message":{"content":"hi"}}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}');
    return { status: 200, headers: new Headers({ 'content-type': 'application/json' }), content, body: new ReadableStream({ start: (c) => (c.enqueue(content), c.close()) }) };
  };
  const s = openaiSurface({ router, usable: worker, dispatch, log: memoryLogger('enclave').log, metrics: new Metrics() });
  return { s, sent };
}

async function flat(a: InnerAnswer): Promise<{ status: number; headers: readonly Field[]; text: string }> {
  const bytes = a.content ?? (a.body ? await readSource(a.body, 1 << 20) : new Uint8Array(0));
  return { status: a.status, headers: a.headers, text: td.decode(bytes) };
}

const bodies = fc.oneof(
  fc.record({ model: fc.constantFrom('m', ''), stream: fc.boolean(), messages: fc.constant([]), provider: fc.constant({ sort: 'price' }), stream_options: fc.constantFrom(undefined, { include_usage: true }) }, { requiredKeys: ['messages'] }).map((o) => JSON.stringify(o)),
  fc.constantFrom('', '{', '[]', 'null', '"m"', '{"model":1}', '\ufeff{"model":"m","messages":[]}', '{"model":"m","__proto__":{"x":1}}'),
  fc.string({ maxLength: 20 }),
);
const auth = fc.constantFrom<Field[]>([], [['authorization', 'Bearer sk-placeholder']], [['Authorization', ' Bearer gm_abc ']], [['authorization', 'Bearer gm_a'], ['authorization', 'x']]);

describe('the lean inference routes and the hono routes', () => {
  it('answer every request identically and forward the same request', async () => {
    await fc.assert(
      fc.asyncProperty(fc.constantFrom('/v1/chat/completions', '/v1/completions', '/v1/embeddings'), bodies, auth, fc.constantFrom('application/json', 'text/plain'), async (path, body, fields, type) => {
        const lean = surface();
        const web = surface();
        const headers: Field[] = [['content-type', type], ...fields];
        const a = await flat(await lean.s.serve(bhttpRequest('POST', path, headers, te.encode(body)), new AbortController().signal));
        const r = await web.s.app.request(path, { method: 'POST', headers: headers as [string, string][], body });
        const b = await flat(answerOf(r));
        expect(a).toEqual(b);
        expect(lean.sent).toEqual(web.sent);
      }),
      { numRuns: 150 },
    );
  });

  it('serves the other routes through hono (models list, unknown path)', async () => {
    const { s } = surface();
    const models = await flat(await s.serve(bhttpRequest('GET', '/v1/models', [], new Uint8Array()), new AbortController().signal));
    expect(models.status).toBe(200);
    expect(JSON.parse(models.text)).toMatchObject({ object: 'list', data: [{ id: 'm' }] });
    const none = await flat(await s.serve(bhttpRequest('GET', '/v1/chat/completions', [], new Uint8Array()), new AbortController().signal));
    expect(none.status).toBe(404);
    expect(JSON.parse(none.text).error.code).toBe('NOT_FOUND');
  });
});

describe('through the enclave on node:http', () => {
  let e: Enclave;
  let srv: Served;
  let cfg: KeyConfig;
  beforeAll(async () => {
    const { amd } = await simVendors();
    e = await createEnclave({
      tee: simProvider({ amd }),
      log: memoryLogger('enclave').log,
      workerPolicy: { policy: { 'sev-snp': simWorkerPolicy() }, allowSim: true, freshnessMs: 60_000 },
      router: () => ({ select: () => ({ candidates: [{ worker: worker('a') }], allowFallbacks: false }), models: () => ['m'] }),
      dispatch: () => Promise.reject(new Error('not reached')),
    });
    srv = await serve({ fetch: e.app.fetch, direct: e.direct });
    cfg = decodeKeyConfigs(e.keyConfigs)[0]!;
  });
  afterAll(async () => {
    await srv?.close(0);
    await e?.close();
  });

  const ask = async (body: string) => {
    const { encapsulated, context } = await encapsulateRequest(cfg, encodeRequest(bhttpRequest('POST', '/v1/chat/completions', [['content-type', 'application/json']], te.encode(body))));
    const r = await fetch(`${srv.url}/v1/ohttp`, { method: 'POST', headers: { 'content-type': 'message/ohttp-req' }, body: encapsulated as Uint8Array<ArrayBuffer> });
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toBe('message/ohttp-res');
    expect(r.headers.get('gm-tee')).toBe('sim');
    expect(r.headers.get('content-length')).not.toBeNull();
    return decodeResponse(await context.openResponse(new Uint8Array(await r.arrayBuffer()))).response;
  };

  it.each([
    ['{', 400, 'BAD_JSON'],
    ['[1]', 400, 'BAD_JSON'],
    ['{"messages":[]}', 400, 'MODEL_REQUIRED'],
    // Read as fetch's Body.json() reads a body: a UTF-8 byte order mark is dropped, not a JSON error.
    ['\ufeff{"messages":[]}', 400, 'MODEL_REQUIRED'],
    // No worker is registered: the attestation gate stops dispatch, a 503 the client may retry.
    ['{"model":"m","messages":[]}', 503, 'WORKER_NOT_VERIFIED'],
  ])('%s is answered sealed: %i %s', async (body, status, code) => {
    const res = await ask(body);
    expect(res.status).toBe(status);
    expect(res.headers[0]).toEqual(['content-type', 'application/json']);
    expect(res.headers.some(([k, v]) => k === 'retry-after' && v === '1')).toBe(status === 503);
    expect(JSON.parse(td.decode(res.content)).error.code).toBe(code);
  });
});
