/**
 * Error responses of gm's gateways (docs/protocol.md §8): RFC 9457 problem details, with RFC 9458 §5.3's "ohttp-key"
 * problem type for key configuration trouble. The mapping is deliberately coarse: a peer learns whether to re-fetch
 * the key configuration (re-attest), retry later, or give up; never why a decryption failed (that stays in local logs).
 */
import { GmError, isGmError, protocolError } from '../attestation/errors.ts';
import { MEDIA_PROBLEM_JSON, PROBLEM_TYPE_OHTTP_KEY } from './media.ts';

/** The only codes a gateway sends outward. */
export const PROBLEM_KEY_CONFIG = 'OHTTP_KEY_CONFIG';
export const PROBLEM_DECRYPT = 'OHTTP_DECRYPT_FAILED';
export const PROBLEM_BUSY = 'GATEWAY_BUSY';
export const PROBLEM_INTERNAL = 'INTERNAL';

export interface ProblemBody {
  readonly type: string;
  readonly title: string;
  readonly status: number;
  readonly code: string;
}

export interface ProblemResponse {
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: ProblemBody;
}

/** Local codes that mean "the key configuration the client used is not (or no longer) accepted". */
const KEY_CONFIG_CODES = new Set(['OHTTP_UNKNOWN_KEY_ID', 'OHTTP_UNSUPPORTED_SUITE', 'OHTTP_KEY_EXPIRED']);
/** Local codes that all leave as the one opaque decryption failure. */
const OPAQUE_PREFIXES = ['OHTTP_', 'HPKE_', 'CHUNKED_', 'VARINT_'];

/** The problem response a gateway sends for an error raised while decapsulating a request. */
export function problemFor(e: unknown): ProblemResponse {
  const code = isGmError(e) ? e.code : '';
  const mk = (status: number, type: string, title: string, c: string, extra: Record<string, string> = {}): ProblemResponse => ({
    status,
    headers: { 'content-type': MEDIA_PROBLEM_JSON, ...extra },
    body: { type, title, status, code: c },
  });
  if (KEY_CONFIG_CODES.has(code)) return mk(400, PROBLEM_TYPE_OHTTP_KEY, 'key configuration not accepted', PROBLEM_KEY_CONFIG);
  if (code === 'REPLAY_CACHE_FULL') return mk(503, 'about:blank', 'gateway busy', PROBLEM_BUSY, { 'retry-after': '1' });
  if (OPAQUE_PREFIXES.some((p) => code.startsWith(p))) return mk(400, 'about:blank', 'bad request', PROBLEM_DECRYPT);
  return mk(500, 'about:blank', 'internal error', PROBLEM_INTERNAL);
}

/**
 * Client side: the GmError for a problem response (strictly parsed; unknown shapes become OHTTP_BAD_PROBLEM).
 * `code` is PROBLEM_KEY_CONFIG when the client should re-attest and retry once.
 */
export function errorFromProblem(status: number, body: unknown): GmError {
  const b = body as Partial<ProblemBody> | null;
  if (!b || typeof b !== 'object' || typeof b.code !== 'string' || typeof b.type !== 'string') {
    return protocolError('OHTTP_BAD_PROBLEM', `gateway answered ${status} without a problem body`);
  }
  if (b.code === PROBLEM_KEY_CONFIG && b.type === PROBLEM_TYPE_OHTTP_KEY) return protocolError(PROBLEM_KEY_CONFIG, 'gateway refused the key configuration; re-attest');
  if (b.code === PROBLEM_BUSY) return new GmError('unavailable', PROBLEM_BUSY, 'gateway busy; retry later');
  if (b.code === PROBLEM_DECRYPT) return protocolError(PROBLEM_DECRYPT, 'gateway could not decrypt the request');
  return protocolError('OHTTP_GATEWAY_ERROR', `gateway answered ${status}`);
}
