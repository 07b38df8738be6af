/**
 * The host shim's HTTP surface (docs/design.md §2 host/): the gated relay to the enclave, the collateral cache, the
 * status page and /metrics. Each part is a small hono app so tests can mount and drive it with app.request().
 */
import { Hono } from 'hono';
import { cors } from 'hono/cors';
import { CONTENT_TYPE, Metrics } from '../enclave/metrics.ts';
import type { CollateralCache } from './collateral/cache.ts';
import { collateralRoutes } from './collateral/routes.ts';
import type { VendorBases } from './collateral/sources.ts';
import { gateMiddleware, type HostGate } from './gate.ts';
import { RateLimiter, sourceOf } from './limits.ts';
import { type RelayOptions, RELAYED_PATHS, relayRoutes } from './relay.ts';
import { type Listings, type ReplicaRow, statusRoutes, withCheckedOffers } from './status-page.ts';

export interface HostAppOptions {
  readonly relay: RelayOptions;
  readonly gate: HostGate;
  /** Several replicas (host/replicas.ts): the status page lists each one's gate and key ids. */
  readonly replicas?: { readonly replicas: readonly ReplicaRow[] };
  readonly collateral?: { readonly cache: CollateralCache; readonly bases?: VendorBases };
  readonly listings: () => Promise<Listings>;
  /** Fetches the enclave's signed offers and worker keys for the status page's own signature check (tests). */
  readonly fetch?: (input: string, init?: RequestInit) => Promise<Response>;
  /** The status page's clock for its relative times (tests pin it). */
  readonly now?: () => Date;
  /**
   * Gateway requests per source (IPv4 address or IPv6 /64; host/limits.ts): sustained rate and burst. Default 50/s,
   * burst 100. Past it: 429 RELAY_RATE_LIMITED with Retry-After, and the request never reaches the enclave.
   */
  readonly rateLimit?: { readonly perSecond: number; readonly burst: number; readonly now?: () => number };
}

export const DEFAULT_RATE_LIMIT = { perSecond: 50, burst: 100 } as const;

export function hostApp(opts: HostAppOptions): Hono {
  const app = new Hono();
  const counters = { relayed: 0, refused: 0, rateLimited: 0, bytesIn: 0, bytesOut: 0 };
  // The host is outside the enclave and sees all it counts: one audience, served on its /metrics.
  const metrics = new Metrics();
  const errors = metrics.errors({ split: false });
  metrics.gauge('gm_host_gate_open', 'Whether the relay is open (1: the enclave passed the host\'s last check)', { collect: () => [[{}, opts.gate.status.state === 'open' ? 1 : 0]] });
  metrics.counter('gm_host_relay_requests_total', 'Relay requests by result (relayed, refused by the closed gate, rate limited)', {
    labels: ['result'], collect: () => [[{ result: 'relayed' }, counters.relayed], [{ result: 'refused' }, counters.refused], [{ result: 'rate_limited' }, counters.rateLimited]],
  });
  metrics.counter('gm_host_relay_bytes_total', 'Bytes relayed by direction', { labels: ['direction'], collect: () => [[{ direction: 'request' }, counters.bytesIn], [{ direction: 'response' }, counters.bytesOut]] });
  const cache = opts.collateral?.cache;
  if (cache) metrics.counter('gm_host_collateral_total', 'Collateral requests by cache result', { labels: ['result'], collect: () => Object.entries(cache.stats).map(([result, v]) => [{ result }, v] as const) });
  // Every error response the host sends, its own and the enclave's it relays, by the code in its body.
  app.use('*', async (c, next) => {
    await next();
    if (c.res.status >= 400) errors.sent(await errorCode(c.res));
  });
  // One source cannot take the enclave's shared capacity (gateway slots, the replay guard's window) from the others.
  const limiter = new RateLimiter(opts.rateLimit ?? DEFAULT_RATE_LIMIT);
  app.post('/v1/ohttp', async (c, next) => {
    const incoming = (c.env as { incoming?: { socket?: { remoteAddress?: string } } } | undefined)?.incoming;
    const source = sourceOf(incoming?.socket?.remoteAddress);
    if (!limiter.take(source)) {
      counters.rateLimited++;
      const wait = String(Math.max(1, limiter.retryAfter(source)));
      return c.json({ error: { code: 'RELAY_RATE_LIMITED', message: 'too many requests from this source' } }, 429, { 'retry-after': wait });
    }
    await next();
  });
  const relay = relayRoutes({
    ...opts.relay,
    observe: (dir, path, chunk) => {
      if (dir === 'request') counters.bytesIn += chunk.byteLength;
      else counters.bytesOut += chunk.byteLength;
      opts.relay.observe?.(dir, path, chunk);
    },
  });
  for (const p of RELAYED_PATHS) {
    // Browsers call the relay from the application's own origin. The relay carries no cookies or credentials and
    // answers only ciphertext and public evidence, so any origin may read it; the preflight never reaches the enclave.
    app.use(p, cors({ origin: '*', allowMethods: ['GET', 'POST'], allowHeaders: ['content-type', 'accept', 'incremental'], exposeHeaders: ['content-type'], maxAge: 600 }));
    app.use(p, async (_c, next) => {
      if (opts.gate.status.state !== 'open') counters.refused++;
      else counters.relayed++;
      await next();
    });
    app.use(p, gateMiddleware(opts.gate));
  }
  app.route('/', relay);
  if (opts.collateral) app.route('/', collateralRoutes(opts.collateral.cache, opts.collateral.bases));
  // The status page fetches the enclave's listings itself (not through the relay, which carries only the gateway and
  // attestation paths) and shows an offer as verified only after checking its signed bytes here.
  const set = opts.replicas;
  app.route('/', statusRoutes(opts.gate, withCheckedOffers(opts.listings, opts.relay.enclave, opts.fetch), opts.relay.enclave, opts.now, set ? () => set.replicas : undefined));
  app.get('/healthz', (c) => c.json({ gate: opts.gate.status.state }, opts.gate.status.state === 'open' ? 200 : 503));
  app.get('/metrics', async (c) => c.text(await metrics.render(), 200, { 'content-type': CONTENT_TYPE }));
  app.notFound((c) => c.json({ error: { code: 'HOST_NOT_FOUND', message: 'the host shim serves only the relay, collateral and status' } }, 404));
  return app;
}

/**
 * The stable code of an error response: `error.code` of its JSON body (the host's own errors and the enclave's problem
 * details both carry one), read from a copy and at most 64 KiB of it; `HTTP_<status>` for any other body.
 */
async function errorCode(res: Response): Promise<string> {
  const fallback = `HTTP_${res.status}`;
  if (!/^application\/(problem\+)?json\b/.test(res.headers.get('content-type') ?? '') || !res.body) return fallback;
  const reader = res.clone().body!.getReader();
  const parts: Uint8Array[] = [];
  let n = 0;
  try {
    for (;;) {
      const x = await reader.read();
      if (x.done) break;
      n += x.value.byteLength;
      if (n > 64 * 1024) return fallback;
      parts.push(x.value);
    }
  } finally {
    void reader.cancel().catch(() => undefined);
  }
  try {
    const j = JSON.parse(Buffer.concat(parts).toString('utf8')) as { error?: { code?: unknown } };
    const code = j?.error?.code;
    return typeof code === 'string' && /^[A-Za-z0-9_.-]{1,64}$/.test(code) ? code : fallback;
  } catch {
    return fallback;
  }
}
