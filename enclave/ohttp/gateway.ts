/**
 * The OHTTP gateway layer (RFC 9458 §4.3/§4.4; draft-ietf-ohai-chunked-ohttp-08 §6 for streams; docs/design.md §5):
 * limits → decapsulate → binary HTTP → the inner service (inner.ts: fields and content in, status, fields and content
 * out; the enclave's OpenAI surface) or a fetch-style handler (the worker's forwarder) → binary HTTP → encapsulate. A `message/ohttp-req` gets one `message/ohttp-res`; a
 * `message/ohttp-chunked-req` gets a `message/ohttp-chunked-res` whose chunks are sealed as the inner body
 * produces them (never buffered whole; backpressure comes from the reader of the outer response, and cancelling it
 * cancels the inner body, which cancels the upstream request).
 *
 * Failures before the inner request is decrypted are opaque GmErrors (the caller maps them to 4xx/5xx + code): the
 * body limit is enforced before any decryption, and a concurrency slot is taken only once the body has arrived. A
 * request that decrypts but is not a valid inner request is answered inside the encryption (docs/protocol.md §8).
 */
import { concat } from '../../attestation/bytes.ts';
import { GmError, protocolError } from '../../attestation/errors.ts';
import { type BhttpRequest, decodeRequest, encodeResponse, responseStream } from '../../protocol/bhttp.ts';
import { decapsulateChunkedRequest } from '../../protocol/chunked.ts';
import { MEDIA_OHTTP_CHUNKED_REQ, MEDIA_OHTTP_CHUNKED_RES, MEDIA_OHTTP_REQ, MEDIA_OHTTP_RES } from '../../protocol/media.ts';
import { decapsulateRequest, type GatewayKey } from '../../protocol/ohttp.ts';
import type { RecentReplayCache, ReplayCache } from '../../protocol/replay.ts';
import { formatRequestTime, GATEWAY_TIME_FIELD, parseRequestTime, REQUEST_TIME_FIELD, type RequestTimeWindow, withinWindow } from '../../protocol/request-time.ts';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import { problemAnswer } from '../http/errors.ts';
import { readIncomingLimited, readLimited, tooLarge } from '../http/limits.ts';
import { answerOf, type BodySource, type InnerAnswer, type InnerService, readSource, streamOf } from './inner.ts';
import { checkInnerRequest, requestFromBhttp } from './messages.ts';

export type InnerHandler = (req: Request) => Promise<Response>;

/** Default budget of chunks in one chunked request: 4 MiB in 4 KiB chunks; a 1-byte chunk costs as much as a full one. */
export const DEFAULT_MAX_REQUEST_CHUNKS = 1024;

export interface GatewayOptions {
  readonly keys: () => readonly GatewayKey[];
  readonly replay: ReplayCache;
  /** The inner service without web objects (the enclave's OpenAI surface); takes precedence over `handler`. */
  readonly service?: InnerService;
  /** A fetch-style inner handler (the worker's forwarder on its OHTTP hop), used when `service` is not given. */
  readonly handler?: InnerHandler;
  /** Encapsulated request size limit (checked before decryption). */
  readonly maxRequestBytes: number;
  /**
   * The request time rule (protocol/request-time.ts): a request whose inner request carries `gm-sent-at` must be
   * inside `window` and is remembered by `recent` only until it leaves it; one without is remembered by `replay` for
   * the key's lifetime, or refused when `required`. Without this option the field is ignored (and still removed).
   */
  readonly requestTime?: {
    readonly recent: RecentReplayCache;
    readonly window: RequestTimeWindow;
    readonly required: boolean;
    readonly now: () => number;
  };
  /**
   * Chunks accepted in one `message/ohttp-chunked-req` (each costs an AEAD open whatever its size); past it the
   * request fails as a decryption failure before more chunks are opened. Default DEFAULT_MAX_REQUEST_CHUNKS.
   */
  readonly maxRequestChunks?: number;
  /** Inner response size limit for non-chunked responses (which must be sealed whole). */
  readonly maxResponseBytes?: number;
  /**
   * Authenticates the sender over the whole encapsulated body, before a slot is taken or anything is decrypted (a
   * worker's gateway: the MAC of an enclave it registered with, protocol/worker-auth.ts). Throws to refuse.
   */
  readonly authenticate?: (body: Uint8Array) => Promise<void>;
  /**
   * Takes a concurrency slot once the whole body has arrived, before any decryption (a slow body holds a socket, never
   * a slot); returns its release, which runs when the exchange is over. Throws (e.g. TOO_MANY_STREAMS) to refuse.
   */
  readonly admit?: () => () => void;
  /** Called when the outer exchange is over (stream finished, failed or cancelled), with when it began (performance.now()). */
  readonly onDone?: (outcome: 'ok' | 'cancelled' | 'error', startedAt: number) => void;
  /**
   * Called with the code when a decrypted request is not a valid inner request; it is answered inside the encrypted
   * response, so the outer exchange looks like any other answered request. Never given the offending bytes.
   */
  readonly onInnerRejected?: (code: string) => void;
  /**
   * The Node request stream behind `req` (@hono/node-server passes it as `c.env.incoming`): when given, the body is
   * read from it directly (same limit), skipping the web-stream adapter. `req` still supplies headers and signal.
   */
  readonly incoming?: Readable;
}

