import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { buildSimOcsp, createNvidiaSimSigner } from '../attestation/nvidia/sim.ts';
import { ALG, crl, name, webCryptoSigner } from '../attestation/x509/der-write.ts';
import { CollateralCache } from '../host/collateral/cache.ts';
import { retryAfterMs } from '../host/collateral/fetch.ts';
import { collateralRoutes } from '../host/collateral/routes.ts';
import { type VendorBases, routeFor } from '../host/collateral/sources.ts';
import { startFakeVendor } from '../host/testing/fake-vendor.ts';

const NOW = new Date('2026-06-01T00:00:00Z');
let crlDer: Uint8Array;
let signer: ReturnType<typeof webCryptoSigner>;

beforeAll(async () => {
  const k = (await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-384' }, false, ['sign', 'verify'])) as CryptoKeyPair;
  signer = webCryptoSigner(k.privateKey);
  crlDer = await crl({ signatureAlgorithm: ALG.ecdsaSha384, issuer: name([['2.5.4.3', 'ARK-Genoa']]), thisUpdate: new Date('2026-05-31T00:00:00Z'), nextUpdate: new Date('2026-06-01T06:00:00Z'), revoked: [] }, signer);
});

const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (cleanup.length) await cleanup.pop()!();
});

async function setup(routes: Parameters<typeof startFakeVendor>[0], now = () => NOW) {
  const vendor = await startFakeVendor(routes);
  const dir = await mkdtemp(join(tmpdir(), 'gm-collateral-'));
  cleanup.push(() => vendor.close(), () => rm(dir, { recursive: true, force: true }));
  const bases: VendorBases = { amd: vendor.url, intel: vendor.url, intelCerts: vendor.url, nvidiaRim: vendor.url, nvidiaOcsp: vendor.url };
  const sleeps: number[] = [];
  const make = () => new CollateralCache({ dir, now, retry: { sleep: async (ms) => void sleeps.push(ms), random: () => 1, now: () => now().getTime() } });
  const cache = make();
  return { vendor, dir, bases, sleeps, cache, app: collateralRoutes(cache, bases), make };
}

describe('collateral sources', () => {
  it('serves only allowlisted vendor paths and parameters', () => {
    const q = (s: string) => new URLSearchParams(s);
    expect(routeFor('amd', '/vcek/v1/Genoa/crl', q(''), 'GET')?.upstream).toBe('https://kdsintf.amd.com/vcek/v1/Genoa/crl');
    expect(routeFor('amd', `/vcek/v1/Milan/${'ab'.repeat(64)}`, q('ucodeSPL=209&blSPL=3'), 'GET')?.upstream).toBe(`https://kdsintf.amd.com/vcek/v1/Milan/${'ab'.repeat(64)}?blSPL=3&ucodeSPL=209`);
    expect(routeFor('intel', '/tdx/certification/v4/tcb', q('fmspc=00806F050000'), 'GET')?.kind).toBe('intel-tcb-info');
    expect(routeFor('amd', '/vcek/v1/Genoa/../../etc/passwd', q(''), 'GET')).toBeUndefined();
    expect(routeFor('amd', '/vcek/v1/Genoa/crl', q('x=1'), 'GET')).toBeUndefined();
    expect(routeFor('intel', '/tdx/certification/v4/tcb', q('fmspc=zz'), 'GET')).toBeUndefined();
    expect(routeFor('evil', '/anything', q(''), 'GET')).toBeUndefined();
    expect(routeFor('amd', '/vcek/v1/Genoa/crl', q(''), 'POST')).toBeUndefined();
  });

  it('reads Retry-After as seconds or an HTTP-date', () => {
    expect(retryAfterMs('7', 0)).toBe(7000);
    expect(retryAfterMs(new Date(NOW.getTime() + 3000).toUTCString(), NOW.getTime())).toBe(3000);
    expect(retryAfterMs('soon', 0)).toBeUndefined();
  });
});

