import { Hono } from 'hono';
import { describe, expect, it } from 'vitest';
import { isGmError } from '../../attestation/errors.ts';
import { encodeRequest } from '../../protocol/bhttp.ts';
import { encapsulateChunkedRequest } from '../../protocol/chunked.ts';
import { encapsulateRequest, generateKeyConfig } from '../../protocol/ohttp.ts';
import { ReplayCache } from '../../protocol/replay.ts';
import { asGmError, gatewayProblem } from '../http/errors.ts';
import { sendChunked, sendPlain, type Transport } from './client.ts';
import { DEFAULT_MAX_REQUEST_CHUNKS, handleOhttp } from './gateway.ts';
import { bhttpRequest } from './messages.ts';

/** The gateway layer alone, in a hono app driven by app.request(); the inner handler is replaced by an echo. */
async function setup(max = 1024) {
  const key = await generateKeyConfig(7);
  const seen: string[] = [];
  const replay = new ReplayCache({ maxEntries: 100, windowMs: 60_000 });
  const app = new Hono();
  app.onError((e) => gatewayProblem(asGmError(e)));
  app.post('/v1/ohttp', (c) =>
    handleOhttp(c.req.raw, {
      keys: () => [key],
      replay,
      maxRequestBytes: max,
      handler: async (req) => {
        seen.push(`${req.method} ${new URL(req.url).pathname}`);
        const body = await req.text();
        if (req.headers.get('accept') === 'text/event-stream') {
          const parts = ['data: a\n\n', 'data: b\n\n', 'data: [DONE]\n\n'];
          return new Response(new ReadableStream({ pull(ctl) { const p = parts.shift(); if (p) ctl.enqueue(new TextEncoder().encode(p)); else ctl.close(); } }), { headers: { 'content-type': 'text/event-stream' } });
        }
        return Response.json({ echo: body }, { status: 201 });
      },
    }),
  );
  const transport: Transport = async (body, ct) => {
    const r = await app.request('/v1/ohttp', { method: 'POST', headers: { 'content-type': ct }, body: body as Uint8Array<ArrayBuffer> });
    const reader = r.body!.getReader();
    return { status: r.status, contentType: r.headers.get('content-type') ?? '', body: { async *[Symbol.asyncIterator]() { for (;;) { const x = await reader.read(); if (x.done) return; yield x.value; } } }, cancel: () => void reader.cancel() };
  };
  return { key, app, seen, transport };
}
const te = new TextEncoder();

