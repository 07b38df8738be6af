/**
 * Opaque peer errors (CONTRIBUTING.md, convention 6; docs/protocol.md §8): a status and a small problem+json body with a stable code,
 * nothing else; the detail (message, cause, verification report) goes only to the local structured log. Key
 * configuration errors carry the IANA `ohttp-key` problem type (RFC 9458 §5.3) so any OHTTP client re-fetches the keys.
 */
import { GmError } from '../../attestation/errors.ts';
import { MEDIA_PROBLEM_JSON } from '../../protocol/media.ts';
import { problemFor } from '../../protocol/problem.ts';
import type { Field } from '../../protocol/bhttp.ts';
import type { Logger } from '../log.ts';
import type { InnerAnswer } from '../ohttp/inner.ts';
import { marketHttpStatus } from '../market/index.ts';

const STATUS: Record<string, number> = {
  TOO_LARGE: 413,
  UNSUPPORTED_MEDIA_TYPE: 415,
  NO_ELIGIBLE_WORKER: 503,
  MODEL_NOT_FOUND: 404,
  NOT_FOUND: 404,
  WORKER_TIMEOUT: 504,
  UPSTREAM_FAILED: 502,
  WORKER_USAGE_INVALID: 502,
  WORKER_EVENT_TOO_LARGE: 502,
  SIM_NOT_ALLOWED: 403,
  WORKER_AUTH_REQUIRED: 401,
  WORKER_AUTH_FAILED: 401,
};

export function statusFor(e: GmError): number {
  const s = STATUS[e.code];
  if (s) return s;
  // The market owns its codes' statuses (payment 402, account 401, constraints 400, none eligible 503).
  const m = marketHttpStatus(e.code);
  if (m) return m;
  switch (e.kind) {
    case 'protocol':
      return 400;
    case 'rejected':
      return 403;
    case 'config':
      return 400;
    case 'collateral':
    case 'unavailable':
      return 503;
  }
}

/** A GmError for any thrown value; unexpected ones become INTERNAL (the cause stays in the log). */
export function asGmError(e: unknown): GmError {
  return e instanceof GmError ? e : new GmError('unavailable', 'INTERNAL', 'internal error', { cause: e });
}

/**
 * An opaque error response: RFC 9457 problem details with gm's `code` (docs/protocol.md §8), which also carries the
 * `{"error":{"code"}}` member OpenAI-style clients read. Errors of the OHTTP gateway itself go through
 * `gatewayProblem` first, so decryption failures of every kind leave as the one opaque code.
 */
export function errorResponse(e: GmError, headers: Record<string, string> = {}): Response {
  return new Response(problemJson(e), { status: statusFor(e), headers: { ...headers, 'content-type': MEDIA_PROBLEM_JSON } });
}

/** errorResponse's problem as an inner answer (sealed by the gateway), with `extra` fields after its content type. */
export function problemAnswer(e: GmError, extra: readonly Field[] = []): InnerAnswer {
  return { status: statusFor(e), headers: [['content-type', MEDIA_PROBLEM_JSON], ...extra], content: te.encode(problemJson(e)) };
}

const te = new TextEncoder();
function problemJson(e: GmError): string {
  const status = statusFor(e);
  return JSON.stringify({ type: 'about:blank', title: 'request failed', status, code: e.code, error: { code: e.code } });
}

/** The protocol's problem mapping for errors raised on POST /v1/ohttp (docs/protocol.md §8). */
export function gatewayProblem(e: GmError, headers: Record<string, string> = {}): Response {
  if (e.code === 'TOO_LARGE' || e.code === 'UNSUPPORTED_MEDIA_TYPE') return errorResponse(e, headers);
  const p = problemFor(e.code === 'TOO_MANY_STREAMS' ? new GmError('unavailable', 'REPLAY_CACHE_FULL', 'busy') : e);
  return new Response(JSON.stringify({ ...p.body, error: { code: p.body.code } }), { status: p.status, headers: { ...headers, ...p.headers } });
}

/** The code the peer sees for an error on POST /v1/ohttp (gatewayProblem's), e.g. for a public metric. */
export function gatewayCode(e: GmError): string {
  if (e.code === 'TOO_LARGE' || e.code === 'UNSUPPORTED_MEDIA_TYPE') return e.code;
  return problemFor(e.code === 'TOO_MANY_STREAMS' ? new GmError('unavailable', 'REPLAY_CACHE_FULL', 'busy') : e).body.code;
}

/** Logs the detail locally (never payloads: GmError messages are written by our code) and returns the opaque code. */
export function logError(log: Logger, event: string, e: GmError, f: Record<string, string | number | boolean | undefined> = {}): void {
  const cause = e.cause instanceof Error ? `${e.cause.name}: ${e.cause.message}` : undefined;
  log.warn(event, { code: e.code, kind: e.kind, detail: e.message, cause, ...f });
}
