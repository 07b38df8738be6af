import { Hono } from 'hono';
import { describe, expect, it } from 'vitest';
import { asGmError, errorResponse } from './errors.ts';
import { PassThrough } from 'node:stream';
import { contentLengthLimit, readIncomingLimited, readLimited, StreamLimiter } from './limits.ts';

describe('limits middlewares', () => {
  const app = new Hono();
  app.onError((e) => errorResponse(asGmError(e)));
  const streams = new StreamLimiter(1);
  app.post('/x', contentLengthLimit(10), async (c) => c.json({ n: (await readLimited(c.req.raw.body, 10)).length }));
  app.post('/hold', async (c) => {
    const release = streams.acquire();
    const r = c.json({ active: streams.active });
    release();
    return r;
  });

  it('passes bodies up to the limit and answers 413 with an opaque code above it', async () => {
    expect(await (await app.request('/x', { method: 'POST', body: '0123456789' })).json()).toEqual({ n: 10 });
    const r = await app.request('/x', { method: 'POST', body: '0123456789A' });
    expect(r.status).toBe(413);
    expect(((await r.json()) as { code: string }).code).toBe('TOO_LARGE');
  });

  it('counts streamed bodies without Content-Length', async () => {
    const body = new ReadableStream({ start(c) { c.enqueue(new Uint8Array(6)); c.enqueue(new Uint8Array(6)); c.close(); } });
    const r = await app.request('/x', { method: 'POST', body, duplex: 'half' } as RequestInit);
    expect(r.status).toBe(413);
  });

  it('limits concurrent streams with an immediate 503', async () => {
    expect(await (await app.request('/hold', { method: 'POST' })).json()).toEqual({ active: 1 });
    const release = streams.acquire();
    const r = await app.request('/hold', { method: 'POST' });
    expect(r.status).toBe(503);
    expect(((await r.json()) as { code: string }).code).toBe('TOO_MANY_STREAMS');
    release();
    release(); // idempotent
    expect(streams.active).toBe(0);
  });

  it('reads a node request stream within the limit, refuses more, and reports a peer that goes away', async () => {
    const ok = new PassThrough();
    const p = readIncomingLimited(ok, 10);
    ok.write(Buffer.from('01234'));
    ok.end(Buffer.from('56789'));
    expect(new TextDecoder().decode(await p)).toBe('0123456789');

    const big = new PassThrough();
    const q = readIncomingLimited(big, 10);
    big.write(Buffer.alloc(6));
    big.write(Buffer.alloc(6));
    await expect(q).rejects.toMatchObject({ code: 'TOO_LARGE' });

    const gone = new PassThrough();
    const r = readIncomingLimited(gone, 10);
    gone.write(Buffer.alloc(3));
    gone.destroy();
    await expect(r).rejects.toMatchObject({ code: 'CLIENT_CANCELLED' });
  });
});
