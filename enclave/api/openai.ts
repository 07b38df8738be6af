/**
 * The OpenAI-compatible surface inside the gateway (docs/design.md §5): what a decrypted binary HTTP request
 * reaches. POST /v1/chat/completions and /v1/completions (SSE streaming and not), POST /v1/embeddings,
 * GET /v1/models (the models verified workers offer). Each inference request: router.select → for each candidate,
 * the attestation gate (`registry.usable`) right before dispatch → re-encrypted to that worker's attested key.
 * A failure before the first token fails over (when the selection allows it); after it, the stream ends with a clear
 * `event: error`. Errors here are inside the encrypted response, as OpenAI-style `{error:{code,message,type}}`.
 * Nothing here logs a body, an inner path, or which worker served a request (per-worker counts are logged only as
 * windowed summaries, dispatch-summary.ts; the per-worker counters are operator-only metrics).
 *
 * The inference routes run on the decrypted fields and bytes directly (ohttp/inner.ts): parsed JSON → router →
 * dispatch → status, fields and content (or a pull source of SSE events) → the gateway seals it; no web Request or
 * Response is made for them. The other routes (/v1/models) are served by hono, which also carries the inference
 * routes, through the same code, for tests and embedders that call `app.request()`.
 */
import { Hono } from 'hono';
import { GmError, protocolError } from '../../attestation/errors.ts';
import type { BhttpRequest, Field } from '../../protocol/bhttp.ts';
import { statusFor } from '../http/errors.ts';
import type { Logger } from '../log.ts';
import type { Metrics } from '../metrics.ts';
import type { InnerResponse } from '../ohttp/client.ts';
import { answerOf, type BodySource, fieldValue, type InnerAnswer, type InnerService, jsonAnswer, readSource, responseOf, sourceOf } from '../ohttp/inner.ts';
import { bhttpRequest, requestFromBhttp } from '../ohttp/messages.ts';
import { DeliveryMeter, parseUsage } from '../market/metering.ts';
import { type Candidate, modelNotFound, type Router, type Selection, type ServedExtras, type Usage } from '../router.ts';
import type { VerifiedWorker } from '../workers/registry.ts';
import { createHash } from 'node:crypto';
import { StreamChain } from '../../protocol/stream-chain.ts';
import { encodeEvent, SSE_DONE, type SseEvent, SseSplitter, sseEvent } from './sse.ts';

const nodeSha256 = () => createHash('sha256');

export type Dispatch = (w: VerifiedWorker, req: BhttpRequest, o: { stream: boolean; signal: AbortSignal }) => Promise<InnerResponse>;

export interface ApiDeps {
  readonly router: Router;
  /** The attestation gate: a worker that is not usable right now never receives plaintext. */
  readonly usable: (id: string) => VerifiedWorker | undefined;
  readonly dispatch: Dispatch;
  readonly log: Logger;
  readonly metrics: Metrics;
  /** Counts each error answered here (inside the encryption) by its code: gm_errors_total's operator view. */
  readonly onError?: (code: string) => void;
  readonly now?: () => number;
  /** Largest non-streamed answer read from a worker. */
  readonly maxResponseBytes?: number;
  /** A streaming client that reads nothing for this long is cut off and charged for what it was sent (60 s). */
  readonly clientIdleMs?: number;
}

/** gm's own request fields (route preferences, payment) stay in the enclave. */
const GM_FIELDS = ['provider', 'payment', 'models'];
const te = new TextEncoder();
const td = new TextDecoder();
/** The fields of a forwarded request, and of a streamed answer (in the order a fetch Headers lists them). */
const WHOLE_FIELDS: readonly Field[] = [['content-type', 'application/json'], ['accept', 'application/json']];
const STREAM_FIELDS: readonly Field[] = [['content-type', 'application/json'], ['accept', 'text/event-stream']];
const SSE_ANSWER_FIELDS: readonly Field[] = [['cache-control', 'no-cache'], ['content-type', 'text/event-stream']];

/**
 * Codes OpenAI clients act on (OpenAI API reference, "Error codes"): the `openai` packages retry 408, 409, 429 and
 * 5xx answers and treat a 404 `model_not_found` as final, so an unknown model must never look like a 503.
 */
