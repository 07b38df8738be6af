/**
 * The worker's inner handler: forwards a decapsulated OpenAI request to the local inference server (vLLM, SGLang,
 * or `gm dev-model`) through an undici Pool (keep-alive) and streams its answer back without buffering (the web
 * stream pulls from the upstream socket; cancelling it destroys the upstream request). Only the OpenAI inference
 * paths pass.
 *
 * The session path (`forward`) dispatches with its own handler instead of `pool.request`: no Readable, no promise and
 * no response-header object per request; the answer goes to the caller's sink as the parser sees it (chunks as the
 * socket gave them, no copy), and the upstream socket pauses while the sink says it holds enough (backpressure to
 * the upstream). To a plain-HTTP inference server its GETs and POSTs go on gm's lean keep-alive connections
 * (enclave/dispatch/h1-pool.ts: 40–60 µs less CPU per request than undici's machinery); anything else, and an
 * `https:` upstream, on the undici Pool.
 */
import { type Dispatcher, Pool } from 'undici';
import { H1Pool } from '../enclave/dispatch/h1-pool.ts';
import type { BhttpRequest, Field } from '../protocol/bhttp.ts';
import { fieldsFromHeaders, HOP_FIELDS } from '../enclave/ohttp/messages.ts';

const ALLOWED = new Set(['/v1/chat/completions', '/v1/completions', '/v1/embeddings', '/v1/models']);

/**
 * Where an upstream answer goes as it arrives (the session path: no web Response, no stream object, no promise).
 * Calls come in order: `head` once, then `data` any number of times, then `end` or `fail`; none after `cancel()`.
 */
export interface AnswerSink {
  /** The answer's status and fields (hop-by-hop fields left out). */
  head(status: number, headers: readonly Field[]): void;
  /** One chunk of the body; false: the sink holds enough, the upstream pauses until `resume()`. */
  data(chunk: Uint8Array): boolean;
  end(): void;
  /**
   * The exchange failed: after the head, the answer is cut short; before it, the inner request is refused (the
   * undici forwarder answers an unreachable upstream with 502 UPSTREAM_UNAVAILABLE instead).
   */
  fail(e: unknown): void;
}

/** One upstream exchange in progress. */
export interface UpstreamExchange {
  /** Ends it (the enclave went away or the answer is refused): the upstream request is destroyed, the sink told nothing more. */
  cancel(): void;
  /** Reading goes on after `data` returned false. */
  resume(): void;
}

/**
 * Forwards an inner request given as binary HTTP fields (already checked: enclave/ohttp/messages.ts checkInnerRequest);
 * the answer goes to `sink`, possibly before this returns (a refusal is answered at once).
 */
export type FieldForwarder = (req: BhttpRequest, sink: AnswerSink) => UpstreamExchange;

/** An exchange with nothing left to stop (its answer was given whole). */
export const ANSWERED: UpstreamExchange = { cancel: () => undefined, resume: () => undefined };

/** Gives `sink` a whole answer at once. */
export function answerWith(sink: AnswerSink, status: number, headers: readonly Field[], body: Uint8Array): UpstreamExchange {
  sink.head(status, headers);
  if (body.length > 0) sink.data(body);
  sink.end();
  return ANSWERED;
}

const JSON_FIELDS: readonly Field[] = [['content-type', 'application/json']];
const NO_BODY = new Uint8Array(0);
const refusal = (sink: AnswerSink, status: number, code: string) => answerWith(sink, status, JSON_FIELDS, new TextEncoder().encode(JSON.stringify({ error: { code } })));

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
  // An inference server closes an idle connection after a few seconds (uvicorn: 5 s) and may say so in Keep-Alive;
  // a connection idle 4 s is closed first. It may also end a body by closing the connection (RFC 9112 §6.3 rule 8).
  const lean =
    base.protocol === 'http:'
      ? new H1Pool(base, { connectMs: 10_000, firstByteMs: o.headersTimeoutMs ?? 300_000, idleMs: o.bodyTimeoutMs ?? 300_000, keepAliveMs: 4_000 }, o.connections ?? 64, { closeDelimited: true, retryUnanswered: true })
      : undefined;
  return {
    forward(req, sink) {
      const q = req.path.indexOf('?');
      const pathname = q < 0 ? req.path : req.path.slice(0, q);
      if (!ALLOWED.has(pathname)) return refusal(sink, 404, 'NOT_FOUND');
      const headers: string[] = [];
      for (const [k, v] of req.headers) {
        const n = k.toLowerCase();
        if (n !== 'authorization' && !HOP_FIELDS.has(n)) headers.push(n, v);
      }
      const hasBody = req.method !== 'GET' && req.method !== 'HEAD' && req.content.length > 0;
      const h = new AnswerHandler(sink);
      if (lean && (req.method === 'POST' || req.method === 'GET')) lean.dispatch({ method: req.method, path: `${prefix}${req.path}`, headers, body: hasBody ? req.content : NO_BODY }, h);
      else pool.dispatch({ path: `${prefix}${req.path}`, method: req.method as 'POST', headers, body: hasBody ? req.content : null }, h);
      return h;
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
    close: async () => {
      await Promise.all([pool.close(), lean?.destroy()]);
    },
  };
}

/**
 * One upstream exchange on the pool's dispatcher, handing the answer to its sink. A failure before the head answers
 * 502 UPSTREAM_UNAVAILABLE (nothing was sent on); after it, the sink's `fail` (the caller ends the answer without its
 * final record).
 */
class AnswerHandler implements Dispatcher.DispatchHandler, UpstreamExchange {
  #controller: Dispatcher.DispatchController | undefined;
  /** Undefined once the answer ended, failed or was cancelled: the sink hears nothing more. */
  #sink: AnswerSink | undefined;
  #started = false;

  constructor(sink: AnswerSink) {
    this.#sink = sink;
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.#controller = controller;
    if (!this.#sink) controller.abort(new Error('cancelled'));
  }

  onResponseStart(_c: Dispatcher.DispatchController, status: number, headers: Record<string, string | string[] | undefined>): void {
    // An informational response (1xx, e.g. 103 Early Hints) is not the answer: the final one follows on this exchange.
    if (status < 200) return;
    const fields: Field[] = [];
    for (const k in headers) {
      const v = headers[k];
      if (typeof v === 'string' && !HOP_FIELDS.has(k)) fields.push([k, v]);
    }
    this.#started = true;
    this.#sink?.head(status, fields);
  }

  onResponseData(c: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.#sink && !this.#sink.data(chunk)) c.pause();
  }

  onResponseEnd(): void {
    const s = this.#sink;
    this.#sink = undefined;
    s?.end();
  }

  onResponseError(_c: Dispatcher.DispatchController, e: Error): void {
    const s = this.#sink;
    this.#sink = undefined;
    if (!s) return;
    if (this.#started) s.fail(e);
    else refusal(s, 502, 'UPSTREAM_UNAVAILABLE');
  }

  cancel(): void {
    if (!this.#sink) return;
    this.#sink = undefined;
    this.#controller?.abort(new Error('cancelled'));
  }

  resume(): void {
    if (this.#controller?.paused) this.#controller.resume();
  }
}
