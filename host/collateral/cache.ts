/**
 * The collateral cache (docs/design.md §1, §4): serves AMD KDS, Intel PCS and NVIDIA collateral from disk while it is
 * within its own validity, fetches it otherwise (coalescing concurrent requests for the same item), and, when the
 * vendor is unreachable, serves the expired copy marked stale: the consumer re-checks every date and signature,
 * so a stale item can only fail verification, never pass it wrongly.
 */
import { hex, sha256 } from '../../attestation/bytes.ts';
import { GmError, unavailable } from '../../attestation/errors.ts';
import { DEFAULT_RETRY, type RetryOptions, fetchWithRetry } from './fetch.ts';
import type { CollateralRoute } from './sources.ts';
import { DiskStore, type CachedItem } from './store.ts';
import { DEFAULT_VALIDITY, type ValidityOptions, cacheUntil } from './validity.ts';

export type CacheState = 'hit' | 'miss' | 'stale' | 'uncached';

export interface CollateralResult {
  readonly state: CacheState;
  readonly status: number;
  readonly contentType: string | undefined;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: Uint8Array;
  readonly expiresAt: string | undefined;
}

export interface CollateralCacheOptions {
  readonly dir: string;
  readonly retry?: Partial<RetryOptions>;
  readonly validity?: ValidityOptions;
  readonly now?: () => Date;
}

export class CollateralCache {
  readonly #store: DiskStore;
  readonly #retry: RetryOptions;
  readonly #validity: ValidityOptions;
  readonly #now: () => Date;
  readonly #inflight = new Map<string, Promise<CollateralResult>>();
  /** Counters for /metrics. */
  readonly stats = { hit: 0, miss: 0, stale: 0, uncached: 0, errors: 0 };

  constructor(opts: CollateralCacheOptions) {
    this.#store = new DiskStore(opts.dir);
    this.#retry = { ...DEFAULT_RETRY, ...opts.retry };
    this.#validity = opts.validity ?? DEFAULT_VALIDITY;
    this.#now = opts.now ?? (() => new Date());
  }

  async get(route: CollateralRoute, body?: Uint8Array, contentType?: string): Promise<CollateralResult> {
    const key = `${route.method} ${route.upstream}${body ? ` ${hex(await sha256(body))}` : ''}`;
    const cached = await this.#store.get(key);
    if (cached && Date.parse(cached.expiresAt) > this.#now().getTime()) {
      this.stats.hit++;
      return result('hit', cached);
    }
    const running = this.#inflight.get(key);
    if (running) return running;
    const p = this.#fetch(key, route, cached, body, contentType).finally(() => this.#inflight.delete(key));
    this.#inflight.set(key, p);
    return p;
  }

  async #fetch(key: string, route: CollateralRoute, cached: CachedItem | undefined, body: Uint8Array | undefined, contentType: string | undefined): Promise<CollateralResult> {
    let r;
    try {
      r = await fetchWithRetry(route.upstream, route.method, body, contentType, this.#retry);
    } catch (e) {
      this.stats.errors++;
      if (cached) {
        this.stats.stale++;
        return result('stale', cached);
      }
      throw e instanceof GmError ? e : unavailable('COLLATERAL_UPSTREAM_UNAVAILABLE', 'vendor collateral service unavailable', { cause: e });
    }
    const headers: Record<string, string> = {};
    for (const h of route.keepHeaders) if (r.headers[h] !== undefined) headers[h] = r.headers[h]!;
    const ct = r.headers['content-type'];
    const now = this.#now();
    const until = r.status === 200 ? cacheUntil(route.kind, r.body, now, this.#validity) : undefined;
    if (!until) {
      this.stats.uncached++;
      return { state: 'uncached', status: r.status, contentType: ct, headers, body: r.body, expiresAt: undefined };
    }
    const item: CachedItem = { url: route.upstream, status: 200, contentType: ct, headers, fetchedAt: now.toISOString(), expiresAt: until.toISOString(), body: r.body };
    await this.#store.put(key, item);
    this.stats.miss++;
    return result('miss', item);
  }
}

function result(state: CacheState, c: CachedItem): CollateralResult {
  return { state, status: c.status, contentType: c.contentType, headers: c.headers, body: c.body, expiresAt: c.expiresAt };
}
