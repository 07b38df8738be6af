/**
 * The worker's end of the enclave → worker session (protocol/session.ts, docs/protocol.md §14).
 *
 *   POST /v1/session          handshake: body `init` (application/gm-session-init), header gm-worker-auth (the
 *                             enclave's credential MAC over it);
 *                             answer `reply` (application/gm-session-reply)
 *   POST /v1/session/request  one request message; answer the response records (application/gm-session)
 *
 * The request path runs on node:http directly (no web Request/Response): body read within the limit, the session
 * found by its id, the request opened once, the inner request checked and forwarded to the upstream as fields, the
 * answer sealed record by record and written with the socket's backpressure. One exchange object per request carries
 * it through; node's events reach it through listeners shared by all requests, and with a synchronous AEAD
 * (node:crypto) the path runs from the body's end to the answer's write without a promise.
 *
 * A session is bound to the connection its handshake arrived on (docs/protocol.md §14.4): a request message is
 * opened only when it arrives on that same connection, and the session is forgotten when the connection closes. So
 * the process that accepted the connection (`gm worker --processes N`) is the only one that ever holds the session,
 * and a message replayed on any other connection meets no session, whichever process takes it.
 * Sessions are kept in memory only (a restarted worker knows none: the enclave is told SESSION_UNKNOWN and makes a
 * new one), at most `maxPerConnection` per connection and `maxPerCredential` per enclave credential (the oldest goes
 * first), each for `lifetimeMs`; those under a retired gateway key or a replaced credential are dropped, so their
 * keys are forgotten.
 * Errors before a request is opened are plain coded answers; all open failures are SESSION_DECRYPT_FAILED to the peer.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { GmError, protocolError } from '../attestation/errors.ts';
import { decodeRequest, encodeResponse, responseStream, type Field } from '../protocol/bhttp.ts';
import type { GatewayKey } from '../protocol/ohttp.ts';
import { acceptSession, type OpenedRequest, type ResponseSealer, type SessionResponder, sessionIdOf } from '../protocol/session.ts';
import { asGmError, logError, statusFor } from '../enclave/http/errors.ts';
import { tooLarge } from '../enclave/http/limits.ts';
import type { Logger } from '../enclave/log.ts';
import { checkInnerRequest } from '../enclave/ohttp/messages.ts';
import type { AnswerSink, FieldForwarder, UpstreamExchange } from './forward.ts';

export const MEDIA_SESSION = 'application/gm-session';
const EMPTY = new Uint8Array(0);
/** The handshake's media type, also the `type` its worker-auth MAC covers (so a request MAC cannot pass for it). */
export const MEDIA_SESSION_INIT = 'application/gm-session-init';
export const MEDIA_SESSION_REPLY = 'application/gm-session-reply';
export const SESSION_PATH = '/v1/session';
export const SESSION_REQUEST_PATH = '/v1/session/request';

export interface SessionGatewayOptions {
  readonly workerId: string;
  readonly keys: () => readonly GatewayKey[];
  readonly forward: FieldForwarder;
  readonly log: Logger;
  readonly maxRequestBytes: number;
  /** Inner response limit when the enclave asked for one record (not streamed). */
  readonly maxResponseBytes?: number;
  /** Takes a concurrency slot (throws TOO_MANY_STREAMS); returns its release. */
  readonly admit: () => () => void;
  readonly now?: () => number;
  /** How long a session is served (default 30 min; enclaves rekey well before). */
  readonly lifetimeMs?: number;
  /** Sessions per enclave credential (default 1024: one per connection of the enclave's lanes, and then some). */
  readonly maxPerCredential?: number;
  /** Sessions per connection (default 2: the current one and the one it replaced, for exchanges still queued). */
  readonly maxPerConnection?: number;
  readonly onDone?: (outcome: 'ok' | 'cancelled' | 'error', startedAt: number) => void;
  /** Each error answered: in clear (`sealed` false) or inside the session. */
  readonly onError?: (code: string, sealed: boolean) => void;
  readonly headers?: Readonly<Record<string, string>>;
}

