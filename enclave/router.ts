/**
 * Routing interface between the OpenAI surface and whoever picks workers. The default `firstVerifiedRouter`
 * returns every verified worker that serves the model, in registration order (failover order); the market
 * (enclave/market) replaces it with price/latency/throughput selection over signed offers.
 */
import { GmError } from '../attestation/errors.ts';
import type { StreamCommitment } from '../protocol/stream-chain.ts';
import type { VerifiedWorker, WorkerRegistry } from './workers/registry.ts';

export interface RouteRequest {
  readonly requestId: string;
  readonly model: string;
  /** The decrypted request body (constraints such as `provider` travel inside it). */
  readonly body: Readonly<Record<string, unknown>>;
  readonly stream: boolean;
  readonly now: number;
  /** The bearer token of the decrypted request (the market's account key); never logged. */
  readonly apiKey?: string;
}

export interface Candidate {
  readonly worker: VerifiedWorker;
  /** Opaque to the dispatcher: the market's offer / lease for this candidate. */
  readonly detail?: unknown;
}

export interface Selection {
  readonly candidates: readonly Candidate[];
  /** Whether failing over to the next candidate (before the first token) is allowed. */
  readonly allowFallbacks: boolean;
  /**
   * Caps the gateway writes into the forwarded request: the output tokens per choice and the choices the hold
   * covers (`max_tokens`, `max_completion_tokens`, `n`). Absent: the request is forwarded as the client wrote it.
   */
  readonly caps?: { readonly maxTokens: number; readonly n: number };
  /** Outcome callbacks (the market records live stats and settles receipts here). */
  onFirstToken?(c: Candidate): void;
  /** A streamed answer is still moving (an event went to the client): it is not abandoned. */
  onProgress?(c: Candidate): void;
  onFailure?(c: Candidate, code: string): void;
  /** The worker answered wrongly (invalid usage, an oversized event): no failover, no charge, the worker demoted. */
  onWorkerFault?(c: Candidate, code: string): void;
  /**
   * The client went away or stopped reading. After the first token, `delivered` is what it was sent (charged, the
   * receipt says `cancelled`) and `usage` the worker's report if one arrived; before it, nothing is charged.
   */
  onCancel?(c: Candidate, delivered: Delivered | undefined, usage?: Usage): Promise<void> | void;
  /**
   * The worker failed after the first token (its connection or session dropped, or its stream ended unfinished):
   * `delivered` is what the client was sent before that, charged once with a receipt whose status is `failed`, and
   * `usage` the worker's report if one arrived. Called instead of onFailure; the extras go to the client before the
   * stream's error event.
   */
  onFailedMidStream?(c: Candidate, code: string, delivered: Delivered, usage?: Usage): Promise<ServedExtras | undefined> | ServedExtras | undefined;
  onSuccess?(c: Candidate, usage: Usage | undefined, delivered: Delivered): Promise<ServedExtras | undefined> | ServedExtras | undefined;
}

export interface Usage {
  readonly promptTokens: number;
  readonly completionTokens: number;
}

/** What the gateway saw leave for the client: UTF-8 bytes of the answer's text fields, and the choices returned. */
export interface Delivered {
  readonly bytes: number;
  readonly choices: number;
  /** For a streamed answer: the hash chain over the events streamed to the client (protocol/stream-chain.ts). */
  readonly stream?: StreamCommitment;
  /** The delivered text, one string per choice and field (for a tokenizer); absent past the meter's retention cap. */
  readonly texts?: readonly string[];
  /** Tool calls delivered (each brings framing tokens that print nothing). */
  readonly toolCalls?: number;
}

/** What the gateway appends to a served answer (a receipt, as SSE event or header). */
export interface ServedExtras {
  readonly sseEvent?: { readonly event: string; readonly data: string };
  readonly header?: readonly [string, string];
}

export interface Router {
  /** Throws GmError MODEL_NOT_FOUND for a model no verified worker offers, NO_ELIGIBLE_WORKER (or the market's codes) when none may serve it now. */
  select(r: RouteRequest): Selection | Promise<Selection>;
  /** Models the verified workers offer (for /v1/models). */
  models(now: number): string[];
  /** The model objects /v1/models lists, when the router knows more than names (the market: prices, workers). */
  modelCards?(now: number): readonly { readonly id: string }[];
}

export const noEligibleWorker = (why: string) => new GmError('unavailable', 'NO_ELIGIBLE_WORKER', why);
/** The model no verified worker offers (404 `model_not_found` to OpenAI clients, `param: "model"`). */
export const modelNotFound = (model: string) => new GmError('config', 'MODEL_NOT_FOUND', `the model ${JSON.stringify(model.slice(0, 256))} is not offered by any verified worker`);

export function firstVerifiedRouter(registry: WorkerRegistry): Router {
  return {
    select(r) {
      const ws = registry.list().filter((w) => w.models.includes(r.model));
      // No listed worker names the model: a final 404 as with the market (OpenAI clients retry a 503, not a 404).
      if (ws.length === 0) throw modelNotFound(r.model);
      const p = r.body.provider as { allow_fallbacks?: unknown } | undefined;
      return { candidates: ws.map((worker) => ({ worker })), allowFallbacks: p?.allow_fallbacks !== false };
    },
    models() {
      return [...new Set(registry.list().flatMap((w) => w.models))].sort();
    },
  };
}
