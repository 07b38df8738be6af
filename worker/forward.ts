/**
 * The worker's inner handler: forwards a decapsulated OpenAI request to the local inference server (vLLM, SGLang,
 * or `gm dev-model`) through an undici Pool (keep-alive) and streams its answer back without buffering (the web
 * stream pulls from the upstream socket; cancelling it destroys the upstream request). Only the OpenAI inference
 * paths pass.
 *
 * The session path (`forward`) dispatches on the pool with its own handler instead of `pool.request`: no Readable
 * and no response-header object per request; the answer's chunks are handed on as the socket gave them (no copy),
 * and reading pauses the upstream socket while more than `HIGH_WATER` bytes wait (backpressure to the upstream).
 */
import { type Dispatcher, Pool } from 'undici';
import type { BhttpRequest, Field } from '../protocol/bhttp.ts';
import { fieldsFromHeaders, HOP_FIELDS } from '../enclave/ohttp/messages.ts';

const ALLOWED = new Set(['/v1/chat/completions', '/v1/completions', '/v1/embeddings', '/v1/models']);

/** The upstream's answer as fields and a byte stream (the session path: no web Response is built). */
export interface UpstreamAnswer {
  readonly status: number;
  readonly headers: readonly Field[];
  readonly body: AsyncIterable<Uint8Array> | Iterable<Uint8Array>;
  /** Destroys the upstream request (the enclave went away or stopped reading). */
  cancel(): void;
}

/** Forwards an inner request given as binary HTTP fields (already checked: enclave/ohttp/messages.ts checkInnerRequest). */
export type FieldForwarder = (req: BhttpRequest, signal?: AbortSignal) => Promise<UpstreamAnswer>;

export interface Forwarder {
  handle(req: Request): Promise<Response>;
  forward: FieldForwarder;
  close(): Promise<void>;
}

export interface ForwarderOptions {
  readonly upstream: string;
  readonly connections?: number;
  readonly headersTimeoutMs?: number;
  readonly bodyTimeoutMs?: number;
}

export function createForwarder(o: ForwarderOptions): Forwarder {
  const base = new URL(o.upstream);
  const prefix = base.pathname.replace(/\/+$/, '').replace(/\/v1$/, '');
  const pool = new Pool(base.origin, { connections: o.connections ?? 64, headersTimeout: o.headersTimeoutMs ?? 300_000, bodyTimeout: o.bodyTimeoutMs ?? 300_000 });
  const refusal = (status: number, code: string): UpstreamAnswer => {
    const bytes = new TextEncoder().encode(JSON.stringify({ error: { code } }));
    return { status, headers: [['content-type', 'application/json']], body: [bytes], cancel: () => undefined };
  };
  return {
    forward(req, signal) {
      const q = req.path.indexOf('?');
      const pathname = q < 0 ? req.path : req.path.slice(0, q);
      if (!ALLOWED.has(pathname)) return Promise.resolve(refusal(404, 'NOT_FOUND'));
      const headers: string[] = [];
      for (const [k, v] of req.headers) {
        const n = k.toLowerCase();
        if (n !== 'authorization' && !HOP_FIELDS.has(n)) headers.push(n, v);
      }
      const hasBody = req.method !== 'GET' && req.method !== 'HEAD' && req.content.length > 0;
      return new Promise<UpstreamAnswer>((resolve) => {
        const h = new AnswerHandler(resolve, () => resolve(refusal(502, 'UPSTREAM_UNAVAILABLE')), signal);
        pool.dispatch({ path: `${prefix}${req.path}`, method: req.method as 'POST', headers, ...(hasBody ? { body: req.content } : {}) }, h);
      });
    },
    async handle(req) {
      const url = new URL(req.url);
      if (!ALLOWED.has(url.pathname)) return Response.json({ error: { code: 'NOT_FOUND' } }, { status: 404 });
      const headers: Record<string, string> = {};
      for (const [k, v] of fieldsFromHeaders(req.headers)) if (k !== 'authorization') headers[k] = v;
      const body = req.method === 'GET' || req.method === 'HEAD' ? undefined : new Uint8Array(await req.arrayBuffer());
      let r;
      try {
        r = await pool.request({ origin: base.origin, path: `${prefix}${url.pathname}${url.search}`, method: req.method as 'POST', headers, ...(body ? { body } : {}), signal: req.signal });
      } catch {
        return Response.json({ error: { code: 'UPSTREAM_UNAVAILABLE' } }, { status: 502 });
      }
      const h = new Headers();
      for (const [k, v] of Object.entries(r.headers)) if (typeof v === 'string') h.set(k, v);
      const it = r.body[Symbol.asyncIterator]();
      const stream = new ReadableStream<Uint8Array>(
        {
          async pull(ctl) {
            try {
              const x = await it.next();
              if (x.done) ctl.close();
              else ctl.enqueue(new Uint8Array(x.value as Buffer));
            } catch (e) {
              ctl.error(e);
            }
          },
          cancel() {
            r.body.destroy();
          },
        },
        { highWaterMark: 0 },
      );
      return new Response(stream, { status: r.statusCode, headers: h });
    },
    close: () => pool.close(),
  };
}

