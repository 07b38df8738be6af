/**
 * The relay (docs/design.md §5): forwards only the enclave's OHTTP gateway and attestation endpoints, as opaque bytes,
 * streaming both ways. It never holds a key and learns only sizes and timing. Request headers are copied from an
 * allowlist, so everything identifying the client (Forwarded, X-Forwarded-*, X-Real-IP, Via, Cookie, User-Agent,
 * Authorization, Referer, Origin, ...) is dropped by construction; the enclave sees the relay as the peer.
 */
import { Hono } from 'hono';
import { type BodyInit, type Dispatcher, fetch as undiciFetch } from 'undici';
import { bundleFromJson, decodeBundle } from '../attestation/bundle.ts';
import { protocolError } from '../attestation/errors.ts';
import { encodeBundleList, MAX_LISTED_BUNDLE_BYTES } from '../protocol/bundle-list.ts';
import { decodeKeyConfigs } from '../protocol/ohttp.ts';
import { problemFor } from '../protocol/problem.ts';

/** Request headers the gateway needs (RFC 9458 §4.3 media types; chunked OHTTP's `Incremental`). */
const REQUEST_HEADERS = ['content-type', 'accept', 'incremental'] as const;
/**
 * Response headers worth passing back; anything else (Set-Cookie, Server, ...) stays behind. `gm-tee: sim` is the
 * enclave's marking of simulated evidence (docs/design.md §3): it must reach the client through the relay.
 */
const RESPONSE_HEADERS = ['content-type', 'cache-control', 'incremental', 'gm-tee', 'retry-after'] as const;

/** Where a relay fronting several replicas sends each request (host/replicas.ts ReplicaSet). */
export interface ReplicaRouting {
  /** The verified replica serving this OHTTP key id, if any (may re-check the replicas first). */
  resolve(keyId: number): Promise<string | undefined>;
  /** A replica to answer a plain attestation or key configuration request (round robin over the offered ones). */
  pick(): string | undefined;
  /** Every replica a client may be given, for `GET /v1/attestation?all=1`. */
  offered(): readonly string[];
  /** True when `url` is offered and every one of `keyIds` routes to it. */
  owns(url: string, keyIds: readonly number[]): boolean;
  /** Re-checks every replica (throttled; see host/replicas.ts). */
  refresh(): Promise<void>;
}

export interface RelayOptions {
  /** The enclave's base URL (with `replicas`: the first replica, for the status page). */
  readonly enclave: string;
  /**
   * Several replicas behind this relay: each encapsulated request goes to the replica serving its key id (RFC 9458
   * §4.3: the first byte), and an id none serves gets the RFC 9458 §6 `ohttp-key` problem, as a gateway answers it.
   */
  readonly replicas?: ReplicaRouting;
  /** Milliseconds each replica has to answer its part of `?all=1` (default 10 s); a late one is left out. */
  readonly listTimeoutMs?: number;
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

