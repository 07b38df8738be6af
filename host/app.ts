/**
 * The host shim's HTTP surface (docs/design.md §2 host/): the gated relay to the enclave, the collateral cache, the
 * status page and /metrics. Each part is a small hono app so tests can mount and drive it with app.request().
 */
import { Hono } from 'hono';
import { cors } from 'hono/cors';
import type { CollateralCache } from './collateral/cache.ts';
import { collateralRoutes } from './collateral/routes.ts';
import type { VendorBases } from './collateral/sources.ts';
import { gateMiddleware, type HostGate } from './gate.ts';
import { RateLimiter, sourceOf } from './limits.ts';
import { type RelayOptions, RELAYED_PATHS, relayRoutes } from './relay.ts';
import { type Listings, statusRoutes, withCheckedOffers } from './status-page.ts';

export interface HostAppOptions {
  readonly relay: RelayOptions;
  readonly gate: HostGate;
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
  app.route('/', statusRoutes(opts.gate, withCheckedOffers(opts.listings, opts.relay.enclave, opts.fetch), opts.relay.enclave, opts.now));
  app.get('/healthz', (c) => c.json({ gate: opts.gate.status.state }, opts.gate.status.state === 'open' ? 200 : 503));
  app.get('/metrics', (c) => {
    const st = opts.collateral?.cache.stats;
    const lines = [
      '# TYPE gm_host_gate_open gauge', `gm_host_gate_open ${opts.gate.status.state === 'open' ? 1 : 0}`,
      '# TYPE gm_host_relay_requests_total counter', `gm_host_relay_requests_total{result="relayed"} ${counters.relayed}`, `gm_host_relay_requests_total{result="refused"} ${counters.refused}`, `gm_host_relay_requests_total{result="rate_limited"} ${counters.rateLimited}`,
      '# TYPE gm_host_relay_bytes_total counter', `gm_host_relay_bytes_total{direction="request"} ${counters.bytesIn}`, `gm_host_relay_bytes_total{direction="response"} ${counters.bytesOut}`,
      ...(st ? ['# TYPE gm_host_collateral_total counter', ...Object.entries(st).map(([k, v]) => `gm_host_collateral_total{result="${k}"} ${v}`)] : []),
    ];
    return c.text(`${lines.join('\n')}\n`, 200, { 'content-type': 'text/plain; version=0.0.4' });
  });
  app.notFound((c) => c.json({ error: { code: 'HOST_NOT_FOUND', message: 'the host shim serves only the relay, collateral and status' } }, 404));
  return app;
}