const OPENAI_CODES: Readonly<Record<string, string>> = { MODEL_NOT_FOUND: 'model_not_found' };
/** The request field at fault, for codes about one field (`param` in OpenAI's error object). */
const PARAMS: Readonly<Record<string, string>> = { MODEL_REQUIRED: 'model', MODEL_NOT_FOUND: 'model' };
/** Seconds a client should wait after a 503 (no eligible offer, capacity): one health interval is too long to hold. */
const RETRY_AFTER_S = '1';

/** An OpenAI error object: `{error:{message,type,code,param}}`, with Retry-After on every 503. */
export function apiError(e: GmError): InnerAnswer {
  const type = e.kind === 'unavailable' ? 'server_error' : 'invalid_request_error';
  const status = statusFor(e);
  const param = PARAMS[e.code] ?? errorParam(e);
  return jsonAnswer(status, { error: { code: OPENAI_CODES[e.code] ?? e.code, message: e.message, type, param: param ?? null } }, status === 503 ? [['retry-after', RETRY_AFTER_S]] : []);
}

/** A `param` an error carries itself (market constraint errors name their field). */
function errorParam(e: GmError): string | undefined {
  const p = (e as GmError & { param?: unknown }).param;
  return typeof p === 'string' ? p : undefined;
}

/** The inference routes, served without web objects (everything else goes to the hono app). */
const INFERENCE = new Set(['/v1/chat/completions', '/v1/completions', '/v1/embeddings']);

/** The inference route a decrypted request names, or undefined (a query is allowed; anything unusual goes to hono). */
export function inferenceRoute(method: string, path: string): string | undefined {
  if (method !== 'POST') return undefined;
  const q = path.indexOf('?');
  const p = q < 0 ? path : path.slice(0, q);
  // Percent-encoded or fragment paths are matched the way hono matches them, there.
  return INFERENCE.has(p) && !path.includes('#') ? p : undefined;
}

/** What an inference request needs of the inner request. */
interface InferenceRequest {
  readonly headers: readonly Field[];
  readonly content: Uint8Array;
  readonly signal: AbortSignal;
}

export interface OpenAiSurface {
  /** The inner service of the gateway: inference routes straight from the fields, the rest through `app`. */
  readonly serve: InnerService;
  /** Every route on hono (the control routes are served only here; the inference routes share `serve`'s code). */
  readonly app: Hono;
}

/** The OpenAI surface as a hono app (tests drive it with `app.request()`). */
export function openaiApp(d: ApiDeps): Hono {
  return openaiSurface(d).app;
}