/** What a session is bound to: the connection (node's socket object) its handshake arrived on. */
export type Connection = object & { once(event: 'close', f: () => void): unknown };

interface Entry {
  readonly responder: SessionResponder;
  readonly connection: Connection;
  readonly kid: string;
  readonly keyId: number;
  readonly expiresAt: number;
}

export interface SessionGateway {
  /**
   * Handshake (a registered enclave's credential and its id, from the auth header already checked over `init`) on
   * `connection`, the only one the session then serves.
   */
  handshake(kid: string, credential: Uint8Array, init: Uint8Array, connection: Connection): Promise<Uint8Array>;
  /** The lean request path; true when it took the request. */
  direct(req: IncomingMessage, res: ServerResponse): boolean;
  /** Forgets the sessions made under a gateway key that retired, or under an enclave credential replaced. */
  dropKey(keyId: number): void;
  dropCredential(kid: string): void;
  readonly size: number;
}

/** A session's key in the table: its id in hex. */
const idKey = (id: Uint8Array) => Buffer.from(id.buffer, id.byteOffset, id.length).toString('hex');

export function createSessionGateway(o: SessionGatewayOptions): SessionGateway {
  const sessions = new Map<string, Entry>();
  const now = o.now ?? Date.now;
  const lifetime = o.lifetimeMs ?? 30 * 60_000;
  const perCredential = o.maxPerCredential ?? 1024;
  const perConnection = o.maxPerConnection ?? 2;
  // Connections that hold sessions: each forgets its sessions when it closes.
  const watched = new WeakSet<Connection>();
  const extra = o.headers ?? {};

  const sweep = () => {
    const t = now();
    for (const [k, e] of sessions) if (e.expiresAt <= t) sessions.delete(k);
  };

  const handshake = async (kid: string, credential: Uint8Array, init: Uint8Array, connection: Connection): Promise<Uint8Array> => {
    const a = await acceptSession(o.keys(), o.workerId, credential, kid, init);
    sweep();
    // Map order is insertion order: the first entries of this credential (or connection) are its oldest sessions.
    const mine = [...sessions].filter(([, e]) => e.kid === kid);
    for (let i = 0; i <= mine.length - perCredential; i++) sessions.delete(mine[i]![0]);
    const here = [...sessions].filter(([, e]) => e.connection === connection);
    for (let i = 0; i <= here.length - perConnection; i++) sessions.delete(here[i]![0]);
    if (!watched.has(connection)) {
      watched.add(connection);
      connection.once('close', () => {
        for (const [k, e] of sessions) if (e.connection === connection) sessions.delete(k);
      });
    }
    sessions.set(idKey(a.responder.id), { responder: a.responder, connection, kid, keyId: a.keyId, expiresAt: now() + lifetime });
    return a.reply;
  };

  const g: Gateway = {
    o,
    maxResponseBytes: o.maxResponseBytes ?? 64 * 1024 * 1024,
    // The answer's head fields, made once (node takes a flat [name, value, ...] list as is and keeps no reference to
    // it, so the sized one is rewritten in place for each answer).
    streamHead: [...Object.entries(extra).flat(), 'content-type', MEDIA_SESSION, 'cache-control', 'no-store'],
    sizedHead: [...Object.entries(extra).flat(), 'content-type', MEDIA_SESSION, 'cache-control', 'no-store', 'content-length', '0'],
    problemHead: { ...extra, 'content-type': 'application/problem+json' },
    find(sid, connection) {
      const entry = sessions.get(idKey(sid));
      // Another connection's session is no session here: the message was replayed, or its connection ended.
      return entry && entry.connection === connection && entry.expiresAt > now() ? entry.responder : undefined;
    },
  };

  return {
    handshake,
    direct(req, res) {
      if (req.method !== 'POST' || req.url !== SESSION_REQUEST_PATH) return false;
      new Exchange(g, req, res);
      return true;
    },
    dropKey(keyId) {
      for (const [k, e] of sessions) if (e.keyId === keyId) sessions.delete(k);
    },
    dropCredential(kid) {
      for (const [k, e] of sessions) if (e.kid === kid) sessions.delete(k);
    },
    get size() {
      return sessions.size;
    },
  };
}

