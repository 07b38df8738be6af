/**
 * The enclave → worker transport: one undici Pool per verified worker (keep-alive connections, pipelining off),
 * posting encapsulated requests to the worker's gateway. Timeouts: connect, first byte (response headers), and idle
 * between body chunks; a client disconnect aborts the request through `signal`. Reading is pull-based, so a slow
 * client slows the worker's socket (backpressure end to end) instead of filling memory.
 *
 * Lanes (the session path, docs/protocol.md §14.4): a session is bound to the connection its handshake travelled on,
 * so the session dispatch sends over lanes, each one undici Client holding one keep-alive connection (pipelining off:
 * one exchange at a time). A lane counts its connection's ends; what was bound to a connection that ended is gone.
 */
import { Client, type Dispatcher, Pool } from 'undici';
import { unavailable } from '../../attestation/errors.ts';
import type { Transport, TransportResponse } from '../ohttp/client.ts';
import { requestAuthorizer, WORKER_AUTH_HEADER } from '../../protocol/worker-auth.ts';

export interface PoolTimeouts {
  readonly connectMs: number;
  readonly firstByteMs: number;
  readonly idleMs: number;
  readonly connections: number;
}

export const DEFAULT_TIMEOUTS: PoolTimeouts = { connectMs: 5_000, firstByteMs: 120_000, idleMs: 60_000, connections: 128 };

/**
 * A claim on one connection to the worker: everything posted on it reaches the one worker process that accepted the
 * connection. The claim ends with the answer of a `last` post (read to its end, cancelled or failed), or `release()`.
 */
export interface Lane {
  post(path: string, contentType: string, body: Uint8Array, signal: AbortSignal | undefined, o?: { readonly authorized?: boolean; readonly last?: boolean }): Promise<TransportResponse>;
  /** The connection's identity: the same object for every claim on it (what a session is kept by). */
  readonly key: object;
  /** How many times the connection has ended: a session made at one value is gone once it changes. */
  readonly connection: number;
  /** Ends the claim (idempotent; for an exchange that failed before its last post). */
  release(): void;
}

export interface PooledTransport {
  readonly send: Transport;
  /**
   * A lane for the session endpoints (enclave/dispatch/session.ts; `authorized` adds the credential's MAC over the
   * body): an idle connection (the earliest, so sessions stay warm on few), else a new one while fewer than
   * `connections` exist, else the least claimed (its exchanges queue). Absent on OHTTP-only transports.
   */
  readonly lane?: () => Lane;
  close(): Promise<void>;
}

/**
 * `credential`: the worker's credential from its registration (protocol/worker-auth.ts); each request then carries
 * its MAC, without which the worker's gateway refuses it.
 */
export function poolTransport(workerUrl: string, t: PoolTimeouts = DEFAULT_TIMEOUTS, credential?: Uint8Array): PooledTransport {
  const base = new URL(workerUrl);
  const path = `${base.pathname.replace(/\/+$/, '')}/v1/ohttp`;
  let closing: Promise<void> | undefined;
  const authorize = credential ? requestAuthorizer(credential) : undefined;
  authorize?.catch(() => undefined); // a failure surfaces at the first send, not as an unhandled rejection
  const pool = new Pool(base.origin, { connections: t.connections, connect: { timeout: t.connectMs }, headersTimeout: t.firstByteMs, bodyTimeout: t.idleMs, pipelining: 1 });
  const base_ = base.pathname.replace(/\/+$/, '');
  /** `done` runs once, when the exchange is over: its answer read to the end, cancelled, or the request failed. */
  const request = async (d: Dispatcher, p: string, contentType: string, body: Uint8Array, signal: AbortSignal | undefined, authorized = true, done?: () => void): Promise<TransportResponse> => {
    let r;
    try {
      const auth = authorize && authorized ? { [WORKER_AUTH_HEADER]: (await authorize)(contentType, body) } : {};
      r = await d.request({ origin: base.origin, path: p, method: 'POST', headers: { 'content-type': contentType, ...(contentType === 'message/ohttp-chunked-req' ? { incremental: '?1' } : {}), ...auth }, body, ...(signal ? { signal } : {}) });
    } catch (e) {
      done?.();
      const code = (e as { code?: string }).code;
      if (code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_CONNECT_TIMEOUT') throw unavailable('WORKER_TIMEOUT', `worker did not answer in time (${code})`, { cause: e });
      throw unavailable('WORKER_UNREACHABLE', `worker request failed (${code ?? (e as Error).name})`, { cause: e });
    }
    const ct = r.headers['content-type'];
    const rb = r.body;
    if (done) rb.once('close', done);
    return {
      status: r.statusCode,
      contentType: (typeof ct === 'string' ? ct : '').split(';')[0]!.trim(),
      body: {
        async *[Symbol.asyncIterator]() {
          try {
            // A view, not a copy; as a plain Uint8Array, so slice() copies as consumers expect (Buffer's would not).
            for await (const c of rb) yield new Uint8Array((c as Buffer).buffer, (c as Buffer).byteOffset, (c as Buffer).length);
          } catch (e) {
            const code = (e as { code?: string }).code;
            if (code === 'UND_ERR_BODY_TIMEOUT') throw unavailable('WORKER_TIMEOUT', 'worker went idle mid-response', { cause: e });
            throw unavailable('WORKER_STREAM_FAILED', `worker connection failed mid-response (${code ?? (e as Error).name})`, { cause: e });
          }
        },
      },
      cancel: () => void rb.destroy(),
    };
  };
  interface Conn {
    readonly client: Client;
    connection: number;
    /** Claims not yet ended. */
    claims: number;
  }
  const conns: Conn[] = [];
  const newConn = (): Conn => {
    // The worker keeps an idle connection 65 s (worker/agent.ts); the lane closes it first, so a session is not lost
    // to a race with the worker's close.
    const client = new Client(base.origin, { connect: { timeout: t.connectMs }, headersTimeout: t.firstByteMs, bodyTimeout: t.idleMs, pipelining: 1, keepAliveTimeout: 60_000, keepAliveMaxTimeout: 60_000 });
    const c: Conn = { client, connection: 0, claims: 0 };
    client.on('disconnect', () => void c.connection++);
    conns.push(c);
    return c;
  };
  const lane = (): Lane => {
    if (closing) throw unavailable('WORKER_UNREACHABLE', 'the transport to this worker is closed');
    let c: Conn | undefined;
    for (const x of conns) {
      if (x.claims === 0) {
        c = x;
        break;
      }
      if (!c || x.claims < c.claims) c = x;
    }
    if (!c || (c.claims > 0 && conns.length < t.connections)) c = newConn();
    const conn = c;
    conn.claims++;
    let over = false;
    const release = () => {
      if (!over) conn.claims--;
      over = true;
    };
    return {
      key: conn,
      get connection() {
        return conn.connection;
      },
      release,
      post: (p, contentType, body, signal, o = {}) => request(conn.client, `${base_}${p}`, contentType, body, signal, o.authorized, o.last ? release : undefined),
    };
  };
  return {
    send: (body, contentType, signal) => request(pool, path, contentType, body, signal),
    lane,
    close() {
      closing ??= Promise.all([pool.destroy(), ...conns.map((c) => c.client.destroy())]).then(() => undefined, () => undefined);
      return closing;
    },
  };
}