export function openaiSurface(d: ApiDeps): OpenAiSurface {
  const now = d.now ?? Date.now;
  const clientIdleMs = d.clientIdleMs ?? 60_000;
  // Labels in name order at every inc (prom-client prints them in the order given).
  const dispatched = d.metrics.tally('gm_dispatch_total', 'Dispatches to workers by worker and outcome', { labels: ['outcome', 'worker'] });
  const failovers = d.metrics.counter('gm_failovers_total', 'Failovers to the next candidate before the first token');
  const ttft = d.metrics.histogram('gm_time_to_first_token_seconds', 'Time from decryption to the first token forwarded');
  // The code the client reads (apiError's), never the model or the worker.
  const counted = (g: GmError): InnerAnswer => {
    d.onError?.(OPENAI_CODES[g.code] ?? g.code);
    return apiError(g);
  };
  const failed = (e: unknown, path: string): InnerAnswer => {
    const g = e instanceof GmError ? e : new GmError('unavailable', 'INTERNAL', 'internal error', { cause: e });
    d.log.warn('api.error', { code: g.code, route: apiRoute(path) });
    return counted(g);
  };
  const app = new Hono();
  app.onError((e, c) => responseOf(failed(e, c.req.path)));

  const cards = (t: number) => d.router.modelCards?.(t) ?? d.router.models(t).map((id) => ({ id, object: 'model', created: 0, owned_by: 'gm' }));
  app.get('/v1/models', (c) => c.json({ object: 'list', data: cards(now()) }));
  // Model ids may hold slashes (`org/name`): everything after /v1/models/ is the id.
  app.get('/v1/models/:id{.+}', (c) => {
    const id = decodeURIComponent(c.req.param('id'));
    const card = cards(now()).find((m) => m.id === id);
    if (!card) throw modelNotFound(id);
    return c.json(card);
  });

  const inference = async (path: string, r: InferenceRequest): Promise<InnerAnswer> => {
    let body: Record<string, unknown>;
    try {
      // As fetch's Body.json() reads it: UTF-8 (a BOM dropped, invalid bytes replaced), whatever the content type.
      body = JSON.parse(td.decode(r.content)) as Record<string, unknown>;
    } catch (e) {
      throw protocolError('BAD_JSON', 'request body must be a JSON object', { cause: e });
    }
    if (typeof body !== 'object' || body === null || Array.isArray(body)) throw protocolError('BAD_JSON', 'request body must be a JSON object');
    if (typeof body.model !== 'string' || body.model.length === 0) throw protocolError('MODEL_REQUIRED', 'the request names no model');
    const stream = body.stream === true && path !== '/v1/embeddings';
    const requestId = crypto.randomUUID();
    const t0 = performance.now();
    // Only gm account keys (`gm_…`, enclave/ledger) name an account; other bearer tokens (the placeholder an OpenAI
    // SDK insists on) are not credentials here and are ignored, so the request is anonymous.
    const bearer = /^Bearer\s+(gm_\S+)$/i.exec(fieldValue(r.headers, 'authorization') ?? '')?.[1];
    const selected = d.router.select({ requestId, model: body.model, body, stream, now: now(), ...(bearer ? { apiKey: bearer } : {}) });
    // A synchronous router's selection is used as it is (no await: one microtask fewer per request).
    const sel = 'then' in selected ? await selected : selected;
    const fwd: Record<string, unknown> = {};
    for (const k in body) if (!GM_FIELDS.includes(k)) fwd[k] = body[k];
    capForward(fwd, path, sel.caps);
    // Streams always ask the worker for its usage (the charge compares it with the enclave's own count); the extra
    // usage chunk is removed again when the client did not ask for it.
    const clientUsage = isObj(body.stream_options) && body.stream_options.include_usage === true;
    if (stream) fwd.stream_options = { ...(isObj(body.stream_options) ? body.stream_options : {}), include_usage: true };
    const req = bhttpRequest('POST', path, stream ? STREAM_FIELDS : WHOLE_FIELDS, te.encode(JSON.stringify(fwd)));
    let last: GmError | undefined;
    for (let i = 0; i < sel.candidates.length; i++) {
      if (i > 0) {
        if (!sel.allowFallbacks) break;
        failovers.inc();
      }
      const cand = sel.candidates[i]!;
      const w = d.usable(cand.worker.id);
      if (!w) {
        last = new GmError('unavailable', 'WORKER_NOT_VERIFIED', 'the selected worker is not verified within its freshness window');
        d.log.warn('dispatch.gate', { requestId, code: last.code });
        continue;
      }
      // Once a worker has answered, the prompt goes to no other worker, whatever is wrong with the answer.
      let answered = false;
      try {
        const res = await d.dispatch(w, req, { stream, signal: r.signal });
        if (res.status >= 500) {
          if (!res.content) await res.body.cancel().catch(() => undefined);
          throw new GmError('unavailable', 'UPSTREAM_FAILED', `worker answered ${res.status}`);
        }
        const contentType = res.fields ? fieldValue(res.fields, 'content-type') : (res.headers.get('content-type') ?? undefined);
        if (!stream || res.status !== 200 || !(contentType ?? '').startsWith('text/event-stream')) {
          const text = res.content ?? (await readSource(sourceOf(res.body), Number.MAX_SAFE_INTEGER));
          answered = true;
          // What the answer delivers is measured only for a router that charges for it (onSuccess reads it).
          const meter = sel.onSuccess ? new DeliveryMeter() : undefined;
          const usage = res.status === 200 ? answerUsage(text, meter) : undefined;
          sel.onFirstToken?.(cand);
          // A worker's 4xx is the answer to this request (no failover); it is not a served request to bill.
          if (res.status !== 200) sel.onFailure?.(cand, `UPSTREAM_STATUS_${res.status}`);
          const extras = res.status === 200 && meter ? await sel.onSuccess?.(cand, usage, meter.delivered) : undefined;
          dispatched.inc(res.status === 200 ? 'ok' : `status_${res.status}`, w.id);
          // The worker's own error answer goes to the client as it is; counted by its status (its body is the worker's).
          if (res.status >= 400) d.onError?.(`UPSTREAM_STATUS_${res.status}`);
          ttft.observe({}, (performance.now() - t0) / 1000);
          d.log.info('request.routed', { requestId, stream: false, status: res.status, attempt: i + 1 });
          // Field names in lower case, sorted (as a fetch Headers would list them): content-type, then gm-receipt.
          const headers: Field[] = [['content-type', contentType ?? 'application/json']];
          if (extras?.header) headers.push([extras.header[0].toLowerCase(), extras.header[1]]);
          return { status: res.status, headers, content: text };
        }
        const reader = res.body.getReader();
        const split = new SseSplitter();
        const st: StreamState = { usage: undefined, clientUsage };
        // Wait for the first whole event: a worker that fails before it can still be failed over.
        let firstEvents: Pending[] = [];
        while (firstEvents.length === 0) {
          const x = await reader.read();
          if (x.done) throw new GmError('unavailable', 'UPSTREAM_FAILED', 'worker stream ended before the first token');
          try {
            firstEvents = split.push(x.value).flatMap((e) => inspect(e, st));
          } catch (e) {
            answered = true;
            await reader.cancel().catch(() => undefined);
            throw e;
          }
          if (split.done && firstEvents.length === 0) break;
        }
        sel.onFirstToken?.(cand);
        ttft.observe({}, (performance.now() - t0) / 1000);
        d.log.info('request.routed', { requestId, stream: true, attempt: i + 1 });
        return { status: 200, headers: SSE_ANSWER_FIELDS, body: relay(reader, split, firstEvents, st, sel, cand, w, requestId) };
      } catch (e) {
        last = e instanceof GmError ? e : new GmError('unavailable', 'UPSTREAM_FAILED', 'worker request failed', { cause: e });
        if (r.signal.aborted) {
          await sel.onCancel?.(cand, undefined);
          throw new GmError('unavailable', 'CLIENT_CANCELLED', 'client went away');
        }
        if (answered) {
          // A wrong answer is the worker's fault (its code reaches the client); any other failure after the answer
          // arrived ends the request too: no other worker gets the prompt.
          if (WORKER_FAULTS.has(last.code)) {
            sel.onWorkerFault?.(cand, last.code);
            dispatched.inc('worker_fault', cand.worker.id);
            d.log.warn('dispatch.worker_fault', { requestId, code: last.code, attempt: i + 1 });
          } else {
            sel.onFailure?.(cand, last.code);
            d.log.warn('dispatch.failed_after_answer', { requestId, code: last.code, attempt: i + 1 });
          }
          throw last;
        }
        sel.onFailure?.(cand, last.code);
        dispatched.inc('failed_before_first_token', cand.worker.id);
        d.log.warn('dispatch.failed', { requestId, code: last.code, reason: last.message, attempt: i + 1 });
      }
    }
    throw last ?? new GmError('unavailable', 'NO_ELIGIBLE_WORKER', 'no worker could serve the request');
  };

  /**
   * Pipes the rest of the worker's SSE stream, one whole event per piece; a failure now ends it with `event: error`.
   * What was handed to the client is metered as it goes, so a cancel (the client hung up, or stopped reading for
   * `clientIdleMs`) is charged exactly what was sent.
   */
  function relay(reader: ReadableStreamDefaultReader<Uint8Array>, split: SseSplitter, first: Pending[], st: StreamState, sel: Selection, cand: Candidate, w: VerifiedWorker, requestId: string): BodySource {
    const queue: Pending[] = [];
    // Every event queued for the client before the receipt is a link of the stream chain, in the order it is sent.
    const chain = new StreamChain(nodeSha256);
    const enqueue = (ps: readonly Pending[]): void => {
      for (const p of ps) {
        chain.add(p.bytes);
        queue.push(p);
      }
    };
    enqueue(first);
    const sent = new DeliveryMeter();
    /** No more is read from the worker; what is queued is still handed out. */
    let closed = false;
    /** Settled: success, failure or cancel was reported (and a cancel hands out nothing more). */
    let ended = false;
    let cancelledByClient = false;
    /** The failure the next read reports (a client that stopped reading). */
    let failure: GmError | undefined;
    let stall: ReturnType<typeof setTimeout> | undefined;
    const cancelled = async (why: string): Promise<void> => {
      if (ended) return;
      ended = true;
      closed = true;
      cancelledByClient = true;
      clearTimeout(stall);
      dispatched.inc('client_cancelled', w.id);
      d.log.info('request.cancelled', { requestId, reason: why });
      await reader.cancel().catch(() => undefined);
      try {
        await sel.onCancel?.(cand, sent.delivered, st.usage);
      } catch (e) {
        d.log.warn('request.cancel_settle_failed', { requestId, code: e instanceof GmError ? e.code : 'INTERNAL' });
      }
    };
    /**
     * The worker failed after the first token: every event queued so far goes to the client before the error, so
     * all of it is what the client was sent, settled once (receipt status `failed`); the receipt comes back to be
     * sent ahead of the error event.
     */
    const failedMidStream = async (code: string): Promise<ServedExtras | undefined> => {
      for (const p of queue) {
        sent.add(p.chunk);
        p.counted = true;
      }
      if (!sel.onFailedMidStream) {
        sel.onFailure?.(cand, code);
        return undefined;
      }
      try {
        return await sel.onFailedMidStream(cand, code, { ...sent.delivered, stream: chain.commitment }, st.usage);
      } catch (e) {
        d.log.warn('request.failed_settle_failed', { requestId, code: e instanceof GmError ? e.code : 'INTERNAL' });
        return undefined;
      }
    };
    /** The last piece of a stream that ends on a worker fault: only this event goes out after it. */
    const finalError = (bytes: Uint8Array): Uint8Array => {
      closed = true;
      queue.length = 0;
      return bytes;
    };
    const fault = (code: string): Uint8Array => {
      ended = true;
      sel.onWorkerFault?.(cand, code);
      dispatched.inc('worker_fault', w.id);
      d.onError?.(code);
      d.log.warn('dispatch.worker_fault', { requestId, code });
      void reader.cancel().catch(() => undefined);
      return finalError(sseEvent('error', JSON.stringify({ error: { code, type: 'server_error', message: 'the worker sent an answer gm cannot serve; the answer is incomplete' } })));
    };
    const next = (): Uint8Array | undefined => {
      const p = queue.shift();
      if (!p) return undefined;
      if (!p.counted) sent.add(p.chunk);
      sel.onProgress?.(cand);
      return p.bytes;
    };
    return {
      async read() {
        clearTimeout(stall);
        if (failure) throw failure;
        if (cancelledByClient) return undefined;
        while (queue.length === 0 && !closed) {
          let x: ReadableStreamReadResult<Uint8Array>;
          try {
            x = await reader.read();
          } catch (e) {
            if (ended) return undefined;
            const code = e instanceof GmError ? e.code : 'WORKER_STREAM_FAILED';
            ended = true;
            dispatched.inc('failed_mid_stream', w.id);
            d.onError?.('WORKER_FAILED_MID_STREAM');
            d.log.warn('dispatch.mid_stream_failure', { requestId, code });
            const extras = await failedMidStream(code);
            if (extras?.sseEvent) queue.push({ bytes: sseEvent(extras.sseEvent.event, extras.sseEvent.data), chunk: undefined });
            queue.push({ bytes: sseEvent('error', JSON.stringify({ error: { code: 'WORKER_FAILED_MID_STREAM', type: 'server_error', message: 'the worker failed after the first token; the answer is incomplete' } })), chunk: undefined });
            closed = true;
            break;
          }
          if (ended) return undefined;
          if (x.done) {
            const rest = split.rest();
            if (rest) enqueue([{ bytes: rest, chunk: undefined }]);
            if (!split.done) {
              // The upstream closed without [DONE]: incomplete, say so rather than pretend it finished.
              ended = true;
              dispatched.inc('incomplete', w.id);
              d.onError?.('WORKER_STREAM_INCOMPLETE');
              const extras = await failedMidStream('WORKER_STREAM_INCOMPLETE');
              if (extras?.sseEvent) queue.push({ bytes: sseEvent(extras.sseEvent.event, extras.sseEvent.data), chunk: undefined });
              queue.push({ bytes: sseEvent('error', JSON.stringify({ error: { code: 'WORKER_STREAM_INCOMPLETE', type: 'server_error', message: 'the worker ended the stream without finishing it' } })), chunk: undefined });
            } else {
              // Everything before [DONE] is what the client is sent: the charge is metered on all of it.
              for (const p of queue) {
                sent.add(p.chunk);
                p.counted = true;
              }
              ended = true;
              const extras = await sel.onSuccess?.(cand, st.usage, { ...sent.delivered, stream: chain.commitment });
              if (extras?.sseEvent) queue.push({ bytes: sseEvent(extras.sseEvent.event, extras.sseEvent.data), chunk: undefined });
              queue.push({ bytes: SSE_DONE, chunk: undefined });
              dispatched.inc('ok', w.id);
            }
            closed = true;
            break;
          }
          try {
            enqueue(split.push(x.value).flatMap((e) => inspect(e, st)));
          } catch (e) {
            return fault(e instanceof GmError ? e.code : 'WORKER_ANSWER_UNUSABLE');
          }
        }
        const out = next();
        if (out === undefined || (queue.length === 0 && closed)) return out;
        // A client that stops reading is timed out: the answer is cut and charged for what it was sent.
        stall = setTimeout(() => {
          failure = new GmError('unavailable', 'CLIENT_STALLED', 'the client stopped reading the answer');
          void cancelled('client_stalled');
        }, clientIdleMs);
        stall.unref?.();
        return out;
      },
      async cancel() {
        await cancelled('client_gone');
      },
    };
  }

  // The inference routes on hono share the lean code: the request's fields and bytes in, the answer out.
  for (const path of INFERENCE) {
    app.post(path, async (c) => {
      const raw = c.req.raw;
      const headers: Field[] = [];
      raw.headers.forEach((v, k) => void headers.push([k, v]));
      return responseOf(await inference(path, { headers, content: new Uint8Array(await raw.arrayBuffer()), signal: raw.signal }));
    });
  }
  app.all('*', () => responseOf(counted(new GmError('protocol', 'NOT_FOUND', 'no such endpoint'))));

  const serve: InnerService = async (req, signal) => {
    const path = inferenceRoute(req.method, req.path);
    if (path === undefined) return answerOf(await app.fetch(requestFromBhttp(req, signal)));
    try {
      return await inference(path, { headers: req.headers, content: req.content, signal });
    } catch (e) {
      return failed(e, path);
    }
  };
  return { serve, app };
}

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Codes that make an answered request the worker's fault (no failover, no charge, the worker demoted). */
const WORKER_FAULTS = new Set(['WORKER_USAGE_INVALID', 'WORKER_EVENT_TOO_LARGE']);

