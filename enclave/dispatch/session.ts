/**
 * Dispatch over the enclave → worker session (protocol/session.ts, docs/protocol.md §14): one handshake per worker
 * key, then each request one sealed message and its answer records, opened as they arrive (a streamed answer is
 * authenticated record by record before its bytes are released; one that ends without its final record fails
 * SESSION_TRUNCATED).
 *
 * A session is bound to one connection (a lane of the transport, enclave/dispatch/transport.ts): its handshake and
 * all its requests travel on that connection, so they reach the one worker process that holds it (`gm worker
 * --processes N`); when the connection ends the session is gone and the lane's next request makes a new one.
 *
 * Rekey: a session is replaced after `rekeyRequests` requests or `rekeyMs`, and at once when the worker's attested
 * key configuration changed; requests in flight finish on the old one. A worker that answers SESSION_UNKNOWN
 * (restarted, or it expired the session) opened nothing: the session is dropped, a new one made, and the request
 * sent once more.
 */
import { type GmError, protocolError, unavailable } from '../../attestation/errors.ts';
import { type BhttpRequest, type BhttpResponse, decodeResponse, encodeRequest, type Field, ResponseDecoder } from '../../protocol/bhttp.ts';
import { initiateSession, type ResponseOpener, type Session } from '../../protocol/session.ts';
import { credentialId } from '../../protocol/worker-auth.ts';
import type { Dispatch } from '../api/openai.ts';
import { type InnerResponse, refusedBy, type TransportResponse } from '../ohttp/client.ts';
import { headersFromFields, streamedResponse } from '../ohttp/messages.ts';
import { type Lane, type PooledTransport, readWhole } from './transport.ts';
import type { VerifiedWorker } from '../workers/registry.ts';

const MEDIA_SESSION = 'application/gm-session';
const MEDIA_SESSION_INIT = 'application/gm-session-init';
const MEDIA_SESSION_REPLY = 'application/gm-session-reply';

export interface SessionDispatchOptions {
  /** Requests per session before a new one (default 100 000). */
  readonly rekeyRequests?: number;
  /** Age of a session before a new one, ms (default 10 min; the worker serves one 30 min). */
  readonly rekeyMs?: number;
  readonly now?: () => number;
  /** Largest answer read whole (non-streamed), as for OHTTP. */
  readonly maxResponseBytes?: number;
}

interface Held {
  /** The session and the lane's connection count when its reply arrived (the connection it is bound to). */
  readonly session: Promise<{ readonly s: Session; readonly connection: number }>;
  readonly createdAt: number;
  /** What `session` resolved to, once it has. */
  ready?: { readonly s: Session; readonly connection: number };
}

const codeOf = (e: GmError) => (e.cause as { code?: string } | undefined)?.code;

/** A field name (RFC 9110 §5.6.2 token) and the bytes a fetch header value may not hold once its edges are trimmed. */
const FIELD_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const BAD_VALUE = /[\0\r\n]/;
const HTTP_WS_EDGES = /^[\t\n\r ]+|[\t\n\r ]+$/g;

/** A session reply is a few dozen bytes (protocol/session.ts); anything far larger is not one. */
const MAX_REPLY_BYTES = 4096;

/**
 * A whole answer as the OpenAI surface reads it: status, fields and content. The fetch-style `headers` and `body`
 * are made only if something asks for them (the surface reads `fields` and `content`); a class, so that the lazy
 * getters live on its prototype instead of being defined on every answer.
 */
class WholeAnswer implements InnerResponse {
  readonly status: number;
  readonly fields: readonly Field[];
  readonly content: Uint8Array;
  #headers: Headers | undefined;
  #body: ReadableStream<Uint8Array> | undefined;
  constructor(res: BhttpResponse) {
    // Refused as a fetch Headers would refuse them (the answer is then a failed dispatch, as when one was built).
    for (const [k, v] of res.headers) if (!FIELD_NAME.test(k) || (BAD_VALUE.test(v) && BAD_VALUE.test(v.replace(HTTP_WS_EDGES, '')))) throw new TypeError('invalid field in the worker answer');
    this.status = res.status;
    this.fields = res.headers;
    this.content = res.content;
  }
  get headers(): Headers {
    return (this.#headers ??= headersFromFields(this.fields));
  }
  get body(): ReadableStream<Uint8Array> {
    const content = this.content;
    return (this.#body ??= new ReadableStream({
      start(ctl) {
        if (content.length > 0) ctl.enqueue(content);
        ctl.close();
      },
    }));
  }
}

