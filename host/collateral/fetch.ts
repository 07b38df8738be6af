/**
 * Fetching from the vendors with undici: bounded retries with exponential backoff and jitter on network errors
 * and 5xx, and 429 honoured by waiting its Retry-After (AMD KDS rate-limits per client). Clock and sleep are
 * injected so tests run without real waiting.
 */
import { type Dispatcher, request } from 'undici';
import { unavailable } from '../../attestation/errors.ts';

export interface VendorResponse {
  readonly status: number;
  readonly body: Uint8Array;
  readonly headers: Readonly<Record<string, string>>;
}

export interface RetryOptions {
  readonly attempts: number;
  readonly baseDelayMs: number;
  readonly maxDelayMs: number;
  /** A Retry-After longer than this is not waited for: the fetch fails and the caller serves what it has. */
  readonly maxRetryAfterMs: number;
  readonly timeoutMs: number;
  readonly sleep: (ms: number) => Promise<void>;
  readonly now: () => number;
  readonly random: () => number;
  readonly dispatcher?: Dispatcher;
}

export const DEFAULT_RETRY: RetryOptions = {
  attempts: 4,
  baseDelayMs: 250,
  maxDelayMs: 8_000,
  maxRetryAfterMs: 60_000,
  timeoutMs: 15_000,
  sleep: (ms) => new Promise((r) => setTimeout(r, ms)),
  now: () => Date.now(),
  random: Math.random,
};

/** Retry-After as milliseconds: delta-seconds or an HTTP-date (RFC 9110 §10.2.3). */
export function retryAfterMs(value: string | undefined, now: number): number | undefined {
  if (!value) return undefined;
  if (/^\d+$/.test(value.trim())) return Number(value.trim()) * 1000;
  const t = Date.parse(value);
  return Number.isNaN(t) ? undefined : Math.max(0, t - now);
}

/**
 * GET or POST `url`, retrying what is retryable. Returns the final response (2xx or a non-retryable 4xx);
 * throws COLLATERAL_UPSTREAM_UNAVAILABLE when every attempt failed.
 */
export async function fetchWithRetry(url: string, method: 'GET' | 'POST', body: Uint8Array | undefined, contentType: string | undefined, opts: RetryOptions = DEFAULT_RETRY): Promise<VendorResponse> {
  let last = 'no attempt';
  for (let attempt = 1; attempt <= opts.attempts; attempt++) {
    let wait = Math.min(opts.maxDelayMs, opts.baseDelayMs * 2 ** (attempt - 1)) * (0.5 + opts.random() / 2);
    try {
      const r = await request(url, {
        method,
        ...(body ? { body } : {}),
        headers: { accept: '*/*', ...(contentType ? { 'content-type': contentType } : {}) },
        headersTimeout: opts.timeoutMs,
        bodyTimeout: opts.timeoutMs,
        ...(opts.dispatcher ? { dispatcher: opts.dispatcher } : {}),
      });
      const bytes = new Uint8Array(await r.body.arrayBuffer());
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(r.headers)) if (v !== undefined) headers[k.toLowerCase()] = Array.isArray(v) ? v.join(', ') : v;
      if (r.statusCode === 429 || r.statusCode === 503) {
        const ra = retryAfterMs(headers['retry-after'], opts.now());
        last = `HTTP ${r.statusCode}`;
        if (ra !== undefined) {
          if (ra > opts.maxRetryAfterMs) break;
          wait = ra;
        }
      } else if (r.statusCode >= 500) {
        last = `HTTP ${r.statusCode}`;
      } else {
        return { status: r.statusCode, body: bytes, headers };
      }
    } catch (e) {
      last = (e as Error).message;
    }
    if (attempt < opts.attempts) await opts.sleep(wait);
  }
  throw unavailable('COLLATERAL_UPSTREAM_UNAVAILABLE', `vendor collateral service unavailable (${last})`);
}