/** What every exchange of one gateway shares. */
interface Gateway {
  readonly o: SessionGatewayOptions;
  readonly maxResponseBytes: number;
  readonly streamHead: string[];
  readonly sizedHead: string[];
  readonly problemHead: Readonly<Record<string, string>>;
  find(sid: Uint8Array, connection: object): SessionResponder | undefined;
}

const kExchange = Symbol('gm.session.exchange');
type Carrying = { [kExchange]?: Exchange };
// One listener of each kind for every request (no closure per request): each finds its exchange on the emitter.
function onBodyData(this: IncomingMessage, c: Buffer): void {
  (this as Carrying)[kExchange]!.bodyData(c);
}
function onBodyEnd(this: IncomingMessage): void {
  (this as Carrying)[kExchange]!.bodyEnd();
}
function onResponseClose(this: ServerResponse): void {
  (this as Carrying)[kExchange]!.closed();
}
function onResponseDrain(this: ServerResponse): void {
  (this as Carrying)[kExchange]!.upstream?.resume();
}

/** The request's media type (lowercase, parameters left out), read from its raw head: node builds `req.headers` only when asked. */
function mediaType(raw: readonly string[]): string {
  for (let i = 0; i < raw.length; i += 2) {
    const k = raw[i]!;
    // The first content-type counts, as in node's `req.headers`.
    if (k.length === 12 && k.toLowerCase() === 'content-type') {
      const v = raw[i + 1]!;
      const semi = v.indexOf(';');
      return (semi < 0 ? v : v.slice(0, semi)).trim().toLowerCase();
    }
  }
  return '';
}

const READING = 0;
const OPENED = 1;
const DONE = 2;

/** What the peer is told about a failure before the response began (decryption failures all look alike). */
function outward(e: GmError): GmError {
  if (e.code === 'SESSION_UNKNOWN' || e.code === 'TOO_LARGE' || e.code === 'TOO_MANY_STREAMS' || e.code === 'UNSUPPORTED_MEDIA_TYPE') return e;
  return new GmError('protocol', 'SESSION_DECRYPT_FAILED', 'session request rejected');
}

/**
 * One request on the session path, from its body to the last record of its answer (the sink of the upstream answer).
 * States: READING the body; OPENED (admitted: a concurrency slot held, the answer on its way); DONE.
 */
class Exchange implements AnswerSink {
  readonly #g: Gateway;
  readonly #req: IncomingMessage;
  readonly #res: ServerResponse;
  readonly #t0 = performance.now();
  #state = READING;
  /** The request body as it arrives, then the whole answer's content (one chunk, or several to join). */
  #body: Uint8Array | undefined;
  #parts: Uint8Array[] | undefined;
  #n = 0;
  #release: (() => void) | undefined;
  #sealer: ResponseSealer | undefined;
  #stream = false;
  upstream: UpstreamExchange | undefined;
  /** The head arrived (the answer is on its way to the peer or being gathered). */
  #headed = false;
  #status = 0;
  #headers: readonly Field[] = [];
  /** Records waiting for an asynchronous AEAD, written in order (undefined with node:crypto). */
  #pending: Promise<void> | undefined;