describe('OHTTP gateway layer', () => {
  it('decapsulates a plain request, calls the inner handler, seals its answer', async () => {
    const { key, transport, seen } = await setup();
    const r = await sendPlain(transport, key.config, bhttpRequest('POST', '/v1/x', [['content-type', 'application/json']], te.encode('{"a":1}')));
    expect(r.status).toBe(201);
    expect(await new Response(r.body).json()).toEqual({ echo: '{"a":1}' });
    expect(seen).toEqual(['POST /v1/x']);
  });

  it('streams a chunked answer piece by piece', async () => {
    const { key, transport } = await setup();
    const r = await sendChunked(transport, key.config, bhttpRequest('POST', '/v1/s', [['accept', 'text/event-stream']], te.encode('{}')));
    expect(r.headers.get('content-type')).toBe('text/event-stream');
    expect(await new Response(r.body).text()).toBe('data: a\n\ndata: b\n\ndata: [DONE]\n\n');
  });

  it('rejects a replayed encapsulated request', async () => {
    const { key, app } = await setup();
    const { encapsulated } = await encapsulateRequest(key.config, encodeRequest(bhttpRequest('GET', '/v1/x', [], new Uint8Array())));
    const post = () => app.request('/v1/ohttp', { method: 'POST', headers: { 'content-type': 'message/ohttp-req' }, body: encapsulated as Uint8Array<ArrayBuffer> });
    expect((await post()).status).toBe(200);
    const again = await post();
    expect(again.status).toBe(400);
    expect(((await again.json()) as { code: string }).code).toBe('OHTTP_DECRYPT_FAILED'); // replay is not told apart from other failures
  });

  it('refuses oversized bodies with 413 before decryption, wrong media types with 415, unknown keys with the ohttp-key problem', async () => {
    const { app, seen } = await setup(100);
    const big = await app.request('/v1/ohttp', { method: 'POST', headers: { 'content-type': 'message/ohttp-req' }, body: new Uint8Array(101) });
    expect(big.status).toBe(413);
    expect(((await big.json()) as { code: string }).code).toBe('TOO_LARGE');
    const wrong = await app.request('/v1/ohttp', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    expect(wrong.status).toBe(415);
    const other = await generateKeyConfig(9);
    const { encapsulated } = await encapsulateRequest(other.config, encodeRequest(bhttpRequest('GET', '/', [], new Uint8Array())));
    const unknown = await app.request('/v1/ohttp', { method: 'POST', headers: { 'content-type': 'message/ohttp-req' }, body: encapsulated as Uint8Array<ArrayBuffer> });
    expect(unknown.status).toBe(400);
    expect(unknown.headers.get('content-type')).toBe('application/problem+json');
    expect(((await unknown.clone().json()) as { code: string }).code).toBe('OHTTP_KEY_CONFIG');
    expect(((await unknown.json()) as { type: string }).type).toContain('ohttp-key');
    expect(seen).toEqual([]);
  });

  it('a client sees a flipped response byte as a decryption failure', async () => {
    const { key, transport } = await setup();
    const flip: Transport = async (b, ct, s) => {
      const t = await transport(b, ct, s);
      return { ...t, body: { async *[Symbol.asyncIterator]() { for await (const c of t.body) { const x = c.slice(); x[x.length - 1] = x[x.length - 1]! ^ 1; yield x; } } } };
    };
    const e = await sendPlain(flip, key.config, bhttpRequest('GET', '/v1/x', [], new Uint8Array())).catch((x: unknown) => x);
    expect(isGmError(e, 'OHTTP_DECRYPT_FAILED')).toBe(true);
  });

  it('spends at most its chunk budget of AEAD opens on a chunked request of tiny chunks', async () => {
    const { key, app, seen } = await setup(4 * 1024 * 1024);
    const inner = encodeRequest(bhttpRequest('POST', '/v1/x', [['content-type', 'application/json']], te.encode(JSON.stringify({ pad: 'x'.repeat(1200) }))));
    /** The inner request as `chunks` chunks: one byte each, the rest in the final chunk. */
    const post = async (chunks: number) => {
      const sender = await encapsulateChunkedRequest(key.config);
      const parts: Uint8Array[] = [];
      for (let i = 0; i < chunks - 1; i++) parts.push(await sender.sealChunk(inner.subarray(i, i + 1)));
      parts.push(await sender.sealChunk(inner.subarray(chunks - 1), { final: true }));
      const body = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
      let o = 0;
      for (const p of parts) {
        body.set(p, o);
        o += p.length;
      }
      return app.request('/v1/ohttp', { method: 'POST', headers: { 'content-type': 'message/ohttp-chunked-req' }, body: body as Uint8Array<ArrayBuffer> });
    };
    expect(DEFAULT_MAX_REQUEST_CHUNKS).toBeLessThan(inner.length);
    const within = await post(DEFAULT_MAX_REQUEST_CHUNKS);
    expect(within.status).toBe(200);
    await within.arrayBuffer();
    expect(seen).toEqual(['POST /v1/x']);
    const over = await post(DEFAULT_MAX_REQUEST_CHUNKS + 1);
    expect(over.status).toBe(400);
    expect(((await over.json()) as { code: string }).code).toBe('OHTTP_DECRYPT_FAILED'); // as opaque as any other failure
    expect(seen).toEqual(['POST /v1/x']);
  });
});