/** `{ incoming }` when the request came through @hono/node-server (its `env.incoming`), else nothing. */
export function nodeIncoming(c: { env: unknown }): { incoming?: Readable } {
  const incoming = (c.env as { incoming?: Readable } | undefined)?.incoming;
  return incoming && typeof incoming.on === 'function' ? { incoming } : {};
}

/** The encapsulated request, read whole within the limit before any decryption. */
function readBody(req: Request, o: GatewayOptions): Promise<Uint8Array> {
  return o.incoming ? readIncomingLimited(o.incoming, o.maxRequestBytes) : readLimited(req.body, o.maxRequestBytes);
}

export function mediaType(h: string | null): string {
  // The gateway's own types as clients send them, without parameters: nothing to split or fold.
  if (h === MEDIA_OHTTP_REQ || h === MEDIA_OHTTP_CHUNKED_REQ) return h;
  return (h ?? '').split(';')[0]!.trim().toLowerCase();
}

/** What the gateway needs of the outer request, from a web Request or straight from node:http. */
interface Outer {
  readonly contentType: string | null;
  readonly contentLength: string | null;
  readonly signal: AbortSignal | undefined;
  readBody(): Promise<Uint8Array>;
}

/** The outer answer: one sealed message, or the sealed chunks as the inner body produces them. */
type Answer = { readonly contentType: string; readonly bytes: Uint8Array } | { readonly contentType: string; readonly chunks: BodySource };

const ANSWER_HEADERS = { 'cache-control': 'no-store' } as const;

/** Handles one POST to the gateway endpoint. Throws GmError for failures the peer sees as an opaque code. */
export async function handleOhttp(req: Request, o: GatewayOptions): Promise<Response> {
  const a = await exchangeOf({ contentType: req.headers.get('content-type'), contentLength: req.headers.get('content-length'), signal: req.signal, readBody: () => readBody(req, o) }, o);
  if ('bytes' in a) return new Response(a.bytes as Uint8Array<ArrayBuffer>, { status: 200, headers: { 'content-type': a.contentType, ...ANSWER_HEADERS } });
  // Incremental: ?1 tells intermediaries to forward each chunk at once (draft-ietf-ohai-chunked-ohttp §3).
  return new Response(streamOf(a.chunks), { status: 200, headers: { 'content-type': a.contentType, ...ANSWER_HEADERS, incremental: '?1' } });
}

/**
 * The same exchange on node:http directly (the enclave's hot path): no web Request or Response around the outer
 * message. Failures before the answer began go to `fail`, which writes the opaque problem; a stream that fails later
 * is cut (the client sees no final chunk: CHUNKED_TRUNCATED).
 */