  const forward = async (req: Request, path: string, search: string, to = base, preread?: ReadableStream<Uint8Array>): Promise<Response> => {
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
    const src = preread ?? req.body;
    if (src) body = src.pipeThrough(limitAndObserve(max, (c) => opts.observe?.('request', path, c)));
    let up;
    try {
      up = await undiciFetch(`${to}${path}${search}`, {
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

  const replicas = opts.replicas;
  const noReplica = () => Response.json({ error: { code: 'RELAY_NO_REPLICA', message: 'no verified replica can take this request' } }, { status: 503, headers: { 'retry-after': '1' } });

  app.post('/v1/ohttp', async (c) => {
    if (!replicas) return forward(c.req.raw, '/v1/ohttp', '');
    const req = c.req.raw;
    if (Number(req.headers.get('content-length') ?? '0') > max) return tooLarge();
    // The key id is the first byte of the encapsulated request (RFC 9458 §4.3; the chunked header starts the same
    // way): read just enough to see it, then send that chunk and the rest on, still streaming.
    const reader = req.body?.getReader();
    let first: Uint8Array | undefined;
    while (reader) {
      const r = await reader.read().catch(() => ({ done: true as const, value: undefined }));
      if (r.done) break;
      if (r.value.byteLength > 0) {
        first = r.value;
        break;
      }
    }
    if (!reader || !first) return gatewayProblem(protocolError('OHTTP_MALFORMED', 'empty encapsulated request'));
    const to = await replicas.resolve(first[0]!);
    if (to === undefined) {
      await reader.cancel().catch(() => undefined);
      return gatewayProblem(protocolError('OHTTP_UNKNOWN_KEY_ID', 'no verified replica serves this key id'));
    }
    const head = first;
    const rest = new ReadableStream<Uint8Array>({
      start: (ctl) => ctl.enqueue(head),
      pull: async (ctl) => {
        const r = await reader.read();
        if (r.done) ctl.close();
        else ctl.enqueue(r.value);
      },
      cancel: (why) => reader.cancel(why),
    });
    return forward(req, '/v1/ohttp', '', to, rest);
  });
  app.get('/.well-known/ohttp-gateway', (c) => {
    const to = replicas ? replicas.pick() : base;
    return to === undefined ? noReplica() : forward(c.req.raw, '/.well-known/ohttp-gateway', '', to);
  });
  app.get('/v1/attestation', async (c) => {
    const q = new URL(c.req.url).searchParams;
    const nonce = q.get('nonce') ?? undefined;
    const all = q.get('all');
    if ([...q.keys()].some((k) => k !== 'nonce' && k !== 'all') || q.getAll('nonce').length > 1 || q.getAll('all').length > 1 || (nonce !== undefined && !/^[0-9a-f]{64}$/.test(nonce)) || (all !== null && all !== '1'))
      return c.json({ error: { code: 'RELAY_BAD_REQUEST', message: 'nonce must be 64 lower-case hex characters; all may only be 1' } }, 400);
    const search = nonce === undefined ? '' : `?nonce=${nonce}`;
    if (!replicas) return all === null ? forward(c.req.raw, '/v1/attestation', search) : listBundles([base], search, c.req.raw.signal);
    if (all !== null) return listBundles(replicas.offered(), search, c.req.raw.signal);
    // One replica's bundle, and only one whose key ids the relay routes back to it (a replica that rotated since its
    // last check is re-checked first; one that drew another replica's id is passed over).
    const signal = AbortSignal.any([c.req.raw.signal, AbortSignal.timeout(opts.listTimeoutMs ?? 10_000)]);
    for (let tries = replicas.offered().length; tries > 0; tries--) {
      const to = replicas.pick();
      if (to === undefined) break;
      const got = await fetchBundle(to, search, signal, c.req.header('accept') ?? 'application/cbor');
      if (!got || !(await servable(to, got))) continue;
      opts.observe?.('response', '/v1/attestation', got.bytes);
      return new Response(got.bytes as Uint8Array<ArrayBuffer>, { headers: { 'content-type': got.type, 'cache-control': 'no-store', ...(got.sim ? { 'gm-tee': 'sim' } : {}) } });
    }
    return noReplica();
  });

  interface Fetched {
    readonly bytes: Uint8Array;
    readonly type: string;
    readonly sim: boolean;
  }
  /** A replica's evidence bundle as it served it (CBOR, or its JSON view when that was asked for), or undefined. */
  const fetchBundle = async (b: string, search: string, signal: AbortSignal, accept = 'application/cbor'): Promise<Fetched | undefined> => {
    try {
      const r = await undiciFetch(`${b}/v1/attestation${search}`, { headers: { accept, 'user-agent': 'gm-relay' }, redirect: 'manual', signal, ...(opts.dispatcher ? { dispatcher: opts.dispatcher } : {}) });
      const bytes = new Uint8Array(await r.arrayBuffer());
      const type = r.headers.get('content-type') ?? '';
      if (!r.ok || !(type.startsWith('application/cbor') || type.startsWith('application/json')) || bytes.length > MAX_LISTED_BUNDLE_BYTES) return undefined;
      return { bytes, type, sim: r.headers.get('gm-tee') === 'sim' };
    } catch {
      return undefined;
    }
  };

  /** The key ids a fetched bundle lists route to the replica that served it (after one re-check if they did not). */
  const servable = async (b: string, got: Fetched): Promise<boolean> => {
    if (!replicas) return true;
    let ids: number[];
    try {
      const bundle = got.type.startsWith('application/json') ? bundleFromJson(JSON.parse(new TextDecoder().decode(got.bytes))) : decodeBundle(got.bytes);
      ids = decodeKeyConfigs(bundle.keys.ohttp).map((k) => k.keyId);
    } catch {
      return false;
    }
    if (replicas.owns(b, ids)) return true;
    await replicas.refresh();
    return replicas.owns(b, ids);
  };

  /** `?all=1` (docs/protocol.md §3.1): each offered replica's bundle for the client's nonce, as one CBOR list. */
  const listBundles = async (bases: readonly string[], search: string, signal: AbortSignal): Promise<Response> => {
    if (bases.length === 0) return noReplica();
    const each = AbortSignal.any([signal, AbortSignal.timeout(opts.listTimeoutMs ?? 10_000)]);
    const got = await Promise.all(bases.map(async (b) => {
      const f = await fetchBundle(b, search, each);
      return f && f.type.startsWith('application/cbor') && (await servable(b, f)) ? f : undefined;
    }));
    const ok = got.filter((g) => g !== undefined);
    if (ok.length === 0) return noReplica();
    const body = encodeBundleList(ok.map((g) => g.bytes));
    opts.observe?.('response', '/v1/attestation', body);
    return new Response(body as Uint8Array<ArrayBuffer>, { headers: { 'content-type': 'application/cbor', 'cache-control': 'no-store', ...(ok.some((g) => g.sim) ? { 'gm-tee': 'sim' } : {}) } });
  };
  return app;
}

/** A gateway's own answer for a request it cannot route (protocol/problem.ts): the same bytes a replica would send. */
function gatewayProblem(e: ReturnType<typeof protocolError>): Response {
  const p = problemFor(e);
  return new Response(JSON.stringify({ ...p.body, error: { code: p.body.code } }), { status: p.status, headers: p.headers });
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
