/**
 * The OHTTP gateway layer (RFC 9458 §4.3/§4.4; draft-ietf-ohai-chunked-ohttp-08 §6 for streams; DESIGN.md §5):
 * limits → decapsulate → binary HTTP → the inner handler (a fetch-style function: the enclave's OpenAI surface, or
 * the worker's forwarder) → binary HTTP → encapsulate. A `message/ohttp-req` gets one `message/ohttp-res`; a
 * `message/ohttp-chunked-req` gets a `message/ohttp-chunked-res` whose chunks are sealed as the inner body
 * produces them (never buffered whole; backpressure comes from the reader of the outer response, and cancelling it
 * cancels the inner body, which cancels the upstream request).
 *
 * Failures before the inner request exists are opaque GmErrors (the caller maps them to 4xx/5xx + code): the body
 * limit is enforced before any decryption.
 */
import { GmError, protocolError } from '../../attestation/errors.ts';
import { decodeRequest, encodeResponse, responseStream } from '../../protocol/bhttp.ts';
import { decapsulateChunkedRequest } from '../../protocol/chunked.ts';
import { MEDIA_OHTTP_CHUNKED_REQ, MEDIA_OHTTP_CHUNKED_RES, MEDIA_OHTTP_REQ, MEDIA_OHTTP_RES } from '../../protocol/media.ts';
import { decapsulateRequest, type GatewayKey } from '../../protocol/ohttp.ts';
import type { ReplayCache } from '../../protocol/replay.ts';
import type { Readable } from 'node:stream';
import { readIncomingLimited, readLimited, tooLarge } from '../http/limits.ts';
import { fieldsFromHeaders, requestFromBhttp } from './messages.ts';

export type InnerHandler = (req: Request) => Promise<Response>;

export interface GatewayOptions {
  readonly keys: () => readonly GatewayKey[];
  readonly replay: ReplayCache;
  readonly handler: InnerHandler;
  /** Encapsulated request size limit (checked before decryption). */
  readonly maxRequestBytes: number;
  /** Inner response size limit for non-chunked responses (which must be sealed whole). */
  readonly maxResponseBytes?: number;
  /** Called when the outer exchange is over (stream finished, failed or cancelled). */
  readonly onDone?: (outcome: 'ok' | 'cancelled' | 'error') => void;
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
  return (h ?? '').split(';')[0]!.trim().toLowerCase();
}

/** Handles one POST to the gateway endpoint. Throws GmError for failures the peer sees as an opaque code. */
export async function handleOhttp(req: Request, o: GatewayOptions): Promise<Response> {
  const type = mediaType(req.headers.get('content-type'));
  const cl = req.headers.get('content-length');
  if (cl !== null && (!/^\d+$/.test(cl) || Number(cl) > o.maxRequestBytes)) throw tooLarge(o.maxRequestBytes);
  if (type === MEDIA_OHTTP_REQ) return plain(req, o);
  if (type === MEDIA_OHTTP_CHUNKED_REQ) return chunked(req, o);
  throw new GmError('protocol', 'UNSUPPORTED_MEDIA_TYPE', `content-type must be ${MEDIA_OHTTP_REQ} or ${MEDIA_OHTTP_CHUNKED_REQ}`);
}

async function plain(req: Request, o: GatewayOptions): Promise<Response> {
  const body = await readBody(req, o);
  const { request, context } = await decapsulateRequest(o.keys(), body, { replay: o.replay });
  const inner = await o.handler(requestFromBhttp(decodeRequest(request).request, req.signal));
  let content: Uint8Array;
  try {
    content = await readLimited(inner.body, o.maxResponseBytes ?? 64 * 1024 * 1024);
  } catch (e) {
    o.onDone?.('error');
    throw e instanceof GmError && e.code === 'TOO_LARGE' ? protocolError('RESPONSE_TOO_LARGE', 'inner response too large for a non-chunked exchange') : e;
  }
  const sealed = await context.sealResponse(encodeResponse({ informational: [], status: inner.status, headers: fieldsFromHeaders(inner.headers), content, trailers: [] }));
  o.onDone?.('ok');
  return new Response(sealed as Uint8Array<ArrayBuffer>, { status: 200, headers: { 'content-type': MEDIA_OHTTP_RES, 'cache-control': 'no-store' } });
}

async function chunked(req: Request, o: GatewayOptions): Promise<Response> {
  // The request is read whole within the limit before any decryption (it is bounded); only the response streams.
  const body = await readBody(req, o);
  const opener = decapsulateChunkedRequest(o.keys(), { replay: o.replay, maxChunk: o.maxRequestBytes });
  const parts = [...(await opener.push(body)), ...(await opener.end())];
  let n = 0;
  for (const p of parts) n += p.length;
  const bytes = new Uint8Array(n);
  let off = 0;
  for (const p of parts) {
    bytes.set(p, off);
    off += p.length;
  }
  const inner = await o.handler(requestFromBhttp(decodeRequest(bytes).request, req.signal));
  const sealer = await opener.sealResponse();
  const head = await sealer.sealChunk(responseStream.head(inner.status, fieldsFromHeaders(inner.headers)));
  const innerBody = inner.body?.getReader();
  let sentHead = false;
  let finished = false;
  const done = (x: 'ok' | 'cancelled' | 'error') => {
    if (!finished) {
      finished = true;
      o.onDone?.(x);
    }
  };
  const out = new ReadableStream<Uint8Array>(
    {
      async pull(ctl) {
        if (!sentHead) {
          sentHead = true;
          ctl.enqueue(head);
          return;
        }
        try {
          const r = innerBody ? await innerBody.read() : { done: true as const, value: undefined };
          if (r.done) {
            ctl.enqueue(await sealer.sealChunk(responseStream.end(), { final: true }));
            ctl.close();
            done('ok');
            return;
          }
          if (r.value.length > 0) ctl.enqueue(await sealer.sealChunk(responseStream.content(r.value)));
        } catch (e) {
          done('error');
          ctl.error(e); // the client sees a truncated message (no final chunk): CHUNKED_TRUNCATED, never a forged end
        }
      },
      async cancel(reason) {
        done('cancelled');
        await innerBody?.cancel(reason).catch(() => undefined);
      },
    },
    { highWaterMark: 0 },
  );
  // Incremental: ?1 tells intermediaries to forward each chunk at once (draft-ietf-ohai-chunked-ohttp §3).
  return new Response(out, { status: 200, headers: { 'content-type': MEDIA_OHTTP_CHUNKED_RES, 'cache-control': 'no-store', incremental: '?1' } });
}