export function sessionDispatch(o: SessionDispatchOptions = {}): Dispatch & { sessions(w: VerifiedWorker): number } {
  const now = o.now ?? Date.now;
  const rekeyRequests = o.rekeyRequests ?? 100_000;
  const rekeyMs = o.rekeyMs ?? 10 * 60_000;
  const maxBytes = o.maxResponseBytes ?? 64 * 1024 * 1024;
  // Per connection (a lane's key), so a re-registered worker keeps its sessions while its keys stay the same.
  const held = new WeakMap<object, Held>();
  const made = new WeakMap<PooledTransport, number>();

  const establish = (w: VerifiedWorker, t: PooledTransport, lane: Lane): Held => {
    const session = (async () => {
      const h = await initiateSession(w.keyConfig, w.id, w.credential, { kid: await credentialId(w.credential) });
      const r = await lane.post('/v1/session', MEDIA_SESSION_INIT, h.init, undefined, { authorized: true });
      if (r.status !== 200 || r.contentType !== MEDIA_SESSION_REPLY) throw await refusedBy(r, 'worker');
      const reply = await readWhole(r, MAX_REPLY_BYTES);
      if (!reply) throw protocolError('SESSION_CONFIRM_FAILED', 'session reply has the wrong length');
      const s = await h.finish(reply);
      return { s, connection: lane.connection };
    })();
    const x: Held = { session, createdAt: now() };
    held.set(lane.key, x);
    made.set(t, (made.get(t) ?? 0) + 1);
    // A failed handshake is not kept: the next request tries again.
    session.then(
      (ready) => void (x.ready = ready),
      () => {
        if (held.get(lane.key) === x) held.delete(lane.key);
      },
    );
    return x;
  };

  /** The lane's session when it is established and still usable: no promise to wait on (the common case). */
  const usable = (w: VerifiedWorker, lane: Lane): Session | undefined => {
    const h = held.get(lane.key);
    const x = h?.ready;
    if (!x || now() - h.createdAt >= rekeyMs || x.connection !== lane.connection || x.s.config !== w.keyConfig || x.s.requests >= rekeyRequests) return undefined;
    return x.s;
  };

  const current = async (w: VerifiedWorker, t: PooledTransport, lane: Lane): Promise<Session> => {
    let h = held.get(lane.key);
    if (!h || now() - h.createdAt >= rekeyMs) h = establish(w, t, lane);
    let x = await h.session;
    if (x.connection !== lane.connection || x.s.config !== w.keyConfig || x.s.requests >= rekeyRequests) {
      if (held.get(lane.key) === h) h = establish(w, t, lane);
      else h = held.get(lane.key)!;
      x = await h.session;
    }
    return x.s;
  };

  const exchange = async (w: VerifiedWorker, req: BhttpRequest, stream: boolean, signal: AbortSignal, retried: boolean): Promise<InnerResponse> => {
    const t = w.transport;
    if (!t.lane) throw unavailable('WORKER_UNREACHABLE', 'this transport has no session path');
    const lane = t.lane();
    let r: TransportResponse;
    let response: ResponseOpener;
    let s: Session;
    try {
      s = usable(w, lane) ?? (await current(w, t, lane));
      // node:crypto's AEAD answers at once: no promise or microtask turn for the record layer on the hot path.
      const out = s.sealNow(encodeRequest(req), stream);
      const sealed = out instanceof Promise ? await out : out;
      response = sealed.response;
      r = await lane.post('/v1/session/request', MEDIA_SESSION, sealed.message, signal, { authorized: false, last: true });
    } catch (e) {
      lane.release();
      throw e;
    }
    if (r.status !== 200) {
      const e = await refusedBy(r, 'worker');
      if (codeOf(e) === 'SESSION_UNKNOWN' && !retried) {
        // The worker restarted or forgot the session; nothing was opened, so the request goes once more on a new one.
        const h = held.get(lane.key);
        if (h && (await h.session.catch(() => undefined))?.s === s) held.delete(lane.key);
        return exchange(w, req, stream, signal, true);
      }
      throw e;
    }
    if (r.contentType !== MEDIA_SESSION) {
      r.cancel();
      throw protocolError('SESSION_BAD_RESPONSE', `worker answered content-type ${r.contentType}`);
    }
    if (!stream) {
      // The whole answer is one record: read to its end, opened, decoded; no Headers or stream is made for it.
      let pt: Uint8Array[];
      try {
        const bytes = await readWhole(r, maxBytes + 1024);
        if (!bytes) throw protocolError('RESPONSE_TOO_LARGE', 'session response too large');
        const opened = response.pushNow(bytes);
        pt = opened instanceof Promise ? await opened : opened;
        response.end();
      } catch (e) {
        r.cancel();
        throw e;
      }
      if (pt.length !== 1) throw protocolError('SESSION_DECRYPT_FAILED', 'a whole answer is one record');
      return new WholeAnswer(decodeResponse(pt[0]!).response);
    }
    const it = r.body[Symbol.asyncIterator]();
    const decoder = new ResponseDecoder();
    let ended = false;
    const step = async (): Promise<ReturnType<ResponseDecoder['push']>> => {
      for (;;) {
        const x = await it.next();
        if (x.done) {
          ended = true;
          response.end();
          return decoder.end();
        }
        const evs = [];
        const opened = response.pushNow(x.value);
        for (const pt of opened instanceof Promise ? await opened : opened) evs.push(...decoder.push(pt));
        if (evs.length > 0) return evs;
      }
    };
    return streamedResponse(step, () => ended, () => r.cancel(), 'SESSION_TRUNCATED');
  };

  const dispatch = ((w, req, d) => exchange(w, req, d.stream, d.signal, false)) as Dispatch & { sessions(w: VerifiedWorker): number };
  /** Sessions made to a worker so far (tests: rekeying and re-establishment). */
  dispatch.sessions = (w) => made.get(w.transport) ?? 0;
  return dispatch;
}
