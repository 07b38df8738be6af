/**
 * Worker GPU verification with collateral from the host shim (`gm enclave --collateral`): a stand-in NVIDIA (RIM
 * service and OCSP responder) behind the shim's collateral cache serves sim RIMs and sim OCSP; the enclave asks the
 * shim for the RIMs the verified GPU report names and for the OCSP status of the device and RIM signing chains.
 * A worker whose measurements match the RIMs is verified with the RIM and OCSP rows passing; one whose measurement
 * differs is refused with NVIDIA_RIM_MISMATCH; with NVIDIA unreachable and nothing cached, a policy requiring RIMs
 * refuses with a collateral code. Refused workers see no gateway request.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeBundle } from '../attestation/bundle.ts';
import { DEFAULT_WORKER_GPU_POLICY } from '../attestation/bundle-verify.ts';
import { hex, toBase64 } from '../attestation/bytes.ts';
import type { GpuPolicy } from '../attestation/nvidia/index.ts';
import { type SimRimSigner, buildOcspFor, buildSimRim, createSimRimSigner, simMeasurement } from '../attestation/nvidia/sim.ts';
import { type CollateralSource, gpuCollateralFromShim, gpuRimsFromShim, ocspRequest, rimFromServiceJson } from '../client/collateral.ts';
import { CollateralCache } from '../host/collateral/cache.ts';
import { collateralRoutes } from '../host/collateral/routes.ts';
import { VENDOR_BASES } from '../host/collateral/sources.ts';
import { listen } from '../host/serve.ts';
import { type FakeVendor, startFakeVendor } from '../host/testing/fake-vendor.ts';
import { COLLATERAL_WORKER_GPU_POLICY, withCollateralDefaults } from '../enclave/policy.ts';
import { urlFlag } from '../enclave/flags.ts';
import { type Stack, simVendors, startStack } from './stack/harness.ts';

const H = 3600_000;
const DRIVER_ID = 'NV_GPU_DRIVER_GH100_550.90.07';
const VBIOS_ID = 'NV_GPU_VBIOS_1010_0200_882_96009F0001';
const STRICT: GpuPolicy = { ...DEFAULT_WORKER_GPU_POLICY, rimMatchRequired: true, ocsp: 'required' };

let dir: string;
let rimSigner: SimRimSigner;
const open: { close(): Promise<void> }[] = [];
const stacks: Stack[] = [];

/** The RIM service's JSON for one SWID document, as rim.attestation.nvidia.com answers. */
const rimJson = (id: string, xml: string) => JSON.stringify({
  id, rim: toBase64(new TextEncoder().encode(xml)), sha256: 'not-checked', last_updated: '2026-01-01T00:00:00', rim_format: 'TCG', request_id: crypto.randomUUID(),
});

/** Stand-in NVIDIA: RIM service routes for the sim GPU's two RIMs, OCSP for the device chain and the RIM signing chain. */
async function nvidiaVendor(): Promise<FakeVendor> {
  const { nvidia } = await simVendors();
  const entries = async (from: number, to: number) => {
    const out = [];
    for (let i = from; i < to; i++) out.push({ index: i, active: true, alternatives: [await simMeasurement(i + 1)] });
    return out;
  };
  const v = await startFakeVendor({
    [`/v1/rim/${DRIVER_ID}`]: { body: rimJson(DRIVER_ID, await buildSimRim(rimSigner, 'driver', '550.90.07', await entries(0, 30))), headers: { 'content-type': 'application/json' } },
    [`/v1/rim/${VBIOS_ID}`]: { body: rimJson(VBIOS_ID, await buildSimRim(rimSigner, 'vbios', '96.00.9F.00.01', await entries(30, 64))), headers: { 'content-type': 'application/json' } },
  });
  const now = Date.now();
  const times = { thisUpdate: new Date(now - H), nextUpdate: new Date(now + 3 * H) };
  const ocsp = new Map<string, Uint8Array>();
  for (const [cert, issuer, key] of [
    [nvidia.leaf, nvidia.intermediate, nvidia.intermediateKey], [nvidia.intermediate, nvidia.root, nvidia.rootKey], [rimSigner.signer, rimSigner.root, rimSigner.rootKey],
  ] as const) ocsp.set(hex(await ocspRequest(cert, issuer)), await buildOcspFor(cert, issuer, key, times));
  v.respond = (method, url, body) => {
    const r = method === 'POST' && url === '/' ? ocsp.get(hex(body)) : undefined;
    return r ? { body: r, headers: { 'content-type': 'application/ocsp-response' } } : undefined;
  };
  open.push(v);
  return v;
}

