/**
 * GPU revocation (OCSP) from the host shim's collateral cache with the network to NVIDIA cut: the client's OCSP
 * getter (client/collateral.ts) POSTs a DER OCSPRequest per certificate of the verified GPU chain to the shim,
 * which answers from a stand-in NVIDIA OCSP responder once and from its disk cache after that responder is gone.
 * The shim is trusted for nothing: a response saying "revoked", or signed by another key, is rejected by the NVIDIA
 * verifier with its code, and a shim that has nothing fails closed.
 *
 * The CPU verifier is a stand-in here (the GPU path is what is under test; the CPU paths have their own shim tests).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EvidenceBundle } from '../attestation/bundle.ts';
import { DEFAULT_WORKER_GPU_POLICY, type Verifiers, gpuAdapter, verifyBundle } from '../attestation/bundle-verify.ts';
import { hex } from '../attestation/bytes.ts';
import { buildOcspFor, buildSimGpuReport, createNvidiaSimSigner, type NvidiaSimSigner } from '../attestation/nvidia/sim.ts';
import { Checks } from '../attestation/report.ts';
import { gpuOcspFromShim, ocspRequest } from '../client/collateral.ts';
import { CollateralCache } from '../host/collateral/cache.ts';
import { collateralRoutes } from '../host/collateral/routes.ts';
import { VENDOR_BASES } from '../host/collateral/sources.ts';
import { listen, type Listening } from '../host/serve.ts';
import { type FakeVendor, startFakeVendor } from '../host/testing/fake-vendor.ts';
import { gpuNonceFor } from '../protocol/binding.ts';

const H = 3600_000;
let nvidia: NvidiaSimSigner;
let bundle: EvidenceBundle;
let rd: Uint8Array;
let gnonce: Uint8Array;
let dir: string;
const open: { close(): Promise<void> }[] = [];

const cpuStandIn: Verifiers = {
  'sev-snp': async () => ({ claims: { reportData: rd, measurement: '00', detail: {} }, report: new Checks('cpu (stand-in)').report() }),
  gpu: gpuAdapter,
};
const policy = { gpu: { ...DEFAULT_WORKER_GPU_POLICY, ocsp: 'required' as const } };
type Rows = { checks: readonly { id: string; status: string; code?: string }[] };
const row = (r: Rows, id: string) => r.checks.find((c) => c.id === id);

/** A stand-in NVIDIA OCSP responder answering each OCSPRequest the client builds with its own response. */
async function responder(status: (which: 'leaf' | 'intermediate') => { status?: 'good' | 'revoked'; key?: CryptoKey }): Promise<FakeVendor> {
  const now = Date.now();
  const times = { thisUpdate: new Date(now - H), nextUpdate: new Date(now + 3 * H) };
  const byRequest = new Map<string, Uint8Array>();
  for (const [which, cert, issuer, key] of [['leaf', nvidia.leaf, nvidia.intermediate, nvidia.intermediateKey], ['intermediate', nvidia.intermediate, nvidia.root, nvidia.rootKey]] as const) {
    const s = status(which);
    byRequest.set(hex(await ocspRequest(cert, issuer)), await buildOcspFor(cert, issuer, s.key ?? key, { ...times, ...(s.status ? { status: s.status } : {}) }));
  }
  const v = await startFakeVendor();
  v.respond = (method, url, body) => {
    const r = method === 'POST' && url === '/' ? byRequest.get(hex(body)) : undefined;
    return r ? { body: r, headers: { 'content-type': 'application/ocsp-response' } } : undefined;
  };
  open.push(v);
  return v;
}

async function shim(cacheDir: string, ocspUrl: string): Promise<Listening> {
  const app = collateralRoutes(new CollateralCache({ dir: cacheDir, retry: { attempts: 1 } }), { ...VENDOR_BASES, nvidiaOcsp: ocspUrl });
  const l = await listen(app.fetch);
  open.push(l);
  return l;
}

