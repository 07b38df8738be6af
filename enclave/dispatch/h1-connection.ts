/**
 * One keep-alive HTTP/1.1 connection (RFC 9112 §9.3) carrying one exchange at a time: the lane under a session
 * (enclave/dispatch/transport.ts, docs/protocol.md §14.4), and through h1-pool.ts a worker's requests to its inference
 * server (worker/forward.ts). It speaks to the exchange's handler as undici's
 * dispatcher does (`onRequestStart`, `onResponseStart`, `onResponseData`, `onResponseEnd`, `onResponseError`, and a
 * controller to abort, pause and resume), so the same handler reads an answer from either.
 *
 * Why not undici's Client here: these exchanges are a small GET or POST and its answer, and undici's general
 * machinery (request objects, its WebAssembly parser, timers) cost 40–60 µs of CPU per exchange, as much as
 * everything else a plain proxy hop does (docs/performance.md). The request head is written with the body in one
 * corked write; the answer is read by a strict parser (h1-response.ts) that hands on views of the socket's buffers.
 *
 * Timeouts: connect; first byte (the answer's head after the request left); idle (between body bytes, not counting
 * time the reader held the answer back); and an idle connection is closed after `keepAliveMs`, or sooner when the
 * server's `Keep-Alive: timeout=N` says it closes first, so that no request is written into a connection the server
 * is closing. A server that closes idle connections sooner and says nothing (uvicorn, with a `--timeout-keep-alive`
 * shorter than `keepAliveMs`) can still close one just as a request is written into it: with `retryUnanswered`, such
 * a request goes once more on a new connection (below).
 */
import { connect, type Socket } from 'node:net';
import type { Dispatcher } from 'undici';
import { ResponseReader, type ResponseSink } from './h1-response.ts';

export interface H1Timeouts {
  readonly connectMs: number;
  readonly firstByteMs: number;
  readonly idleMs: number;
  readonly keepAliveMs: number;
}

/** A failure of the connection, with a stable code (`H1_*`, or the parser's H1_BAD_RESPONSE). */
export class H1Error extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
  }
}

export interface H1Options {
  /** Accept an answer whose body runs to the connection's close (an inference server may send one; a worker never does). */
  readonly closeDelimited?: boolean;
  /**
   * Send a request once more, on a new connection, when the kept-alive connection it was written into closed or reset
   * before a byte of its answer came (RFC 9112 §9.3.1: the server closed an idle connection as the request crossed
   * it). Only for requests that may run twice without harm: a completion to an inference server, whose answer the
   * client still gets once. Never on a lane, whose records are bound to their session and counted.
   */
  readonly retryUnanswered?: boolean;
}

export interface H1Request {
  /** GET, HEAD or POST (the default). */
  readonly method?: 'GET' | 'HEAD' | 'POST';
  readonly path: string;
  /** Flat name/value list; names and values must not hold CR, LF or NUL. */
  readonly headers: readonly string[];
  readonly body: Uint8Array;
}

/** What an exchange tells its handler: the parts of undici's dispatch handler a connection calls. */
export type H1Handler = Pick<Dispatcher.DispatchHandler, 'onRequestStart' | 'onResponseStart' | 'onResponseData' | 'onResponseEnd' | 'onResponseError'>;

const UNSAFE = /[\0\r\n]/;
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const PATH = /^\/[\x21-\x7e]*$/;
const NO_TRAILERS = Object.freeze({});

