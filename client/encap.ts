/**
 * Sealing a question and opening its answer (docs/design.md §5). Non-streaming: one `message/ohttp-req` answered by one
 * `message/ohttp-res` (RFC 9458 §4.3, §4.4). Streaming: a chunked request answered by `message/ohttp-chunked-res`
 * (draft-ietf-ohai-chunked-ohttp-08), opened chunk by chunk and decoded incrementally as binary HTTP, so each SSE
 * event reaches the application as soon as its chunk arrives. A tampered, reordered or truncated answer errors the
 * stream with the protocol module's code.
 */
import { protocolError } from '../attestation/errors.ts';
import { decodeResponse, type Field, ResponseDecoder } from '../protocol/bhttp.ts';
import { encapsulateChunkedRequest, openStream } from '../protocol/chunked.ts';
import { MEDIA_OHTTP_CHUNKED_REQ, MEDIA_OHTTP_CHUNKED_RES, MEDIA_OHTTP_REQ, MEDIA_OHTTP_RES } from '../protocol/media.ts';
import { prepareEncap, type PreparedEncap } from '../protocol/hpke.ts';
import { type ClientResponseContext, encapsulateRequest, type KeyConfig, selectSuite } from '../protocol/ohttp.ts';

export interface Opened {
  readonly head: { readonly status: number; readonly headers: readonly Field[] };
  /** The inner response content; `onTrailers` runs before the stream closes. */
  body(onTrailers: (t: readonly Field[]) => Promise<void>): ReadableStream<Uint8Array>;
}

export interface Question {
  readonly body: Uint8Array;
  readonly contentType: string;
  readonly accept: string;
  /** Extra outer headers (chunked messages carry `Incremental: ?1`, docs/protocol.md §3). */
  readonly headers: Readonly<Record<string, string>>;
  open(r: Response): Promise<Opened>;
}

const MAX_RESPONSE_BYTES = 64 * 1024 * 1024;

/**
 * One Encap per key configuration made ahead of the request that uses it (hpke.ts `prepareEncap`; RFC 9180 §5.1.1:
 * Encap depends on neither the message nor `info`). Each request takes the one that is ready, or being made, and the
 * next is made once this request has left (the next turn of the event loop: `setImmediate` where there is one, a
 * zero timer in browsers; Node's zero timer waits a millisecond), so a request's X25519 and ML-KEM work runs while the
 * client waits for an answer instead of in front of its next question. The CPU spent is the same; every request
 * still has its own ephemeral key; while the client is idle one Encap waits here, its secret in memory as an
 * in-flight request's is, and goes with the configuration when that is replaced.
 */
const ahead = new WeakMap<KeyConfig, Promise<PreparedEncap | undefined>>();
const nextTurn: (f: () => void) => void = typeof setImmediate === 'function' ? (f) => void setImmediate(f) : (f) => void setTimeout(f, 0);

export function takePrepared(config: KeyConfig): Promise<PreparedEncap | undefined> {
  const p = ahead.get(config);
  ahead.delete(config);
  nextTurn(() => {
    // A failure here costs only the head start: the request that finds none encapsulates for itself.
    if (!ahead.has(config)) ahead.set(config, prepareEncap(selectSuite(config), config.publicKey).catch(() => undefined));
  });
  return p ?? Promise.resolve(undefined);
}

/** A request encapsulated to `config` with the Encap made ahead for it, when one is ready or being made. */
export async function encapsulateAhead(config: KeyConfig, inner: Uint8Array): Promise<{ encapsulated: Uint8Array; context: ClientResponseContext }> {
  const prepared = await takePrepared(config);
  return encapsulateRequest(config, inner, prepared ? { prepared } : {});
}

export async function sealQuestion(config: KeyConfig, inner: Uint8Array, streaming: boolean): Promise<Question> {
  if (streaming) return sealChunked(config, inner);
  const { encapsulated, context } = await encapsulateAhead(config, inner);
  return {
    body: encapsulated,
    contentType: MEDIA_OHTTP_REQ,
    accept: MEDIA_OHTTP_RES,
    headers: {},
    async open(r) {
      expectType(r, MEDIA_OHTTP_RES);
      const enc = await readAll(r);
      const { response } = decodeResponse(await context.openResponse(enc));
      return {
        head: { status: response.status, headers: response.headers },
        body: (onTrailers) => new ReadableStream<Uint8Array>({
          async start(ctl) {
            await onTrailers(response.trailers);
            if (response.content.length > 0) ctl.enqueue(response.content);
            ctl.close();
          },
        }),
      };
    },
  };
}

function expectType(r: Response, want: string): void {
  const ct = (r.headers.get('content-type') ?? '').split(';')[0]!.trim();
  if (ct !== want) throw protocolError('OHTTP_UNEXPECTED_MEDIA_TYPE', `the gateway answered ${ct || 'no content type'}, expected ${want}`);
}

async function readAll(r: Response): Promise<Uint8Array> {
  const b = new Uint8Array(await r.arrayBuffer());
  if (b.length > MAX_RESPONSE_BYTES) throw protocolError('OHTTP_MALFORMED', 'encapsulated response too large');
  return b;
}

/** Decodes bhttp events from a stream of opened plaintext pieces into head + content stream. */
export async function decodeStreamed(plain: ReadableStream<Uint8Array>): Promise<Opened> {
  const dec = new ResponseDecoder();
  const reader = plain.getReader();
  const pending: Uint8Array[] = [];
  let head: Opened['head'] | undefined;
  let trailers: readonly Field[] = [];
  let ended = false;
  const pump = async (): Promise<boolean> => {
    const { done, value } = await reader.read();
    const evs = done ? dec.end() : dec.push(value);
    for (const e of evs) {
      if (e.type === 'head') head = { status: e.status, headers: e.headers };
      else if (e.type === 'content') pending.push(e.data);
      else if (e.type === 'trailers') trailers = e.trailers;
      else if (e.type === 'end') ended = true;
    }
    return !done;
  };
  while (!head) {
    if (!(await pump())) {
      if (!head) throw protocolError('BHTTP_TRUNCATED', 'the answer ended before its response head');
    }
  }
  const h = head;
  return {
    head: h,
    body: (onTrailers) => new ReadableStream<Uint8Array>({
      async pull(ctl) {
        while (pending.length === 0 && !ended) {
          const more = await pump();
          if (!more && !ended) throw protocolError('BHTTP_TRUNCATED', 'the answer ended early');
        }
        while (pending.length > 0) ctl.enqueue(pending.shift()!);
        if (ended) {
          await onTrailers(trailers);
          ctl.close();
        }
      },
      cancel(reason) {
        return reader.cancel(reason);
      },
    }),
  };
}

/** The whole question goes out as one final chunk; what streams is the answer (one chunk per SSE event). */
async function sealChunked(config: KeyConfig, inner: Uint8Array): Promise<Question> {
  const prepared = await takePrepared(config);
  const sender = await encapsulateChunkedRequest(config, prepared ? { prepared } : {});
  const body = await sender.sealChunk(inner, { final: true });
  return {
    body,
    contentType: MEDIA_OHTTP_CHUNKED_REQ,
    accept: MEDIA_OHTTP_CHUNKED_RES,
    headers: { incremental: '?1' },
    async open(r) {
      expectType(r, MEDIA_OHTTP_CHUNKED_RES);
      if (!r.body) throw protocolError('CHUNKED_TRUNCATED', 'the chunked answer has no body');
      return decodeStreamed(r.body.pipeThrough(openStream(sender.openResponse())));
    },
  };
}
