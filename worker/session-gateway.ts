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
 * answer sealed record by record and written with the socket's backpressure.
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
import { hex } from '../attestation/bytes.ts';
import { GmError, protocolError } from '../attestation/errors.ts';
import { decodeRequest, encodeResponse, responseStream, type Field } from '../protocol/bhttp.ts';
import type { GatewayKey } from '../protocol/ohttp.ts';
import { acceptSession, type SessionResponder, sessionIdOf } from '../protocol/session.ts';
import { asGmError, logError, statusFor } from '../enclave/http/errors.ts';
import { readIncomingLimited } from '../enclave/http/limits.ts';
import type { Logger } from '../enclave/log.ts';
import { checkInnerRequest } from '../enclave/ohttp/messages.ts';
import type { FieldForwarder, UpstreamAnswer } from './forward.ts';

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

export function createSessionGateway(o: SessionGatewayOptions): SessionGateway {
  const sessions = new Map<string, Entry>();
  const now = o.now ?? Date.now;
  const lifetime = o.lifetimeMs ?? 30 * 60_000;
  const perCredential = o.maxPerCredential ?? 1024;
  const perConnection = o.maxPerConnection ?? 2;
  // Connections that hold sessions: each forgets its sessions when it closes.
  const watched = new WeakSet<Connection>();
  const extra = o.headers ?? {};
  // The answer's head fields, made once (node takes a flat [name, value, ...] list as is).
  const answerHead = [...Object.entries(extra).flat(), 'content-type', MEDIA_SESSION, 'cache-control', 'no-store'];

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
    sessions.set(hex(a.responder.id), { responder: a.responder, connection, kid, keyId: a.keyId, expiresAt: now() + lifetime });
    return a.reply;
  };

  const refuse = (res: ServerResponse, e: GmError) => {
    if (res.headersSent) {
      res.destroy();
      return;
    }
    o.onError?.(e.code, false);
    const status = statusFor(e);
    res.writeHead(status, { ...extra, 'content-type': 'application/problem+json' });
    res.end(JSON.stringify({ type: 'about:blank', title: 'request failed', status, code: e.code, error: { code: e.code } }));
  };

  /** What the peer is told about a failure before the response began (decryption failures all look alike). */
  const outward = (e: GmError): GmError => {
    if (e.code === 'SESSION_UNKNOWN' || e.code === 'TOO_LARGE' || e.code === 'TOO_MANY_STREAMS' || e.code === 'UNSUPPORTED_MEDIA_TYPE') return e;
    return new GmError('protocol', 'SESSION_DECRYPT_FAILED', 'session request rejected');
  };

  const serve = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const t0 = performance.now();
    const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
    if (type !== MEDIA_SESSION) throw new GmError('protocol', 'UNSUPPORTED_MEDIA_TYPE', `content-type must be ${MEDIA_SESSION}`);
    const body = await readIncomingLimited(req, o.maxRequestBytes);
    const sid = sessionIdOf(body);
    if (!sid) throw protocolError('SESSION_MALFORMED', 'not a session request');
    const entry = sessions.get(hex(sid));
    // Another connection's session is no session here: the message was replayed, or its connection ended.
    if (!entry || entry.connection !== req.socket || entry.expiresAt <= now()) throw new GmError('protocol', 'SESSION_UNKNOWN', 'no such session on this connection (restarted, expired, rekeyed or another connection)');
    const release = o.admit();
    let outcome: 'ok' | 'cancelled' | 'error' = 'error';
    const ac = new AbortController();
    res.once('close', () => {
      if (!res.writableFinished) {
        outcome = 'cancelled';
        ac.abort();
      }
    });
    let upstream: UpstreamAnswer | undefined;
    try {
      const opened = await entry.responder.open(body);
      const sealer = opened.response;
      let answer: UpstreamAnswer;
      try {
        const { request } = decodeRequest(opened.request);
        checkInnerRequest(request);
        answer = await o.forward(request, ac.signal);
      } catch (e) {
        // Decrypted but not a valid inner request: answered inside the session, like the OHTTP gateway does.
        const g = asGmError(e);
        logError(o.log, 'session.inner_rejected', g);
        o.onError?.(g.code, true);
        const status = statusFor(g);
        answer = { status, headers: [['content-type', 'application/problem+json']], body: [new TextEncoder().encode(JSON.stringify({ type: 'about:blank', title: 'request failed', status, code: g.code, error: { code: g.code } }))], cancel: () => undefined };
      }
      upstream = answer;
      if (!opened.stream) {
        const limit = o.maxResponseBytes ?? 64 * 1024 * 1024;
        let content: Uint8Array | undefined;
        let parts: Uint8Array[] | undefined;
        let n = 0;
        for await (const c of answer.body) {
          n += c.length;
          if (n > limit) throw protocolError('RESPONSE_TOO_LARGE', 'inner response too large for one record');
          // The usual whole answer is one chunk: kept as the socket gave it, joined only when there are several.
          if (content === undefined) content = c;
          else (parts ??= [content]).push(c);
        }
        const record = await sealer.seal(encodeResponse({ informational: [], status: answer.status, headers: answer.headers as Field[], content: parts ? Buffer.concat(parts, n) : (content ?? EMPTY), trailers: [] }), true);
        // One write: the head with its content-length, then the record (no chunked framing for a known length).
        res.writeHead(200, [...answerHead, 'content-length', String(record.length)]);
        res.end(record);
      } else {
        res.writeHead(200, answerHead);
        if (!(await write(res, await sealer.seal(responseStream.head(answer.status, answer.headers))))) return;
        for await (const c of answer.body) {
          if (c.length === 0) continue;
          if (!(await write(res, await sealer.seal(responseStream.content(c))))) return;
        }
        res.end(await sealer.seal(responseStream.end(), true));
      }
      outcome = 'ok';
    } catch (e) {
      // Mid-stream the enclave sees a response without its final record (SESSION_TRUNCATED), never a forged end.
      const g = asGmError(e);
      logError(o.log, 'session.request_failed', g);
      refuse(res, outward(g));
    } finally {
      if (outcome !== 'ok') upstream?.cancel();
      release();
      o.onDone?.(outcome, t0);
    }
  };

  return {
    handshake,
    direct(req, res) {
      if (req.method !== 'POST' || req.url !== SESSION_REQUEST_PATH) return false;
      serve(req, res).catch((e: unknown) => {
        const g = asGmError(e);
        if (g.code !== 'SESSION_UNKNOWN') logError(o.log, 'session.request_failed', g);
        refuse(res, outward(g));
      });
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

/** Writes one record; waits for the socket to drain when its buffer is full. False when the peer went away. */
function write(res: ServerResponse, b: Uint8Array): Promise<boolean> | boolean {
  if (res.destroyed) return false;
  if (res.write(b)) return true;
  return new Promise((resolve) => {
    const done = (ok: boolean) => {
      res.off('drain', onDrain);
      res.off('close', onClose);
      resolve(ok);
    };
    const onDrain = () => done(true);
    const onClose = () => done(false);
    res.on('drain', onDrain);
    res.on('close', onClose);
  });
}