/** One exchange: its handler, and the controller the handler aborts, pauses and resumes it with. */
class Pending implements Dispatcher.DispatchController, ResponseSink {
  readonly #conn: H1Connection;
  readonly req: H1Request;
  readonly handler: H1Handler;
  #aborted = false;
  #paused = false;
  #reason: Error | null = null;
  /** The head arrived: an error from here on is the body's. */
  started = false;
  /** Some byte of the answer arrived. */
  heard = false;
  /** Written into a connection that had carried an exchange before (so a second try, on a new one, never is). */
  reused = false;
  settled = false;
  close = false;
  constructor(conn: H1Connection, req: H1Request, handler: H1Handler) {
    this.#conn = conn;
    this.req = req;
    this.handler = handler;
  }
  get aborted(): boolean {
    return this.#aborted;
  }
  get paused(): boolean {
    return this.#paused;
  }
  get reason(): Error | null {
    return this.#reason;
  }
  abort(reason: Error): void {
    if (this.#aborted || this.settled) return;
    this.#aborted = true;
    this.#reason = reason;
    this.#conn.aborted(this, new H1Error('H1_ABORTED', 'exchange aborted', { cause: reason }));
  }
  pause(): void {
    this.#paused = true;
    this.#conn.flow(this);
  }
  resume(): void {
    this.#paused = false;
    this.#conn.flow(this);
  }
  // The reader may go on parsing what one read delivered after the exchange failed or was aborted from a callback:
  // nothing more reaches the handler then.
  head(status: number, fields: Readonly<Record<string, string>>, close: boolean): void {
    if (this.settled) return;
    this.started = true;
    this.close = close;
    this.#conn.headed(fields['keep-alive']);
    this.handler.onResponseStart?.(this, status, fields, '');
  }
  data(chunk: Uint8Array): void {
    if (this.settled) return;
    this.#conn.progressed();
    this.handler.onResponseData?.(this, chunk as Buffer);
  }
  end(): void {
    if (this.settled) return;
    this.settled = true;
    this.#conn.ended(this);
    this.handler.onResponseEnd?.(this, NO_TRAILERS);
  }
  fail(e: Error): void {
    if (this.settled) return;
    this.settled = true;
    this.handler.onResponseError?.(this, e);
  }
}

export class H1Connection {
  readonly #host: string;
  readonly #port: number;
  readonly #authority: string;
  readonly #t: H1Timeouts;
  readonly #onDisconnect: () => void;
  readonly #o: H1Options;
  /** How long the server keeps an idle connection, less a second, from its last `Keep-Alive: timeout=N`. */
  #serverKeepAliveMs = Number.POSITIVE_INFINITY;
  #socket: Socket | undefined;
  #connected = false;
  /** Exchanges the open socket carried to their end. */
  #carried = 0;
  #reader = new ResponseReader();
  #queue: Pending[] = [];
  #current: Pending | undefined;
  #destroyed = false;
  /** The running deadline (performance.now() ms) and what passing it means; checked by a coarse ticker. */
  #deadline = Number.POSITIVE_INFINITY;
  #deadlineCode = '';
  #deadlineMessage = '';
  #ticker: NodeJS.Timeout | undefined;

  /** `onDisconnect` runs each time a connection that was opened ends (what was bound to it is gone). */
  constructor(origin: URL, t: H1Timeouts, onDisconnect: () => void, o: H1Options = {}) {
    if (origin.protocol !== 'http:') throw new H1Error('H1_BAD_ORIGIN', `a lane speaks plain HTTP/1.1, not ${origin.protocol}`);
    this.#host = origin.hostname.replace(/^\[|\]$/g, '');
    this.#port = Number(origin.port || 80);
    this.#authority = origin.host;
    this.#t = t;
    this.#onDisconnect = onDisconnect;
    this.#o = o;
  }