const verify = (base: string | undefined) => verifyBundle(bundle, {
  expectedReportData: rd, expectedGpuNonce: gnonce, requireGpu: true, policy, allowSim: true, now: new Date(),
  ...(base ? { fetched: { gpu: gpuOcspFromShim({ base, fetch: (i, init) => fetch(i, init) }) } } : {}),
}, cpuStandIn);

beforeAll(async () => {
  nvidia = await createNvidiaSimSigner({ now: new Date() });
  rd = crypto.getRandomValues(new Uint8Array(64));
  gnonce = await gpuNonceFor(rd);
  bundle = {
    v: 1, platform: 'sim-sev-snp', evidence: new Uint8Array([1]), certs: [new Uint8Array([2])], collateral: {},
    gpu: [{ arch: 'HOPPER', evidence: await buildSimGpuReport(nvidia, { nonce: gnonce }), certs: [nvidia.leaf.der, nvidia.intermediate.der, nvidia.root.der], ccMode: 'on' }],
    keys: { ohttp: new Uint8Array([3]), signing: new Uint8Array(32) }, nonce: new Uint8Array(32), issuedAt: Date.now(),
  };
  dir = await mkdtemp(join(tmpdir(), 'gm-collateral-gpu-'));
});
afterAll(async () => {
  for (const o of open) await o.close();
  await rm(dir, { recursive: true, force: true });
});

describe('GPU OCSP from the shim collateral cache', () => {
  it('checks every certificate of the GPU chain through the shim, then again with NVIDIA unreachable', async () => {
    // Without a source the policy that requires OCSP refuses: nothing is skipped silently.
    const bare = await verify(undefined).catch((x) => x);
    expect(bare.code).toBe('NVIDIA_OCSP_REQUIRED');

    const ocsp = await responder(() => ({}));
    const host = await shim(join(dir, 'cache'), ocsp.url);
    const r1 = await verify(host.url);
    expect(row(r1.report, 'nvidia.ocsp.0')?.status).toBe('pass');
    expect(row(r1.report, 'nvidia.ocsp.1')?.status).toBe('pass');
    expect(ocsp.log).toEqual(['POST /', 'POST /']);

    await ocsp.close(); // the network to NVIDIA is cut from here on
    const r2 = await verify(host.url);
    expect(row(r2.report, 'nvidia.ocsp.0')?.status).toBe('pass');
    expect(row(r2.report, 'nvidia.ocsp.1')?.status).toBe('pass');
    expect(ocsp.log.length).toBe(2);
  });

  it('rejects a revoked status or a forged response served by the shim, and fails closed when it has none', async () => {
    const revoked = await responder((w) => (w === 'leaf' ? { status: 'revoked' } : {}));
    const e1 = await verify((await shim(join(dir, 'revoked'), revoked.url)).url).catch((x) => x);
    expect(e1.code).toBe('CERT_REVOKED');

    const other = await createNvidiaSimSigner({ now: new Date() });
    const forged = await responder((w) => (w === 'intermediate' ? { key: other.rootKey } : {}));
    const e2 = await verify((await shim(join(dir, 'forged'), forged.url)).url).catch((x) => x);
    expect(e2.code).toBe('OCSP_SIGNATURE');
    expect(row(e2.report, 'bundle.gpu[0]')).toMatchObject({ status: 'fail', code: 'OCSP_SIGNATURE' });

    const e3 = await verify((await shim(join(dir, 'empty'), 'http://127.0.0.1:1')).url).catch((x) => x);
    // An unreachable source is a skip the policy refuses (it requires OCSP): a collateral error, to retry later.
    expect(e3.code).toBe('NVIDIA_OCSP_UNAVAILABLE');
    expect(e3.kind).toBe('collateral');
    expect(row(e3.report, 'bundle.gpu[0]')).toMatchObject({ status: 'fail', code: 'NVIDIA_OCSP_UNAVAILABLE' });
  });
});