/** An event waiting to go to the client, with its parsed JSON chunk for metering (when it is one). */
interface Pending {
  readonly bytes: Uint8Array;
  readonly chunk: unknown;
  counted?: boolean;
}

interface StreamState {
  usage: Usage | undefined;
  readonly clientUsage: boolean;
}

/**
 * Reads one worker event: notes its usage (strictly: WORKER_USAGE_INVALID) and drops the usage-only chunk the
 * client did not ask for. Non-JSON events are forwarded as they are.
 */
function inspect(e: SseEvent, st: StreamState): Pending[] {
  let chunk: unknown;
  if (e.data !== undefined && e.data.includes('{')) {
    try {
      chunk = JSON.parse(e.data);
    } catch {
      chunk = undefined;
    }
  }
  if (isObj(chunk) && chunk.usage !== undefined && chunk.usage !== null) {
    st.usage = parseUsage(chunk.usage) ?? st.usage;
    if (!st.clientUsage && Array.isArray(chunk.choices) && chunk.choices.length === 0) return [];
  }
  return [{ bytes: encodeEvent(e), chunk }];
}

/** Parses a non-streamed answer: its usage (strictly) and what it delivers. A non-JSON answer carries no usage. */
function answerUsage(buf: Uint8Array, meter: DeliveryMeter | undefined): Usage | undefined {
  let j: unknown;
  try {
    j = JSON.parse(td.decode(buf));
  } catch {
    return undefined;
  }
  meter?.add(j);
  return isObj(j) ? parseUsage(j.usage) : undefined;
}

/**
 * Writes the hold's bounds into the forwarded request, so a worker is never asked for more than the account
 * reserved: `max_tokens` (and `max_completion_tokens`, which newer servers read first) per choice, and `n`.
 */
function capForward(fwd: Record<string, unknown>, path: string, caps: Selection['caps']): void {
  if (!caps || path === '/v1/embeddings') return;
  fwd.max_tokens = caps.maxTokens;
  if (path === '/v1/chat/completions') fwd.max_completion_tokens = caps.maxTokens;
  fwd.n = caps.n;
}

/** A fixed name for an inner path (logs never carry the path a client sent). */
function apiRoute(path: string): string {
  return ['/v1/chat/completions', '/v1/completions', '/v1/embeddings', '/v1/models'].includes(path) ? path : 'other';
}