/** Bytes of an upstream answer held before its socket is paused (the reader is slower than the upstream). */
const HIGH_WATER = 64 * 1024;

/**
 * One upstream exchange on the pool's dispatcher: resolves the answer at its head, then queues its chunks for one
 * reader. A failure before the head answers 502 UPSTREAM_UNAVAILABLE (nothing was sent on); after it, the reader's
 * next read throws (the caller ends the answer without its final record).
 */
class AnswerHandler implements Dispatcher.DispatchHandler {
  #controller: Dispatcher.DispatchController | undefined;
  #queue: Buffer[] = [];
  #queued = 0;
  #ended = false;
  #error: Error | undefined;
  #wake: (() => void) | undefined;
  #resolve: ((a: UpstreamAnswer) => void) | undefined;
  readonly #unavailable: () => void;
  readonly #signal: AbortSignal | undefined;
  readonly #onAbort = () => this.cancel();

  constructor(resolve: (a: UpstreamAnswer) => void, unavailable: () => void, signal: AbortSignal | undefined) {
    this.#resolve = resolve;
    this.#unavailable = unavailable;
    this.#signal = signal;
    signal?.addEventListener('abort', this.#onAbort, { once: true });
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.#controller = controller;
    if (this.#signal?.aborted) controller.abort(new Error('cancelled'));
  }

  onResponseStart(_c: Dispatcher.DispatchController, status: number, headers: Record<string, string | string[] | undefined>): void {
    const fields: Field[] = [];
    for (const k in headers) {
      const v = headers[k];
      if (typeof v === 'string' && !HOP_FIELDS.has(k)) fields.push([k, v]);
    }
    const resolve = this.#resolve!;
    this.#resolve = undefined;
    resolve({ status, headers: fields, body: this, cancel: () => this.cancel() });
  }

  onResponseData(c: Dispatcher.DispatchController, chunk: Buffer): void {
    this.#queue.push(chunk);
    this.#queued += chunk.length;
    if (this.#queued > HIGH_WATER) c.pause();
    this.#wakeReader();
  }

  onResponseEnd(): void {
    this.#ended = true;
    this.#done();
  }

  onResponseError(_c: Dispatcher.DispatchController, e: Error): void {
    this.#error = e;
    this.#done();
    if (this.#resolve) {
      this.#resolve = undefined;
      this.#unavailable();
    }
  }

  cancel(): void {
    if (!this.#ended && !this.#error) this.#controller?.abort(new Error('cancelled'));
  }

  #done(): void {
    this.#signal?.removeEventListener('abort', this.#onAbort);
    this.#wakeReader();
  }

  #wakeReader(): void {
    const w = this.#wake;
    this.#wake = undefined;
    w?.();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    try {
      for (;;) {
        const c = this.#queue.shift();
        if (c) {
          this.#queued -= c.length;
          if (this.#controller?.paused && this.#queued <= HIGH_WATER) this.#controller.resume();
          yield c;
          continue;
        }
        if (this.#error) throw this.#error;
        if (this.#ended) return;
        await new Promise<void>((r) => {
          this.#wake = r;
        });
      }
    } finally {
      this.cancel(); // a reader that stopped early ends the upstream request
    }
  }
}