/** A host shim serving only its collateral cache (a fresh directory), with NVIDIA at `nvidiaUrl`. */
async function shim(name: string, nvidiaUrl: string): Promise<CollateralSource> {
  const cache = new CollateralCache({ dir: join(dir, name), retry: { attempts: 1 } });
  const l = await listen(collateralRoutes(cache, { ...VENDOR_BASES, nvidiaRim: nvidiaUrl, nvidiaOcsp: nvidiaUrl }).fetch);
  open.push(l);
  return { base: l.url, fetch: (i, init) => fetch(i, init) };
}

async function stack(o: Parameters<typeof startStack>[0]): Promise<Stack> {
  // The sim GPU whose device certificate the stand-in NVIDIA answers OCSP for: the shared signer's own leaf.
  const s = await startStack({ router: 'first', simRimRoots: [rimSigner.rootDer], ...o, ...(o?.workers ? { workers: o.workers.map((w) => ({ gpuSerial: 'signer' as const, ...w })) } : {}) });
  stacks.push(s);
  return s;
}

type Row = { id: string; status: string; code?: string; detail?: string };
const byId = (rows: readonly Row[], id: string) => rows.find((r) => r.id === id);

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'gm-stack-gpu-collateral-'));
  rimSigner = await createSimRimSigner(new Date());
});
afterAll(async () => {
  for (const s of stacks) await s.stop();
  for (const o of open) await o.close();
  await rm(dir, { recursive: true, force: true });
});

describe('stack: worker GPU RIMs and OCSP from the host shim', () => {
  it('verifies a worker whose measurements match the RIMs, refuses one whose measurement differs', async () => {
    const nvidia = await nvidiaVendor();
    const src = await shim('ok', nvidia.url);
    const s = await stack({
      gpuPolicy: STRICT, gpuCollateral: gpuCollateralFromShim(src),
      workers: [{ model: { name: 'good' } }, { model: { name: 'odd' }, gpuMeasurements: { 5: new Uint8Array(48).fill(1) }, expectRefusal: true }],
    });
    expect(await s.workers[0]!.refusal).toBeUndefined();
    expect(await s.workers[1]!.refusal).toBe('NVIDIA_RIM_MISMATCH');
    expect(s.workers[1]!.requestsAtSocket()).toBe(0);

    // The enclave's own verification path, once more for a fresh nonce, to read its rows.
    const nonce = crypto.getRandomValues(new Uint8Array(32));
    const r = await fetch(`${s.workers[0]!.worker.url}/v1/attestation?nonce=${hex(nonce)}`);
    const v = await s.enclave.registry.verify(decodeBundle(new Uint8Array(await r.arrayBuffer())), nonce);
    const rows = v.report.checks as readonly Row[];
    for (const id of ['nvidia.ocsp.0', 'nvidia.ocsp.1', 'nvidia.rim.driver.fetch', 'nvidia.rim.vbios.fetch', 'nvidia.rim.driver.signature', 'nvidia.rim.vbios.signature',
      'nvidia.rim.driver.ocsp.0', 'nvidia.rim.vbios.ocsp.0', 'nvidia.rim.measurements', 'policy.rim-match', 'policy.ocsp', 'bundle.gpu[0]'])
      expect(byId(rows, id)?.status, id).toBe('pass');
    expect((v.claims.gpu[0]!.detail as { measurementsMatch?: boolean; ocsp?: string })).toMatchObject({ measurementsMatch: true, ocsp: 'good' });

    // The refusal names the block; the RIMs came from NVIDIA once, then from the shim's cache.
    const refused = s.logs.map((l) => JSON.parse(l) as { event: string; code?: string; check?: string }).filter((l) => l.event === 'worker.refused');
    expect(refused).toEqual([expect.objectContaining({ code: 'NVIDIA_RIM_MISMATCH', check: 'nvidia.rim.measurement.5' })]);
    expect(nvidia.log.filter((l) => l === `GET /v1/rim/${DRIVER_ID}`)).toHaveLength(1);
    expect(nvidia.log.filter((l) => l === `GET /v1/rim/${VBIOS_ID}`)).toHaveLength(1);
  });

  it('NVIDIA unreachable and nothing cached: a policy requiring RIMs refuses with a collateral code', async () => {
    const nvidia = await nvidiaVendor();
    await nvidia.close();
    // RIMs only (OCSP not required): the refusal is the RIM's.
    const rimsOnly = await stack({
      gpuPolicy: { ...DEFAULT_WORKER_GPU_POLICY, rimMatchRequired: true }, gpuCollateral: gpuRimsFromShim(await shim('down-rims', nvidia.url)),
      workers: [{ model: { name: 'w' }, expectRefusal: true }],
    });
    expect(await rimsOnly.workers[0]!.refusal).toBe('NVIDIA_RIM_UNAVAILABLE');
    const line = rimsOnly.logs.map((l) => JSON.parse(l) as { event: string; code?: string; check?: string }).find((l) => l.event === 'worker.refused');
    expect(line).toMatchObject({ code: 'NVIDIA_RIM_UNAVAILABLE', check: 'policy.rim-match' });
    expect(rimsOnly.workers[0]!.requestsAtSocket()).toBe(0);

    // What `gm enclave --collateral URL` wires (OCSP and RIMs) with the default GPU policy it then applies.
    expect(withCollateralDefaults({ policy: {}, freshnessMs: 1 }).policy.gpu).toBe(COLLATERAL_WORKER_GPU_POLICY);
    const full = await stack({
      gpuPolicy: COLLATERAL_WORKER_GPU_POLICY, gpuCollateral: gpuCollateralFromShim(await shim('down-all', nvidia.url)),
      workers: [{ model: { name: 'w' }, expectRefusal: true }],
    });
    expect(await full.workers[0]!.refusal).toBe('NVIDIA_RIM_UNAVAILABLE'); // OCSP unavailable too: the first policy rule to fail names it
  });

  it('a policy that does not require RIMs keeps today\'s behaviour with the shim down (a visible skip)', async () => {
    const nvidia = await nvidiaVendor();
    await nvidia.close();
    const s = await stack({ gpuCollateral: gpuRimsFromShim(await shim('down-lax', nvidia.url)), workers: [{ model: { name: 'w' } }] });
    expect(await s.workers[0]!.refusal).toBeUndefined();
    const nonce = crypto.getRandomValues(new Uint8Array(32));
    const r = await fetch(`${s.workers[0]!.worker.url}/v1/attestation?nonce=${hex(nonce)}`);
    const v = await s.enclave.registry.verify(decodeBundle(new Uint8Array(await r.arrayBuffer())), nonce);
    const skip = byId(v.report.checks as readonly Row[], 'nvidia.rim');
    expect(skip?.status).toBe('skip');
    expect(skip?.detail).toContain(`RIMs unavailable: driver RIM ${DRIVER_ID}: COLLATERAL_UNAVAILABLE`);
  });
});

