/**
 * Hono routes serving cached collateral at `/v1/collateral/<source>/<vendor path>` (docs/design.md §4: the shim may
 * attach or serve collateral; consumers verify every byte against pinned roots). Only allowlisted vendor paths are
 * served (sources.ts), so the shim is not an open proxy.
 */
import { Hono } from 'hono';
import { isGmError } from '../../attestation/errors.ts';
import type { CollateralCache } from './cache.ts';
import { type VendorBases, VENDOR_BASES, routeFor } from './sources.ts';

const MAX_OCSP_REQUEST = 8 * 1024;

export function collateralRoutes(cache: CollateralCache, bases: VendorBases = VENDOR_BASES): Hono {
  const app = new Hono();
  app.on(['GET', 'POST'], '/v1/collateral/:source/*', async (c) => {
    const source = c.req.param('source');
    const prefix = `/v1/collateral/${source}`;
    const path = c.req.path.slice(prefix.length) || '/';
    const url = new URL(c.req.url);
    const route = routeFor(source, path, url.searchParams, c.req.method, bases);
    if (!route) return c.json({ error: { code: 'COLLATERAL_NOT_SERVED', message: 'not a collateral path this shim serves' } }, 404);
    let body: Uint8Array | undefined;
    if (route.method === 'POST') {
      body = new Uint8Array(await c.req.arrayBuffer());
      if (body.length === 0 || body.length > MAX_OCSP_REQUEST) return c.json({ error: { code: 'COLLATERAL_BAD_REQUEST', message: 'OCSP request body size out of range' } }, 400);
    }
    try {
      const r = await cache.get(route, body, c.req.header('content-type'));
      const headers: Record<string, string> = { ...r.headers, 'x-gm-cache': r.state, 'cache-control': 'no-store' };
      if (r.contentType) headers['content-type'] = r.contentType;
      if (r.expiresAt) headers['x-gm-cache-expires'] = r.expiresAt;
      return new Response(r.body as Uint8Array<ArrayBuffer>, { status: r.status, headers });
    } catch (e) {
      if (isGmError(e)) return c.json({ error: { code: e.code, message: e.message } }, 503);
      throw e;
    }
  });
  return app;
}