  /** Exchanges on this connection, in flight and queued. */
  get load(): number {
    return (this.#current ? 1 : 0) + this.#queue.length;
  }

  /** Queues one POST; its handler hears of it from `onRequestStart` on. */
  dispatch(req: H1Request, handler: H1Handler): boolean {
    const p = new Pending(this, req, handler);
    handler.onRequestStart?.(p, {});
    if (p.aborted) {
      p.fail(new H1Error('H1_ABORTED', 'exchange aborted', { cause: p.reason }));
      return true;
    }
    if (this.#destroyed) {
      p.fail(new H1Error('H1_DESTROYED', 'the connection is closed'));
      return true;
    }
    this.#queue.push(p);
    this.#next();
    return true;
  }

  /** Closes the connection and fails what it still carries. */
  destroy(): Promise<void> {
    this.#destroyed = true;
    const e = new H1Error('H1_DESTROYED', 'the connection is closed');
    for (const p of this.#queue.splice(0)) p.fail(e);
    const s = this.#socket;
    if (!s || s.destroyed) {
      this.#drop(e);
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      s.once('close', () => resolve());
      this.#end(s, e);
    });
  }

  // ---- called by the exchange (Pending)

  aborted(p: Pending, e: Error): void {
    const i = this.#queue.indexOf(p);
    if (i >= 0) {
      this.#queue.splice(i, 1);
      p.fail(e);
      return;
    }
    // Sent, its answer not read to the end: the connection cannot carry another exchange.
    if (p === this.#current && this.#socket) this.#end(this.#socket, e);
  }

  flow(p: Pending): void {
    const s = this.#socket;
    if (p !== this.#current || !s) return;
    // While its reader holds the answer back, the server is not idle: the body deadline waits for the resume (a
    // reader that never resumes is ended by its own side's timeout, which cancels the exchange).
    if (p.paused) {
      s.pause();
      if (p.started) this.#clearTimer();
    } else {
      s.resume();
      if (p.started) this.headed();
    }
  }

  headed(keepAlive?: string): void {
    if (keepAlive !== undefined) {
      const m = /(?:^|[,;\s])timeout\s*=\s*(\d{1,6})/i.exec(keepAlive);
      if (m) this.#serverKeepAliveMs = Number(m[1]) * 1000 - 1000;
    }
    this.#arm(this.#t.idleMs, 'H1_BODY_TIMEOUT', 'the server went idle mid-answer');
  }

  progressed(): void {
    this.#deadline = performance.now() + this.#t.idleMs;
  }

  ended(p: Pending): void {
    this.#clearTimer();
    this.#current = undefined;
    this.#carried++;
    if ((p.close || this.#serverKeepAliveMs <= 0) && this.#socket) {
      this.#end(this.#socket, new H1Error('H1_CLOSED', 'the server closed the connection'));
      return;
    }
    // The answer's last bytes may leave the socket paused by a reader that has since stopped reading.
    this.#socket?.resume();
    queueMicrotask(() => this.#next());
  }

  // ---- the connection

  #next(): void {
    if (this.#current || this.#destroyed) return;
    const p = this.#queue.shift();
    if (!p) {
      if (this.#socket && this.#connected) this.#arm(Math.min(this.#t.keepAliveMs, this.#serverKeepAliveMs), 'H1_KEEPALIVE', 'idle connection closed');
      return;
    }
    this.#current = p;
    try {
      const head = this.#headOf(p.req);
      p.reused = this.#socket !== undefined && this.#carried > 0;
      const s = this.#socket ?? this.#open();
      this.#reader.expect(p, { head: p.req.method === 'HEAD', closeDelimited: this.#o.closeDelimited === true });
      s.cork();
      s.write(head, 'latin1');
      if (p.req.body.length > 0) s.write(p.req.body);
      s.uncork();
      if (this.#connected) this.#arm(this.#t.firstByteMs, 'H1_HEADERS_TIMEOUT', 'the server did not answer in time');
    } catch (e) {
      this.#current = undefined;
      p.fail(e instanceof H1Error ? e : new H1Error('H1_REQUEST', 'request not sent', { cause: e }));
      queueMicrotask(() => this.#next());
    }
  }

  #headOf(req: H1Request): string {
    if (!PATH.test(req.path)) throw new H1Error('H1_REQUEST', 'invalid request path');
    const method = req.method ?? 'POST';
    if (method !== 'POST' && method !== 'GET' && method !== 'HEAD') throw new H1Error('H1_REQUEST', 'method not supported');
    let head = `${method} ${req.path} HTTP/1.1\r\nhost: ${this.#authority}\r\n`;
    const h = req.headers;
    for (let i = 0; i + 1 < h.length; i += 2) {
      const k = h[i]!;
      const v = h[i + 1]!;
      if (!TOKEN.test(k) || UNSAFE.test(v)) throw new H1Error('H1_REQUEST', 'invalid request field');
      head += `${k}: ${v}\r\n`;
    }
    // A GET or HEAD without a body carries no length (RFC 9110 §8.6: a user agent should not send one then).
    return method !== 'POST' && req.body.length === 0 ? `${head}\r\n` : `${head}content-length: ${req.body.length}\r\n\r\n`;
  }

  #open(): Socket {
    const s = connect({ host: this.#host, port: this.#port, noDelay: true });
    this.#socket = s;
    this.#connected = false;
    this.#carried = 0;
    this.#reader = new ResponseReader();
    this.#arm(this.#t.connectMs, 'H1_CONNECT_TIMEOUT', 'could not connect in time');
    const t = this.#t;
    const every = Math.max(5, Math.min(1000, Math.min(t.connectMs, t.firstByteMs, t.idleMs, t.keepAliveMs) / 4));
    const ticker = setInterval(() => this.#tick(s), every);
    ticker.unref();
    this.#ticker = ticker;
    s.once('connect', () => {
      this.#connected = true;
      if (this.#current && !this.#current.started) this.#arm(this.#t.firstByteMs, 'H1_HEADERS_TIMEOUT', 'the server did not answer in time');
    });
    s.on('data', (b: Buffer) => {
      if (this.#current) this.#current.heard = true;
      try {
        this.#reader.push(b);
      } catch (e) {
        this.#end(s, e instanceof Error ? e : new H1Error('H1_BAD_RESPONSE', String(e)));
      }
    });
    s.on('end', () => {
      // The server's orderly close: it ends an answer framed by the close (its sink hears the end); any other
      // answer still being read fails below.
      if (this.#socket === s) this.#reader.closed();
      this.#end(s, new H1Error('H1_CLOSED', 'the server closed the connection'));
    });
    s.on('error', (e: Error) => this.#end(s, new H1Error('H1_SOCKET', `connection failed (${(e as { code?: string }).code ?? e.name})`, { cause: e })));
    s.on('close', () => {
      if (this.#socket !== s) return;
      this.#drop(new H1Error('H1_CLOSED', 'the connection closed'));
    });
    return s;
  }

  /** Ends `s` for good: what it carries fails with `e`; queued exchanges go on a new connection. */
  #end(s: Socket, e: Error): void {
    if (this.#socket !== s) return;
    s.destroy();
    this.#drop(e);
  }

  #drop(e: Error): void {
    const had = this.#socket !== undefined;
    this.#socket = undefined;
    this.#connected = false;
    this.#clearTimer();
    if (this.#ticker) clearInterval(this.#ticker);
    this.#ticker = undefined;
    const p = this.#current;
    this.#current = undefined;
    if (p && this.#unanswered(p, e)) this.#queue.unshift(p);
    else p?.fail(e);
    if (had) this.#onDisconnect();
    if (!this.#destroyed && this.#queue.length > 0) queueMicrotask(() => this.#next());
  }

  /** Whether `p` goes once more: see `retryUnanswered`. A timeout is the server's answer, not a race; nor is an abort. */
  #unanswered(p: Pending, e: Error): boolean {
    if (!this.#o.retryUnanswered || !p.reused || p.heard || p.aborted || this.#destroyed) return false;
    const code = (e as { code?: string }).code;
    return code === 'H1_CLOSED' || code === 'H1_SOCKET';
  }

  /**
   * Deadlines are a number checked by one coarse interval per open connection (a quarter of the shortest timeout, at
   * most 1 s), not a timer armed and cleared three times per exchange.
   */
  #arm(ms: number, code: string, message: string): void {
    this.#deadline = performance.now() + ms;
    this.#deadlineCode = code;
    this.#deadlineMessage = message;
  }

  #clearTimer(): void {
    this.#deadline = Number.POSITIVE_INFINITY;
  }

  #tick(s: Socket): void {
    if (this.#socket !== s || performance.now() < this.#deadline) return;
    this.#end(s, new H1Error(this.#deadlineCode, this.#deadlineMessage));
  }
}