  constructor(g: Gateway, req: IncomingMessage, res: ServerResponse) {
    this.#g = g;
    this.#req = req;
    this.#res = res;
    // The enclave reads no Date from its worker, and undici would parse the field on every answer: not sent.
    res.sendDate = false;
    (res as Carrying)[kExchange] = this;
    // Any close before the answer's last byte: the peer went away (cancels the upstream once admitted).
    res.on('close', onResponseClose);
    if (mediaType(req.rawHeaders) !== MEDIA_SESSION) {
      this.#refuse(new GmError('protocol', 'UNSUPPORTED_MEDIA_TYPE', `content-type must be ${MEDIA_SESSION}`));
      return;
    }
    (req as Carrying)[kExchange] = this;
    req.on('data', onBodyData);
    req.on('end', onBodyEnd);
  }

  bodyData(c: Buffer): void {
    if (this.#state !== READING) return;
    this.#n += c.length;
    if (this.#n > this.#g.o.maxRequestBytes) {
      // Stop reading at once; the server drains or closes the socket.
      this.#req.pause();
      this.#refuse(tooLarge(this.#g.o.maxRequestBytes));
    } else if (this.#body === undefined) this.#body = c;
    else (this.#parts ??= [this.#body]).push(c);
  }

  bodyEnd(): void {
    if (this.#state !== READING) return;
    const b = this.#parts ? Buffer.concat(this.#parts, this.#n) : (this.#body ?? EMPTY);
    // The same fields gather a whole answer next.
    this.#body = undefined;
    this.#parts = undefined;
    this.#n = 0;
    const body = new Uint8Array(b.buffer, b.byteOffset, b.length);
    let opened: OpenedRequest | Promise<OpenedRequest>;
    try {
      const sid = sessionIdOf(body);
      if (!sid) throw protocolError('SESSION_MALFORMED', 'not a session request');
      const responder = this.#g.find(sid, this.#req.socket);
      if (!responder) throw new GmError('protocol', 'SESSION_UNKNOWN', 'no such session on this connection (restarted, expired, rekeyed or another connection)');
      this.#release = this.#g.o.admit();
      this.#state = OPENED;
      opened = responder.openNow(body);
    } catch (e) {
      this.#refuse(asGmError(e));
      return;
    }
    if (opened instanceof Promise) opened.then((x) => this.#forward(x), (e: unknown) => this.#refuse(asGmError(e)));
    else this.#forward(opened);
  }

  #forward(opened: OpenedRequest): void {
    if (this.#state !== OPENED) return;
    this.#sealer = opened.response;
    this.#stream = opened.stream;
    let request;
    try {
      ({ request } = decodeRequest(opened.request));
      checkInnerRequest(request);
    } catch (e) {
      this.#innerRejected(asGmError(e));
      return;
    }
    try {
      this.upstream = this.#g.o.forward(request, this);
    } catch (e) {
      // Runs inside node's event handlers: nothing may escape (a forwarder that threw is a failed exchange).
      this.fail(e);
    }
  }

  /** Decrypted but not a valid inner request (or its forwarding failed): answered inside the session, as the OHTTP gateway does. */
  #innerRejected(g: GmError): void {
    logError(this.#g.o.log, 'session.inner_rejected', g);
    this.#g.o.onError?.(g.code, true);
    const status = statusFor(g);
    const body = new TextEncoder().encode(JSON.stringify({ type: 'about:blank', title: 'request failed', status, code: g.code, error: { code: g.code } }));
    this.head(status, PROBLEM_FIELDS);
    this.data(body);
    this.end();
  }

  head(status: number, headers: readonly Field[]): void {
    if (this.#state !== OPENED) return;
    this.#headed = true;
    if (!this.#stream) {
      this.#status = status;
      this.#headers = headers;
      return;
    }
    this.#res.writeHead(200, this.#g.streamHead);
    this.#res.on('drain', onResponseDrain);
    this.#record(() => responseStream.head(status, headers), false);
  }

  data(chunk: Uint8Array): boolean {
    if (this.#state !== OPENED) return true;
    if (this.#stream) return chunk.length === 0 || this.#record(() => responseStream.content(chunk), false);
    const n = this.#n + chunk.length;
    if (n > this.#g.maxResponseBytes) {
      this.#fail(protocolError('RESPONSE_TOO_LARGE', 'inner response too large for one record'));
      return true;
    }
    // The usual whole answer is one chunk: kept as the socket gave it, joined only when there are several.
    if (this.#body === undefined) this.#body = chunk;
    else (this.#parts ??= [this.#body]).push(chunk);
    this.#n = n;
    return true;
  }

  end(): void {
    if (this.#state !== OPENED) return;
    if (this.#stream) {
      this.#record(() => responseStream.end(), true);
      return;
    }
    const content = this.#parts ? Buffer.concat(this.#parts, this.#n) : (this.#body ?? EMPTY);
    this.#body = undefined;
    this.#parts = undefined;
    this.#record(() => encodeResponse({ informational: [], status: this.#status, headers: this.#headers as Field[], content, trailers: [] }), true);
  }

  fail(e: unknown): void {
    if (this.#state !== OPENED) return;
    const g = asGmError(e);
    if (!this.#headed) this.#innerRejected(g);
    else this.#fail(g);
  }

  /**
   * Seals one record and writes it; the final one ends the answer (a whole answer: with its length, in one write).
   * False when the socket's buffer is full (the upstream pauses until 'drain').
   */
  #record(encode: () => Uint8Array, final: boolean): boolean {
    let sealed: Uint8Array | Promise<Uint8Array>;
    try {
      sealed = this.#sealer!.sealNow(encode(), final);
    } catch (e) {
      this.#fail(asGmError(e));
      return true;
    }
    if (sealed instanceof Uint8Array && this.#pending === undefined) return this.#write(sealed, final);
    // An asynchronous AEAD: records are written in the order they were sealed; the upstream waits for each.
    this.#pending = (this.#pending ?? Promise.resolve()).then(() => sealed).then(
      (b) => {
        if (this.#write(b, final) && !final) this.upstream?.resume();
      },
      (e: unknown) => this.#fail(asGmError(e)),
    );
    return false;
  }

  #write(record: Uint8Array, final: boolean): boolean {
    if (this.#state !== OPENED) return true;
    const res = this.#res;
    if (!final) return res.write(record);
    if (!this.#stream) {
      // One write: the head with its content-length, then the record (no chunked framing for a known length).
      const head = this.#g.sizedHead;
      head[head.length - 1] = String(record.length);
      res.writeHead(200, head);
    }
    res.end(record);
    this.#finish('ok');
    return true;
  }

  /** A failure once admitted: refused in clear before the answer began; mid-answer, the connection is cut. */
  #fail(e: GmError): void {
    // Mid-stream the enclave sees a response without its final record (SESSION_TRUNCATED), never a forged end.
    this.#refuse(e);
  }

  #refuse(e: GmError): void {
    if (this.#state === DONE) return;
    const admitted = this.#state === OPENED;
    if (e.code !== 'SESSION_UNKNOWN' || admitted) logError(this.#g.o.log, 'session.request_failed', e);
    const res = this.#res;
    if (admitted) this.#finish('error');
    else this.#state = DONE;
    if (res.headersSent) {
      res.destroy();
      return;
    }
    const out = outward(e);
    this.#g.o.onError?.(out.code, false);
    const status = statusFor(out);
    res.writeHead(status, this.#g.problemHead);
    res.end(JSON.stringify({ type: 'about:blank', title: 'request failed', status, code: out.code, error: { code: out.code } }));
  }

  /** The response closed: the peer went away unless the answer was complete. */
  closed(): void {
    if (this.#state === READING) this.#state = DONE;
    else if (this.#state === OPENED) this.#finish('cancelled');
  }

  #finish(outcome: 'ok' | 'cancelled' | 'error'): void {
    this.#state = DONE;
    if (outcome !== 'ok') this.upstream?.cancel();
    this.#release?.();
    this.#g.o.onDone?.(outcome, this.#t0);
  }
}

const PROBLEM_FIELDS: readonly Field[] = [['content-type', 'application/problem+json']];
