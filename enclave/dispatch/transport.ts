/**
 * The enclave → worker transport: one undici Pool per verified worker (keep-alive connections, pipelining off),
 * posting encapsulated requests to the worker's gateway. Timeouts: connect, first byte (response headers), and idle
 * between body chunks; a client disconnect aborts the request through `signal`. Reading is pull-based: past
 * `HIGH_WATER` unread bytes the worker's socket is paused, so a slow client slows the worker (backpressure end to
 * end) instead of filling memory.
 *
 * Each exchange runs on the dispatcher with its own handler (`Exchange`) rather than `request()`: no Readable, no
 * async generator and no header object per answer; a whole answer is collected as the socket delivers it.
 *
 * Lanes (the session path, docs/protocol.md §14.4): a session is bound to the connection its handshake travelled on,
 * so the session dispatch sends over lanes, each one keep-alive connection carrying one exchange at a time
 * (h1-connection.ts: the per-request path, leaner than undici's Client). A lane counts its connection's ends; what was
 * bound to a connection that ended is gone.
 */
import { type Dispatcher, Pool } from 'undici';
import { concat } from '../../attestation/bytes.ts';
import { unavailable } from '../../attestation/errors.ts';
import { readAll, type Transport, type TransportResponse } from '../ohttp/client.ts';
import { requestAuthorizer, WORKER_AUTH_HEADER } from '../../protocol/worker-auth.ts';
import { H1Connection } from './h1-connection.ts';

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

/** One keep-alive connection of a lane, how often it ended, and its claims not yet ended. */
interface Conn {
  readonly client: H1Connection;
  connection: number;
  claims: number;
}

type Post = (conn: Conn, path: string, contentType: string, body: Uint8Array, signal: AbortSignal | undefined, authorized: boolean | undefined, done: (() => void) | undefined) => Promise<TransportResponse>;

