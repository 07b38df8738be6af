/**
 * The OHTTP client side (RFC 9458 §4.3/§4.4; draft-ietf-ohai-chunked-ohttp-08 for streams): encapsulate a binary
 * HTTP request to an attested key configuration, send it through a transport, and open the answer. Streams are
 * opened chunk by chunk: each response chunk is authenticated before its bytes are released, and a message that
 * ends without its final chunk fails (CHUNKED_TRUNCATED) instead of looking complete.
 * The enclave uses it towards workers (undici transport); the tests use it as the client (fetch transport).
 */
import { concat } from '../../attestation/bytes.ts';
import { type GmError, protocolError, unavailable } from '../../attestation/errors.ts';
import { type BhttpRequest, decodeResponse, encodeRequest, type Field, ResponseDecoder } from '../../protocol/bhttp.ts';
import { encapsulateChunkedRequest } from '../../protocol/chunked.ts';
import { MEDIA_OHTTP_CHUNKED_REQ, MEDIA_OHTTP_CHUNKED_RES, MEDIA_OHTTP_REQ, MEDIA_OHTTP_RES } from '../../protocol/media.ts';
import { encapsulateRequest, type KeyConfig } from '../../protocol/ohttp.ts';
import { headersFromFields, streamedResponse } from './messages.ts';

export interface TransportResponse {
  readonly status: number;
  readonly contentType: string;
  readonly body: AsyncIterable<Uint8Array>;
  /** Releases the connection when the caller stops reading early. */
  cancel(): void;
}
export type Transport = (body: Uint8Array, contentType: string, signal: AbortSignal | undefined) => Promise<TransportResponse>;

export interface InnerResponse {
  readonly status: number;
  readonly headers: Headers;
  /**
   * The answer's fields as decoded (names as sent), when the dispatch has them: a reader of one field takes it here
   * (messages.ts `fieldValue` semantics) instead of building `headers`.
   */
  readonly fields?: readonly Field[];
  /** Plaintext body, authenticated piece by piece. */
  readonly body: ReadableStream<Uint8Array>;
  /**
   * The whole plaintext body, when the answer was one `message/ohttp-res` (sendPlain): already authenticated and in
   * memory, so a caller that wants all of it takes it here instead of draining `body` (the same bytes).
   */
  readonly content?: Uint8Array;
}

/**
 * A refused answer (not 200, or not the expected media type) as a GmError for the caller: its opaque code read from
 * a small JSON problem, never its other bytes. `who` names the peer in the message.
 */
export async function refusedBy(t: TransportResponse, who: 'gateway' | 'worker'): Promise<GmError> {
  let code = 'UPSTREAM_REFUSED';
  try {
    let text = '';
    for await (const c of t.body) {
      text += new TextDecoder().decode(c);
      if (text.length > 4096) break;
    }
    const j = JSON.parse(text) as { error?: { code?: unknown } };
    if (typeof j.error?.code === 'string' && /^[A-Z0-9_]{1,64}$/.test(j.error.code)) code = j.error.code;
  } catch {
    t.cancel();
  }
  return unavailable('UPSTREAM_REFUSED', `${who} answered ${t.status} ${code}`, { cause: { status: t.status, code } });
}

/** An answer's body read to its end as one array; undefined when it holds more than `limit` bytes (then cancelled). */
export async function readAll(t: TransportResponse, limit: number): Promise<Uint8Array | undefined> {
  const parts: Uint8Array[] = [];
  let n = 0;
  for await (const c of t.body) {
    n += c.length;
    if (n > limit) {
      t.cancel();
      return undefined;
    }
    parts.push(c);
  }
  return parts.length === 1 ? parts[0]! : concat(...parts);
}

export async function sendPlain(transport: Transport, config: KeyConfig, req: BhttpRequest, signal?: AbortSignal, maxBytes = 64 * 1024 * 1024): Promise<InnerResponse> {
  const { encapsulated, context } = await encapsulateRequest(config, encodeRequest(req));
  const t = await transport(encapsulated, MEDIA_OHTTP_REQ, signal);
  if (t.status !== 200) throw await refusedBy(t, 'gateway');
  if (t.contentType !== MEDIA_OHTTP_RES) {
    t.cancel();
    throw protocolError('OHTTP_BAD_RESPONSE', `gateway answered content-type ${t.contentType}`);
  }
  const all = await readAll(t, maxBytes);
  if (!all) throw protocolError('RESPONSE_TOO_LARGE', 'encapsulated response too large');
  const { response } = decodeResponse(await context.openResponse(all));
  const content = response.content;
  let body: ReadableStream<Uint8Array> | undefined;
  return {
    status: response.status,
    headers: headersFromFields(response.headers),
    content,
    // Made on first use: the enclave takes `content` directly, so most plain answers never need a stream.
    get body() {
      return (body ??= new ReadableStream({
        start(ctl) {
          if (content.length > 0) ctl.enqueue(content);
          ctl.close();
        },
      }));
    },
  };
}

/** Sends a chunked request (one final chunk holding the whole request) and streams the chunked response. */
export async function sendChunked(transport: Transport, config: KeyConfig, req: BhttpRequest, signal?: AbortSignal): Promise<InnerResponse> {
  const sender = await encapsulateChunkedRequest(config);
  const body = await sender.sealChunk(encodeRequest(req), { final: true });
  const t = await transport(body, MEDIA_OHTTP_CHUNKED_REQ, signal);
  if (t.status !== 200) throw await refusedBy(t, 'gateway');
  if (t.contentType !== MEDIA_OHTTP_CHUNKED_RES) {
    t.cancel();
    throw protocolError('OHTTP_BAD_RESPONSE', `gateway answered content-type ${t.contentType}`);
  }
  const opener = sender.openResponse();
  const decoder = new ResponseDecoder();
  const it = t.body[Symbol.asyncIterator]();
  let ended = false;

  /** Reads ciphertext until at least one decoded event is available (or the message ends). */
  const step = async (): Promise<ReturnType<ResponseDecoder['push']>> => {
    for (;;) {
      const r = await it.next();
      if (r.done) {
        ended = true;
        const evs = [];
        for (const pt of await opener.end()) evs.push(...decoder.push(pt));
        evs.push(...decoder.end());
        return evs;
      }
      const evs = [];
      for (const pt of await opener.push(r.value)) evs.push(...decoder.push(pt));
      if (evs.length > 0) return evs;
    }
  };

  return streamedResponse(step, () => ended, () => t.cancel(), 'CHUNKED_TRUNCATED');
}

/** A fetch-based transport (tests, CLI clients). */
export function fetchTransport(url: string, f: typeof fetch = fetch): Transport {
  return async (body, contentType, signal) => {
    const ac = new AbortController();
    signal?.addEventListener('abort', () => ac.abort(signal.reason), { once: true });
    const r = await f(url, { method: 'POST', headers: { 'content-type': contentType, ...(contentType === MEDIA_OHTTP_CHUNKED_REQ ? { incremental: '?1' } : {}) }, body: body as Uint8Array<ArrayBuffer>, signal: ac.signal });
    const reader = r.body?.getReader();
    return {
      status: r.status,
      contentType: (r.headers.get('content-type') ?? '').split(';')[0]!.trim(),
      body: {
        async *[Symbol.asyncIterator]() {
          if (!reader) return;
          for (;;) {
            const x = await reader.read();
            if (x.done) return;
            yield x.value;
          }
        },
      },
      cancel: () => ac.abort(),
    };
  };
}