describe('collateral cache', () => {
  it('fetches an AMD CRL once, keeps it until its own nextUpdate, and serves it from disk after a restart with the vendor gone', async () => {
    const s = await setup({ '/vcek/v1/Genoa/crl': { body: crlDer, headers: { 'content-type': 'application/pkix-crl' } } });
    const r1 = await s.app.request('/v1/collateral/amd/vcek/v1/Genoa/crl');
    expect(r1.status).toBe(200);
    expect(r1.headers.get('x-gm-cache')).toBe('miss');
    expect(r1.headers.get('x-gm-cache-expires')).toBe('2026-06-01T06:00:00.000Z');
    expect(new Uint8Array(await r1.arrayBuffer())).toEqual(crlDer);
    const r2 = await s.app.request('/v1/collateral/amd/vcek/v1/Genoa/crl');
    expect(r2.headers.get('x-gm-cache')).toBe('hit');
    expect(s.vendor.log).toEqual(['GET /vcek/v1/Genoa/crl']);
    await s.vendor.close();
    const restarted = collateralRoutes(s.make(), s.bases);
    const r3 = await restarted.request('/v1/collateral/amd/vcek/v1/Genoa/crl');
    expect(r3.headers.get('x-gm-cache')).toBe('hit');
    expect(new Uint8Array(await r3.arrayBuffer())).toEqual(crlDer);
  });

  it('re-fetches after the item expires, and serves the stale copy marked stale when the vendor is down', async () => {
    let now = NOW;
    const s = await setup({ '/vcek/v1/Genoa/crl': { body: crlDer } }, () => now);
    expect((await s.app.request('/v1/collateral/amd/vcek/v1/Genoa/crl')).headers.get('x-gm-cache')).toBe('miss');
    now = new Date('2026-06-01T07:00:00Z');
    s.vendor.routes.set('/vcek/v1/Genoa/crl', { status: 500, body: 'down' });
    const r = await s.app.request('/v1/collateral/amd/vcek/v1/Genoa/crl');
    expect(r.headers.get('x-gm-cache')).toBe('stale');
    expect(s.vendor.log.length).toBe(1 + 4);
  });

  it('keeps Intel issuer-chain headers with the TCB info and honours its nextUpdate', async () => {
    const tcb = JSON.stringify({ tcbInfo: { id: 'TDX', nextUpdate: '2026-06-10T00:00:00Z' }, signature: '00' });
    const s = await setup({ '/tdx/certification/v4/tcb?fmspc=00806F050000': { body: tcb, headers: { 'content-type': 'application/json', 'TCB-Info-Issuer-Chain': '-----BEGIN%20CERTIFICATE-----', 'set-cookie': 'x=y' } } });
    const r = await s.app.request('/v1/collateral/intel/tdx/certification/v4/tcb?fmspc=00806F050000');
    expect(r.status).toBe(200);
    expect(r.headers.get('tcb-info-issuer-chain')).toBe('-----BEGIN%20CERTIFICATE-----');
    expect(r.headers.get('set-cookie')).toBeNull();
    // capped at maxTtl (24 h) below the item's own nextUpdate
    expect(r.headers.get('x-gm-cache-expires')).toBe('2026-06-02T00:00:00.000Z');
    const again = await s.app.request('/v1/collateral/intel/tdx/certification/v4/tcb?fmspc=00806F050000');
    expect(again.headers.get('tcb-info-issuer-chain')).toBe('-----BEGIN%20CERTIFICATE-----');
    expect(await again.text()).toBe(tcb);
  });

  it('waits the Retry-After of a 429 and backs off exponentially on 5xx', async () => {
    const s = await setup({ '/vcek/v1/Genoa/crl': { body: crlDer } });
    s.vendor.script.push({ status: 429, body: '', headers: { 'retry-after': '2' } }, { status: 502, body: '' });
    const r = await s.app.request('/v1/collateral/amd/vcek/v1/Genoa/crl');
    expect(r.status).toBe(200);
    expect(s.sleeps).toEqual([2000, 500]);
    expect(s.vendor.log.length).toBe(3);
  });

  it('gives up with a clear 503 when Retry-After is beyond the limit and nothing is cached', async () => {
    const s = await setup({});
    s.vendor.script.push({ status: 429, body: '', headers: { 'retry-after': '3600' } });
    const r = await s.app.request('/v1/collateral/amd/vcek/v1/Genoa/crl');
    expect(r.status).toBe(503);
    expect(((await r.json()) as { error: { code: string } }).error.code).toBe('COLLATERAL_UPSTREAM_UNAVAILABLE');
    expect(s.vendor.log.length).toBe(1);
  });

  it('does not cache what it cannot date, nor errors, and refuses paths it does not serve', async () => {
    const s = await setup({ '/vcek/v1/Genoa/crl': { body: 'garbage' } });
    expect((await s.app.request('/v1/collateral/amd/vcek/v1/Genoa/crl')).headers.get('x-gm-cache')).toBe('uncached');
    expect((await s.app.request('/v1/collateral/amd/vcek/v1/Genoa/crl')).headers.get('x-gm-cache')).toBe('uncached');
    expect((await s.app.request('/v1/collateral/amd/vcek/v1/Milan/cert_chain')).status).toBe(404);
    expect(s.vendor.log.length).toBe(3);
    const bad = await s.app.request('/v1/collateral/amd/admin');
    expect(bad.status).toBe(404);
    expect(((await bad.json()) as { error: { code: string } }).error.code).toBe('COLLATERAL_NOT_SERVED');
    expect(s.vendor.log.length).toBe(3);
  });

  it('coalesces concurrent requests for the same item into one vendor fetch', async () => {
    const s = await setup({ '/vcek/v1/Turin/crl': { body: crlDer } });
    const rs = await Promise.all(Array.from({ length: 5 }, () => s.app.request('/v1/collateral/amd/vcek/v1/Turin/crl')));
    expect(rs.every((r) => r.status === 200)).toBe(true);
    expect(s.vendor.log).toEqual(['GET /vcek/v1/Turin/crl']);
  });
});

