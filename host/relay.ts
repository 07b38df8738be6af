/**
 * The relay (docs/design.md §5): forwards only the enclave's OHTTP gateway and attestation endpoints, as opaque bytes,
 * streaming both ways. It never holds a key and learns only sizes and timing. Request headers are copied from an
 * allowlist, so everything identifying the client (Forwarded, X-Forwarded-*, X-Real-IP, Via, Cookie, User-Agent,
 * Authorization, Referer, Origin, ...) is dropped by construction; the enclave sees the relay as the peer.
 */
import { Hono } from 'hono';
import { type BodyInit, type Dispatcher, fetch as undiciFetch } from 'undici';

/** Request headers the gateway needs (RFC 9458 §4.3 media types; chunked OHTTP's `Incremental`). */
const REQUEST_HEADERS = ['content-type', 'accept', 'incremental'] as const;
/**
 * Response headers worth passing back; anything else (Set-Cookie, Server, ...) stays behind. `gm-tee: sim` is the
 * enclave's marking of simulated evidence (docs/design.md §3): it must reach the client through the relay.
 */
const RESPONSE_HEADERS = ['content-type', 'cache-control', 'incremental', 'gm-tee', 'retry-after'] as const;

export interface RelayOptions {
  /** The enclave's base URL. */
  readonly enclave: string;
  /** Largest request body forwarded (OHTTP requests are small; a stream larger than this is cut with 413). */
  readonly maxRequestBytes?: number;
  readonly dispatcher?: Dispatcher;
  /** Sees every byte forwarded in either direction (metrics, and tests proving the relay sees only ciphertext). */
  readonly observe?: (direction: 'request' | 'response', path: string, chunk: Uint8Array) => void;
  /** Sees the headers forwarded upstream (tests proving identifying headers are stripped). */
  readonly observeHeaders?: (path: string, headers: Readonly<Record<string, string>>) => void;
}

export const RELAYED_PATHS = ['/v1/ohttp', '/v1/attestation', '/.well-known/ohttp-gateway'] as const;

export function relayRoutes(opts: RelayOptions): Hono {
  const app = new Hono();
  const base = opts.enclave.replace(/\/$/, '');
  const max = opts.maxRequestBytes ?? 4 * 1024 * 1024;

  const forward = async (req: Request, path: string, search: string): Promise<Response> => {
    // A fixed User-Agent: undici would otherwise add its own, and the client's must never pass.
    const headers: Record<string, string> = { 'user-agent': 'gm-relay' };
    for (const h of REQUEST_HEADERS) {
      const v = req.headers.get(h);
      if (v !== null) headers[h] = v;
    }
    opts.observeHeaders?.(path, headers);
    const declared = Number(req.headers.get('content-length') ?? '0');
    if (declared > max) return tooLarge();
    let body: ReadableStream<Uint8Array> | undefined;
    if (req.body) body = req.body.pipeThrough(limitAndObserve(max, (c) => opts.observe?.('request', path, c)));
    let up;
    try {
      up = await undiciFetch(`${base}${path}${search}`, {
        method: req.method,
        headers,
        ...(body ? { body: body as unknown as BodyInit, duplex: 'half' as const } : {}),
        redirect: 'manual',
        signal: req.signal,
        ...(opts.dispatcher ? { dispatcher: opts.dispatcher } : {}),
      });
    } catch (e) {
      if ((e as { cause?: { code?: string } }).cause?.code === 'GM_RELAY_TOO_LARGE') return tooLarge();
      return Response.json({ error: { code: 'RELAY_UPSTREAM_UNAVAILABLE', message: 'the enclave could not be reached' } }, { status: 502 });
    }
    const out = new Headers();
    for (const h of RESPONSE_HEADERS) {
      const v = up.headers.get(h);
      if (v !== null) out.set(h, v);
    }
    const stream = up.body ? (up.body as ReadableStream<Uint8Array>).pipeThrough(limitAndObserve(Infinity, (c) => opts.observe?.('response', path, c))) : null;
    return new Response(stream, { status: up.status, headers: out });
  };

  app.post('/v1/ohttp', (c) => forward(c.req.raw, '/v1/ohttp', ''));
  app.get('/.well-known/ohttp-gateway', (c) => forward(c.req.raw, '/.well-known/ohttp-gateway', ''));
  app.get('/v1/attestation', (c) => {
    const nonce = c.req.query('nonce');
    const keys = [...new URL(c.req.url).searchParams.keys()];
    if (keys.some((k) => k !== 'nonce') || (nonce !== undefined && !/^[0-9a-f]{64}$/.test(nonce)))
      return c.json({ error: { code: 'RELAY_BAD_REQUEST', message: 'nonce must be 64 lower-case hex characters' } }, 400);
    return forward(c.req.raw, '/v1/attestation', nonce === undefined ? '' : `?nonce=${nonce}`);
  });
  return app;
}

function tooLarge(): Response {
  return Response.json({ error: { code: 'RELAY_BODY_TOO_LARGE', message: 'request body too large' } }, { status: 413 });
}

/** Passes chunks through unchanged (never buffering), counting bytes against `max`. */
function limitAndObserve(max: number, see: (c: Uint8Array) => void): TransformStream<Uint8Array, Uint8Array> {
  let n = 0;
  return new TransformStream({
    transform(chunk, ctl) {
      n += chunk.byteLength;
      if (n > max) {
        ctl.error(Object.assign(new Error('request body too large'), { code: 'GM_RELAY_TOO_LARGE' }));
        return;
      }
      see(chunk);
      ctl.enqueue(chunk);
    },
  });
}
