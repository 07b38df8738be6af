/**
 * The worker's inner handler: forwards a decapsulated OpenAI request to the local inference server (vLLM, SGLang,
 * or `gm dev-model`) through an undici Pool and streams its answer back without buffering (the web stream pulls
 * from the upstream socket; cancelling it destroys the upstream request). Only the OpenAI inference paths pass.
 */
import { Pool } from 'undici';
import { fieldsFromHeaders } from '../enclave/ohttp/messages.ts';

const ALLOWED = new Set(['/v1/chat/completions', '/v1/completions', '/v1/embeddings', '/v1/models']);

export interface Forwarder {
  handle(req: Request): Promise<Response>;
  close(): Promise<void>;
}

export interface ForwarderOptions {
  readonly upstream: string;
  readonly connections?: number;
  readonly headersTimeoutMs?: number;
  readonly bodyTimeoutMs?: number;
}

export function createForwarder(o: ForwarderOptions): Forwarder {
  const base = new URL(o.upstream);
  const prefix = base.pathname.replace(/\/+$/, '').replace(/\/v1$/, '');
  const pool = new Pool(base.origin, { connections: o.connections ?? 64, headersTimeout: o.headersTimeoutMs ?? 300_000, bodyTimeout: o.bodyTimeoutMs ?? 300_000 });
  return {
    async handle(req) {
      const url = new URL(req.url);
      if (!ALLOWED.has(url.pathname)) return Response.json({ error: { code: 'NOT_FOUND' } }, { status: 404 });
      const headers: Record<string, string> = {};
      for (const [k, v] of fieldsFromHeaders(req.headers)) if (k !== 'authorization') headers[k] = v;
      const body = req.method === 'GET' || req.method === 'HEAD' ? undefined : new Uint8Array(await req.arrayBuffer());
      let r;
      try {
        r = await pool.request({ origin: base.origin, path: `${prefix}${url.pathname}${url.search}`, method: req.method as 'POST', headers, ...(body ? { body } : {}), signal: req.signal });
      } catch {
        return Response.json({ error: { code: 'UPSTREAM_UNAVAILABLE' } }, { status: 502 });
      }
      const h = new Headers();
      for (const [k, v] of Object.entries(r.headers)) if (typeof v === 'string') h.set(k, v);
      const it = r.body[Symbol.asyncIterator]();
      const stream = new ReadableStream<Uint8Array>(
        {
          async pull(ctl) {
            try {
              const x = await it.next();
              if (x.done) ctl.close();
              else ctl.enqueue(new Uint8Array(x.value as Buffer));
            } catch (e) {
              ctl.error(e);
            }
          },
          cancel() {
            r.body.destroy();
          },
        },
        { highWaterMark: 0 },
      );
      return new Response(stream, { status: r.statusCode, headers: h });
    },
    close: () => pool.close(),
  };
}