describe('collateral cache: NVIDIA RIMs and OCSP, Intel QE identity (local stand-ins for the vendors)', () => {
  const H = 3600_000;
  let nvidia: Awaited<ReturnType<typeof createNvidiaSimSigner>>;
  beforeAll(async () => {
    nvidia = await createNvidiaSimSigner({ now: NOW });
  });
  const post = (app: { request: (p: string, i?: RequestInit) => Response | Promise<Response> }, body: Uint8Array) =>
    app.request('/v1/collateral/nvidia-ocsp/', { method: 'POST', body: body as Uint8Array<ArrayBuffer>, headers: { 'content-type': 'application/ocsp-request' } });

  it('caches an OCSP response per request body until its own nextUpdate, and serves it after a restart with the vendor gone', async () => {
    const ocsp = await buildSimOcsp(nvidia, nvidia.leaf, { thisUpdate: new Date(NOW.getTime() - H), nextUpdate: new Date(NOW.getTime() + 3 * H) });
    const s = await setup({ '/': { body: ocsp, headers: { 'content-type': 'application/ocsp-response' } } });
    const reqA = new Uint8Array([0x30, 0x03, 0x02, 0x01, 0x01]);
    const reqB = new Uint8Array([0x30, 0x03, 0x02, 0x01, 0x02]);
    const r1 = await post(s.app, reqA);
    expect(r1.status).toBe(200);
    expect(r1.headers.get('x-gm-cache')).toBe('miss');
    expect(r1.headers.get('x-gm-cache-expires')).toBe(new Date(NOW.getTime() + 3 * H).toISOString());
    expect(new Uint8Array(await r1.arrayBuffer())).toEqual(ocsp);
    expect((await post(s.app, reqA)).headers.get('x-gm-cache')).toBe('hit');
    // Another OCSP request (another certificate) is another item: the cache key includes the request body.
    expect((await post(s.app, reqB)).headers.get('x-gm-cache')).toBe('miss');
    expect(s.vendor.log).toEqual(['POST /', 'POST /']);
    await s.vendor.close();
    const r3 = await post(collateralRoutes(s.make(), s.bases), reqA);
    expect(r3.headers.get('x-gm-cache')).toBe('hit');
    expect(new Uint8Array(await r3.arrayBuffer())).toEqual(ocsp);
    // An empty OCSP request is refused without reaching the vendor.
    expect((await post(s.app, new Uint8Array(0))).status).toBe(400);
  });

  it('does not cache an OCSP response without nextUpdate (newer information is always available)', async () => {
    const ocsp = await buildSimOcsp(nvidia, nvidia.leaf, { thisUpdate: new Date(NOW.getTime() - H) });
    const s = await setup({ '/': { body: ocsp } });
    const req = new Uint8Array([0x30, 0x00]);
    expect((await post(s.app, req)).headers.get('x-gm-cache')).toBe('uncached');
    expect((await post(s.app, req)).headers.get('x-gm-cache')).toBe('uncached');
    expect(s.vendor.log.length).toBe(2);
  });

  it('caches a RIM (no date of its own) for the default 6 h, and an Intel QE identity until its nextUpdate with its issuer chain', async () => {
    const rim = JSON.stringify({ id: 'NV_GPU_DRIVER_GH100_550.54.15', rim: 'PD94bWwg' });
    const qe = JSON.stringify({ enclaveIdentity: { id: 'TD_QE', nextUpdate: new Date(NOW.getTime() + 2 * H).toISOString() }, signature: '00' });
    const s = await setup({
      '/v1/rim/NV_GPU_DRIVER_GH100_550.54.15': { body: rim, headers: { 'content-type': 'application/json' } },
      '/tdx/certification/v4/qe/identity': { body: qe, headers: { 'content-type': 'application/json', 'SGX-Enclave-Identity-Issuer-Chain': 'chain%20pem' } },
    });
    const r = await s.app.request('/v1/collateral/nvidia-rim/v1/rim/NV_GPU_DRIVER_GH100_550.54.15');
    expect(r.headers.get('x-gm-cache')).toBe('miss');
    expect(r.headers.get('x-gm-cache-expires')).toBe(new Date(NOW.getTime() + 6 * H).toISOString());
    expect(await r.text()).toBe(rim);
    expect((await s.app.request('/v1/collateral/nvidia-rim/v1/rim/NV_GPU_DRIVER_GH100_550.54.15')).headers.get('x-gm-cache')).toBe('hit');
    const q = await s.app.request('/v1/collateral/intel/tdx/certification/v4/qe/identity');
    expect(q.headers.get('x-gm-cache')).toBe('miss');
    expect(q.headers.get('x-gm-cache-expires')).toBe(new Date(NOW.getTime() + 2 * H).toISOString());
    expect(q.headers.get('sgx-enclave-identity-issuer-chain')).toBe('chain%20pem');
    const q2 = await s.app.request('/v1/collateral/intel/tdx/certification/v4/qe/identity');
    expect(q2.headers.get('x-gm-cache')).toBe('hit');
    expect(q2.headers.get('sgx-enclave-identity-issuer-chain')).toBe('chain%20pem');
    expect(s.vendor.log).toEqual(['GET /v1/rim/NV_GPU_DRIVER_GH100_550.54.15', 'GET /tdx/certification/v4/qe/identity']);
  });
});
