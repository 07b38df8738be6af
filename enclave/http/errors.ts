/**
 * Opaque peer errors (STYLE.md §6): a status and `{"error":{"code":"..."}}`, nothing else; the detail (message,
 * cause, verification report) goes only to the local structured log. The key-configuration errors of RFC 9458 §5.3
 * also carry the IANA `ohttp-key` problem type, so any OHTTP client knows to re-fetch the key configuration.
 */
import { GmError } from '../../attestation/errors.ts';
import { MEDIA_PROBLEM_JSON, PROBLEM_TYPE_OHTTP_KEY } from '../../protocol/media.ts';
import type { Logger } from '../log.ts';

const STATUS: Record<string, number> = {
  BODY_TOO_LARGE: 413,
  UNSUPPORTED_MEDIA_TYPE: 415,
  TOO_MANY_STREAMS: 503,
  OHTTP_UNKNOWN_KEY_ID: 400,
  OHTTP_UNSUPPORTED_SUITE: 400,
  OHTTP_KEY_EXPIRED: 400,
  NO_ELIGIBLE_WORKER: 503,
  MODEL_NOT_FOUND: 404,
  NOT_FOUND: 404,
  WORKER_TIMEOUT: 504,
  UPSTREAM_FAILED: 502,
  REPLAY_CACHE_FULL: 503,
  SIM_NOT_ALLOWED: 403,
};
const KEY_ERRORS = new Set(['OHTTP_UNKNOWN_KEY_ID', 'OHTTP_UNSUPPORTED_SUITE', 'OHTTP_KEY_EXPIRED']);

export function statusFor(e: GmError): number {
  const s = STATUS[e.code];
  if (s) return s;
  // The market's codes (enclave/market marketHttpStatus): payment 402, account 401, constraints 400.
  if (e.code.startsWith('PAYMENT_')) return 402;
  if (e.code === 'ACCOUNT_MISSING' || e.code === 'ACCOUNT_UNKNOWN') return 401;
  if (e.code === 'ROUTE_CONSTRAINT_INVALID' || e.code.startsWith('OFFER_')) return 400;
  if (e.code === 'NO_ELIGIBLE_OFFER' || e.code === 'WORKER_CREDIT_LIMIT') return 503;
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

export function errorBody(code: string): string {
  return JSON.stringify({ error: { code } });
}

export function errorResponse(e: GmError, headers: Record<string, string> = {}): Response {
  const status = statusFor(e);
  if (KEY_ERRORS.has(e.code)) {
    return new Response(JSON.stringify({ type: PROBLEM_TYPE_OHTTP_KEY, title: 'key configuration not accepted', error: { code: e.code } }), { status, headers: { ...headers, 'content-type': MEDIA_PROBLEM_JSON } });
  }
  return new Response(errorBody(e.code), { status, headers: { ...headers, 'content-type': 'application/json' } });
}

/** Logs the detail locally (never payloads: GmError messages are written by our code) and returns the opaque code. */
export function logError(log: Logger, event: string, e: GmError, f: Record<string, string | number | boolean | undefined> = {}): void {
  const cause = e.cause instanceof Error ? `${e.cause.name}: ${e.cause.message}` : undefined;
  log.warn(event, { code: e.code, kind: e.kind, detail: e.message, cause, ...f });
}