/** A claim on a connection (a class: its methods live on the prototype, not on every claim). */
class Claim implements Lane {
  readonly #conn: Conn;
  readonly #post: Post;
  #over = false;
  readonly release = (): void => {
    if (!this.#over) this.#conn.claims--;
    this.#over = true;
  };
  constructor(conn: Conn, post: Post) {
    this.#conn = conn;
    this.#post = post;
  }
  get key(): object {
    return this.#conn;
  }
  get connection(): number {
    return this.#conn.connection;
  }
  post(path: string, contentType: string, body: Uint8Array, signal: AbortSignal | undefined, o: { readonly authorized?: boolean; readonly last?: boolean } = {}): Promise<TransportResponse> {
    return this.#post(this.#conn, path, contentType, body, signal, o.authorized, o.last ? this.release : undefined);
  }
}

/** Unread answer bytes past which the worker's socket is paused until the reader catches up. */
const HIGH_WATER = 64 * 1024;

/** A request that failed before the worker's answer began (nothing of the answer was read). */
function requestFailure(e: Error): Error {
  const code = (e as { code?: string }).code;
  if (code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_CONNECT_TIMEOUT' || code === 'H1_HEADERS_TIMEOUT' || code === 'H1_CONNECT_TIMEOUT') return unavailable('WORKER_TIMEOUT', `worker did not answer in time (${code})`, { cause: e });
  return unavailable('WORKER_UNREACHABLE', `worker request failed (${code ?? e.name})`, { cause: e });
}

/** An answer whose body failed after its head. */
function bodyFailure(e: Error): Error {
  const code = (e as { code?: string }).code;
  if (code === 'UND_ERR_BODY_TIMEOUT' || code === 'H1_BODY_TIMEOUT') return unavailable('WORKER_TIMEOUT', 'worker went idle mid-response', { cause: e });
  return unavailable('WORKER_STREAM_FAILED', `worker connection failed mid-response (${code ?? e.name})`, { cause: e });
}

const DONE: IteratorReturnResult<undefined> = { done: true, value: undefined };
const ONCE = { once: true } as const;

/**
 * One exchange on a dispatcher: resolves the answer at its head, then holds its body's chunks for one reader, who
 * takes them one by one (`next`, as an async iterator) or all at once (`whole`). Chunks are views of the socket's
 * buffers, not copies. `done` runs once, when the exchange is over (answer ended, failed or cancelled).
 */
class Exchange implements Dispatcher.DispatchHandler, AsyncIterableIterator<Uint8Array> {
  #controller: Dispatcher.DispatchController | undefined;
  #head: { resolve(r: TransportResponse): void; reject(e: unknown): void } | undefined;
  #queue: Uint8Array[] = [];
  #queued = 0;
  #ended = false;
  #cancelled = false;
  #error: Error | undefined;
  #wake: (() => void) | undefined;
  /** A `whole` read waiting for the end, with its limit. */
  #whole: { limit: number; resolve(b: Uint8Array | undefined): void; reject(e: unknown): void } | undefined;
  #done: (() => void) | undefined;
  readonly #signal: AbortSignal | undefined;
  readonly #onAbort = () => this.cancel();

  constructor(resolve: (r: TransportResponse) => void, reject: (e: unknown) => void, signal: AbortSignal | undefined, done: (() => void) | undefined) {
    this.#head = { resolve, reject };
    this.#signal = signal;
    this.#done = done;
    signal?.addEventListener('abort', this.#onAbort, ONCE);
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.#controller = controller;
    if (this.#cancelled || this.#signal?.aborted) controller.abort(this.#signal?.reason ?? new Error('cancelled'));
  }

  onResponseStart(_c: Dispatcher.DispatchController, status: number, headers: Record<string, string | string[] | undefined>): void {
    // An informational response (1xx) is not the answer: the final one follows on the same exchange.
    if (status < 200) return;
    const head = this.#head;
    if (!head) return;
    this.#head = undefined;
    const ct = headers['content-type'];
    head.resolve({ status, contentType: (typeof ct === 'string' ? ct : '').split(';')[0]!.trim(), body: this, cancel: () => this.cancel() });
  }

  onResponseData(c: Dispatcher.DispatchController, chunk: Buffer): void {
    // As a plain Uint8Array, so slice() copies as consumers expect (a Buffer's would not).
    this.#queue.push(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.length));
    this.#queued += chunk.length;
    const w = this.#whole;
    if (w) {
      if (this.#queued > w.limit) {
        this.#whole = undefined;
        w.resolve(undefined);
        this.cancel();
      }
    } else if (this.#queued > HIGH_WATER) c.pause();
    this.#wakeReader();
  }

  onResponseEnd(): void {
    this.#ended = true;
    const w = this.#whole;
    this.#whole = undefined;
    w?.resolve(this.#take());
    this.#finish();
  }

  onResponseError(_c: Dispatcher.DispatchController, e: Error): void {
    const head = this.#head;
    this.#head = undefined;
    if (head) head.reject(requestFailure(e));
    else if (!this.#ended) {
      this.#error = bodyFailure(e);
      const w = this.#whole;
      this.#whole = undefined;
      w?.reject(this.#error);
    }
    this.#finish();
  }

  /** Stops the exchange (the reader went away); idempotent, and a no-op once the answer has ended. */
  cancel(): void {
    if (this.#cancelled || this.#ended || this.#error) return;
    this.#cancelled = true;
    this.#controller?.abort(new Error('cancelled'));
  }

  /** The rest of the body as one array, once it ended; undefined (and the exchange cancelled) past `limit` bytes. */
  whole(limit: number): Promise<Uint8Array | undefined> {
    if (this.#queued > limit) {
      this.cancel();
      return Promise.resolve(undefined);
    }
    if (this.#ended) return Promise.resolve(this.#take());
    if (this.#error) return Promise.reject(this.#error);
    if (this.#cancelled) return Promise.reject(bodyFailure(new Error('cancelled')));
    if (this.#controller?.paused) this.#controller.resume();
    return new Promise((resolve, reject) => {
      this.#whole = { limit, resolve, reject };
    });
  }

  next(): Promise<IteratorResult<Uint8Array>> {
    const c = this.#queue.shift();
    if (c) {
      this.#queued -= c.length;
      if (this.#controller?.paused && this.#queued <= HIGH_WATER) this.#controller.resume();
      return Promise.resolve({ done: false, value: c });
    }
    if (this.#error) return Promise.reject(this.#error);
    if (this.#ended || this.#cancelled) return Promise.resolve(DONE);
    return new Promise<void>((resolve) => {
      this.#wake = resolve;
    }).then(() => this.next());
  }

  /** A reader that stops early (break, throw) ends the exchange. */
  return(): Promise<IteratorResult<Uint8Array>> {
    this.cancel();
    return Promise.resolve(DONE);
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  #take(): Uint8Array {
    const q = this.#queue;
    this.#queue = [];
    this.#queued = 0;
    return q.length === 1 ? q[0]! : concat(...q);
  }

  #wakeReader(): void {
    const w = this.#wake;
    this.#wake = undefined;
    w?.();
  }

  #finish(): void {
    this.#signal?.removeEventListener('abort', this.#onAbort);
    this.#wakeReader();
    const d = this.#done;
    this.#done = undefined;
    d?.();
  }
}

/**
 * An answer's body read to its end as one array (the non-streamed path); undefined when it holds more than `limit`
 * bytes (the exchange is then cancelled). A body from this transport is taken as the socket delivered it; any other
 * (a test's wrapper) is iterated.
 */
export async function readWhole(r: TransportResponse, limit: number): Promise<Uint8Array | undefined> {
  return r.body instanceof Exchange ? r.body.whole(limit) : readAll(r, limit);
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
  const start = (d: Dispatcher | H1Connection, p: string, headers: string[], body: Uint8Array, signal: AbortSignal | undefined, done: (() => void) | undefined): Promise<TransportResponse> =>
    new Promise((resolve, reject) => {
      d.dispatch({ path: p, method: 'POST', headers, body }, new Exchange(resolve, reject, signal, done));
    });
  /** `done` runs once, when the exchange is over: its answer read to the end, cancelled, or the request failed. */
  const request = (d: Dispatcher | H1Connection, p: string, contentType: string, body: Uint8Array, signal: AbortSignal | undefined, authorized = true, done?: () => void): Promise<TransportResponse> => {
    const headers = contentType === 'message/ohttp-chunked-req' ? ['content-type', contentType, 'incremental', '?1'] : ['content-type', contentType];
    if (!authorize || !authorized) return start(d, p, headers, body, signal, done);
    return authorize.then(
      (mac) => {
        let auth: string;
        try {
          auth = mac(contentType, body);
        } catch (e) {
          done?.();
          throw requestFailure(e as Error);
        }
        return start(d, p, [...headers, WORKER_AUTH_HEADER, auth], body, signal, done);
      },
      (e: unknown) => {
        done?.();
        throw requestFailure(e as Error);
      },
    );
  };
  const post = (conn: Conn, p: string, contentType: string, body: Uint8Array, signal: AbortSignal | undefined, authorized: boolean | undefined, done: (() => void) | undefined) =>
    request(conn.client, `${base_}${p}`, contentType, body, signal, authorized, done);
  const conns: Conn[] = [];
  const newConn = (): Conn => {
    // The worker keeps an idle connection 65 s (worker/agent.ts); the lane closes it first, so a session is not lost
    // to a race with the worker's close.
    const client = new H1Connection(base, { connectMs: t.connectMs, firstByteMs: t.firstByteMs, idleMs: t.idleMs, keepAliveMs: 60_000 }, () => void c.connection++);
    const c: Conn = { client, connection: 0, claims: 0 };
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
    c.claims++;
    return new Claim(c, post);
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