describe('collateral plumbing', () => {
  it('--collateral takes an http(s) base URL only', () => {
    expect(urlFlag('http://127.0.0.1:8444/', 'collateral')).toBe('http://127.0.0.1:8444');
    expect(urlFlag(undefined, 'collateral')).toBeUndefined();
    for (const bad of ['ftp://x', 'not a url', 'http://h/?q=1', 'http://u:p@h/'])
      expect(() => urlFlag(bad, 'collateral'), bad).toThrow(expect.objectContaining({ code: 'USAGE' }));
  });

  it('the RIM service JSON is read strictly', () => {
    const xml = '<SoftwareIdentity/>';
    const enc = (o: unknown) => new TextEncoder().encode(JSON.stringify(o));
    const ok = { id: VBIOS_ID, rim: toBase64(new TextEncoder().encode(xml)), rim_format: 'TCG' };
    expect(rimFromServiceJson(enc(ok), VBIOS_ID)).toBe(xml);
    expect(rimFromServiceJson(enc({ ...ok, extra: 1 }), VBIOS_ID)).toBe(xml);
    const code = (b: Uint8Array) => { try { rimFromServiceJson(b, VBIOS_ID); } catch (e) { return (e as { code?: string }).code; } return 'accepted'; };
    for (const bad of [{ ...ok, id: DRIVER_ID }, { ...ok, rim: 'not base64!' }, { ...ok, rim: '' }, { ...ok, rim_format: 'CORIM' }, { ...ok, sha256: 5 }, [ok], null])
      expect(code(enc(bad)), JSON.stringify(bad)).toBe('COLLATERAL_UNAVAILABLE');
    expect(code(new Uint8Array([0xff, 0xfe]))).toBe('COLLATERAL_UNAVAILABLE');
  });
});
