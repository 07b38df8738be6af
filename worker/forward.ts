/**
 * The worker's inner handler: forwards a decapsulated OpenAI request to the local inference server (vLLM, SGLang,
 * or `gm dev-model`) through an undici Pool and streams its answer back without buffering (the web stream pulls
 * from the upstream socket; cancelling it destroys the upstream request). Only the OpenAI inference paths pass.
 */
import { Pool } from 'undici';
import type { BhttpRequest, Field } from '../protocol/bhttp.ts';
import { fieldsFromHeaders, HOP_FIELDS } from '../enclave/ohttp/messages.ts';

const ALLOWED = new Set(['/v1/chat/completions', '/v1/completions', '/v1/embeddings', '/v1/models']);

/** The upstream's answer as fields and a byte stream (the session path: no web Response is built). */
export interface UpstreamAnswer {
  readonly status: number;
  readonly headers: readonly Field[];
  readonly body: AsyncIterable<Uint8Array> | Iterable<Uint8Array>;
  /** Destroys the upstream request (the enclave went away or stopped reading). */
  cancel(): void;
}

/** Forwards an inner request given as binary HTTP fields (already checked: enclave/ohttp/messages.ts checkInnerRequest). */
export type FieldForwarder = (req: BhttpRequest, signal?: AbortSignal) => Promise<UpstreamAnswer>;

export interface Forwarder {
  handle(req: Request): Promise<Response>;
  forward: FieldForwarder;
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
  const refusal = (status: number, code: string): UpstreamAnswer => {
    const bytes = new TextEncoder().encode(JSON.stringify({ error: { code } }));
    return { status, headers: [['content-type', 'application/json']], body: [bytes], cancel: () => undefined };
  };
  return {
    async forward(req, signal) {
      const q = req.path.indexOf('?');
      const pathname = q < 0 ? req.path : req.path.slice(0, q);
      if (!ALLOWED.has(pathname)) return refusal(404, 'NOT_FOUND');
      const headers: Record<string, string> = {};
      for (const [k, v] of req.headers) {
        const n = k.toLowerCase();
        if (n !== 'authorization' && !HOP_FIELDS.has(n)) headers[n] = v;
      }
      const hasBody = req.method !== 'GET' && req.method !== 'HEAD' && req.content.length > 0;
      let r;
      try {
        r = await pool.request({ path: `${prefix}${req.path}`, method: req.method as 'POST', headers, ...(hasBody ? { body: req.content } : {}), ...(signal ? { signal } : {}) });
      } catch {
        return refusal(502, 'UPSTREAM_UNAVAILABLE');
      }
      const fields: Field[] = [];
      for (const [k, v] of Object.entries(r.headers)) if (typeof v === 'string' && !HOP_FIELDS.has(k)) fields.push([k, v]);
      return { status: r.statusCode, headers: fields, body: r.body, cancel: () => void r.body.destroy() };
    },
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