export async function serveOhttp(req: IncomingMessage, res: ServerResponse, o: GatewayOptions, extraHeaders: Readonly<Record<string, string>>): Promise<void> {
  const ac = new AbortController();
  res.once('close', () => {
    if (!res.writableFinished) ac.abort(new GmError('unavailable', 'CLIENT_CANCELLED', 'client went away'));
  });
  const h = req.headers;
  const a = await exchangeOf({ contentType: h['content-type'] ?? null, contentLength: h['content-length'] ?? null, signal: ac.signal, readBody: () => readIncomingLimited(req, o.maxRequestBytes) }, o);
  if ('bytes' in a) {
    // A flat name/value list: node writes it as given, without walking an object per response.
    const head: string[] = [];
    for (const k in extraHeaders) head.push(k, extraHeaders[k]!);
    head.push('content-type', a.contentType, 'cache-control', ANSWER_HEADERS['cache-control'], 'content-length', String(a.bytes.length));
    res.writeHead(200, head);
    res.end(a.bytes);
    return;
  }
  // The head leaves with the first sealed chunk (the response head, ready at once): one write, not two.
  res.writeHead(200, { ...extraHeaders, 'content-type': a.contentType, ...ANSWER_HEADERS, incremental: '?1' });
  const chunks = a.chunks;
  ac.signal.addEventListener('abort', () => void chunks.cancel(ac.signal.reason).catch(() => undefined), { once: true });
  try {
    for (;;) {
      const v = await chunks.read();
      if (v === undefined) break;
      if (!res.write(v)) await drained(res);
    }
    res.end();
  } catch {
    res.destroy(); // truncated on the wire; the gateway already counted the failure (onDone)
  }
}

function drained(res: ServerResponse): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = (e?: Error) => {
      res.off('drain', onDrain);
      res.off('close', onClose);
      if (e) reject(e);
      else resolve();
    };
    const onDrain = () => done();
    const onClose = () => done(new Error('closed'));
    res.on('drain', onDrain);
    res.on('close', onClose);
  });
}

async function exchangeOf(req: Outer, o: GatewayOptions): Promise<Answer> {
  const t0 = performance.now();
  const type = mediaType(req.contentType);
  const cl = req.contentLength;
  if (cl !== null && (!/^\d+$/.test(cl) || Number(cl) > o.maxRequestBytes)) throw tooLarge(o.maxRequestBytes);
  if (type !== MEDIA_OHTTP_REQ && type !== MEDIA_OHTTP_CHUNKED_REQ) {
    throw new GmError('protocol', 'UNSUPPORTED_MEDIA_TYPE', `content-type must be ${MEDIA_OHTTP_REQ} or ${MEDIA_OHTTP_CHUNKED_REQ}`);
  }
  const body = await req.readBody();
  if (o.authenticate) await o.authenticate(body);
  const release = o.admit?.() ?? (() => undefined);
  let finished = false;
  const exchange: Exchange = {
    done(x) {
      if (finished) return;
      finished = true;
      release();
      o.onDone?.(x, t0);
    },
  };
  try {
    return await (type === MEDIA_OHTTP_REQ ? plain(req.signal, body, o, exchange) : chunked(req.signal, body, o, exchange));
  } catch (e) {
    // Failed before an answer existed: the slot is free again (no onDone: the caller counts the thrown error).
    if (!finished) {
      finished = true;
      release();
    }
    throw e;
  }
}

interface Exchange {
  done(outcome: 'ok' | 'cancelled' | 'error'): void;
}

/** A signal that never aborts, for an exchange whose outer request has none. */
const NEVER = new AbortController().signal;

/**
 * From the decrypted bytes to the inner answer. A request that decrypted but is not valid binary HTTP or not a
 * valid HTTP request is answered by a sealed problem (nothing reaches the service). Only a replayed encapsulated
 * key fails outside the encryption, as the same opaque error as every other decryption failure.
 */
async function answer(signal: AbortSignal | undefined, decrypted: Uint8Array, keyId: number, enc: Uint8Array, o: GatewayOptions): Promise<InnerAnswer> {
  let inner: BhttpRequest | Request;
  const rt = o.requestTime;
  let now = 0;
  try {
    const { request } = decodeRequest(decrypted);
    const sentAt = rt ? parseRequestTime(request.headers) : undefined;
    if (rt && sentAt !== undefined) {
      now = rt.now();
      if (!withinWindow(sentAt, now, rt.window)) throw protocolError('REQUEST_TIME_SKEW', 'the request time is outside the accepted window');
      rt.recent.check(keyId, enc, sentAt + rt.window.pastMs);
    } else {
      if (rt?.required) throw protocolError('REQUEST_TIME_REQUIRED', `this gateway requires ${REQUEST_TIME_FIELD}`);
      o.replay.check(keyId, enc);
    }
    // The request time field is the gateway's; the inner service never sees it.
    const stripped = request.headers.some(([k]) => k.toLowerCase() === REQUEST_TIME_FIELD) ? { ...request, headers: request.headers.filter(([k]) => k.toLowerCase() !== REQUEST_TIME_FIELD) } : request;
    if (o.service) {
      inner = stripped;
      checkInnerRequest(inner);
    } else inner = requestFromBhttp(stripped, signal);
  } catch (e) {
    if (!(e instanceof GmError) || e.code === 'OHTTP_REPLAY' || e.code === 'OHTTP_KEY_EXPIRED' || e.code === 'REPLAY_CACHE_FULL') throw e;
    o.onInnerRejected?.(e.code);
    // The sender's clock is off: the sealed answer carries the gateway's, so a client can correct it and retry once.
    return problemAnswer(new GmError(e.kind, e.code, 'invalid inner request'), e.code === 'REQUEST_TIME_SKEW' ? [[GATEWAY_TIME_FIELD, formatRequestTime(now)]] : []);
  }
  if (o.service) return o.service(inner as BhttpRequest, signal ?? NEVER);
  if (!o.handler) throw new GmError('config', 'GATEWAY_NO_HANDLER', 'the gateway has no inner service');
  return answerOf(await o.handler(inner as Request));
}

async function plain(signal: AbortSignal | undefined, body: Uint8Array, o: GatewayOptions, x: Exchange): Promise<Answer> {
  const { request, context } = await decapsulateRequest(o.keys(), body);
  const inner = await answer(signal, request, context.keyId, context.enc, o);
  const limit = o.maxResponseBytes ?? 64 * 1024 * 1024;
  let content: Uint8Array;
  try {
    if (inner.content && inner.content.length > limit) throw tooLarge(limit);
    content = inner.content ?? (inner.body ? await readSource(inner.body, limit) : new Uint8Array(0));
  } catch (e) {
    x.done('error');
    throw e instanceof GmError && e.code === 'TOO_LARGE' ? protocolError('RESPONSE_TOO_LARGE', 'inner response too large for a non-chunked exchange') : e;
  }
  const sealed = await context.sealResponse(encodeResponse({ informational: [], status: inner.status, headers: inner.headers, content, trailers: [] }));
  x.done('ok');
  return { contentType: MEDIA_OHTTP_RES, bytes: sealed };
}

async function chunked(signal: AbortSignal | undefined, body: Uint8Array, o: GatewayOptions, x: Exchange): Promise<Answer> {
  // The request is read whole within the limit before any decryption (it is bounded); only the response streams.
  const opener = decapsulateChunkedRequest(o.keys(), { maxChunk: o.maxRequestBytes, maxChunks: o.maxRequestChunks ?? DEFAULT_MAX_REQUEST_CHUNKS });
  const parts = [...(await opener.push(body)), ...(await opener.end())];
  const bytes = parts.length === 1 ? parts[0]! : concat(...parts);
  const inner = await answer(signal, bytes, opener.keyId!, opener.enc!, o);
  const sealer = await opener.sealResponse();
  let head: Uint8Array | undefined = await sealer.sealChunk(responseStream.head(inner.status, inner.headers));
  // A whole answer is one content piece; a streamed one is sealed piece by piece as the service produces it.
  let whole = inner.content && inner.content.length > 0 ? inner.content : undefined;
  const innerBody = inner.body;
  let over = false;
  const chunks: BodySource = {
    async read() {
      if (over) return undefined;
      if (head) {
        const h = head;
        head = undefined;
        return h;
      }
      try {
        let v: Uint8Array | undefined;
        if (whole) {
          v = whole;
          whole = undefined;
        } else if (innerBody) {
          do v = await innerBody.read();
          while (v !== undefined && v.length === 0);
        }
        if (over) return undefined; // cancelled while the service was producing
        if (v === undefined) {
          over = true;
          const fin = await sealer.sealChunk(responseStream.end(), { final: true });
          x.done('ok');
          return fin;
        }
        return await sealer.sealChunk(responseStream.content(v));
      } catch (e) {
        over = true;
        x.done('error');
        throw e; // the client sees a truncated message (no final chunk): CHUNKED_TRUNCATED, never a forged end
      }
    },
    async cancel(reason) {
      if (over) return;
      over = true;
      x.done('cancelled');
      await innerBody?.cancel(reason).catch(() => undefined);
    },
  };
  return { contentType: MEDIA_OHTTP_CHUNKED_RES, chunks };
}
