import { beforeAll, describe, expect, it } from 'vitest';
import { equalBytes } from '../bytes.ts';
import { type GmError, collateralError, isGmError } from '../errors.ts';
import type { Certificate } from '../x509/cert.ts';
import { hasTrustAnchors, trustStore } from '../../test/vectors.ts';
import { type GpuVerifyOptions, gpuPolicyFrom, parseGpuEvidenceJson, verifyGpuEvidence, verifyOneGpu } from './index.ts';
import {
  type NvidiaSimSigner, type SimGpu, type SimRimSigner, buildOcspFor, buildSimGpuEvidence, buildSimOcsp, buildSimRim, createNvidiaSimSigner, createSimRimSigner, simMeasurement,
} from './sim.ts';

const NOW = new Date('2026-03-01T12:00:00Z');
const NONCE = new Uint8Array(32).fill(7);
const POLICY = {
  ccModeRequired: true, allowDebug: false, allowDevtools: false, minDriverVersion: '550.54.14', minVbiosVersion: '96.00.5e.00.00',
  allowedArchitectures: ['HOPPER', 'BLACKWELL'], rimMatchRequired: true, ocsp: 'required', maxEvidenceAgeSeconds: 300,
};

let signer: NvidiaSimSigner;
let rimSigner: SimRimSigner;
let rims: string[];

beforeAll(async () => {
  signer = await createNvidiaSimSigner({ now: NOW });
  rimSigner = await createSimRimSigner(NOW);
  const entries = async (from: number, to: number) => {
    const out = [];
    // Index 35 (block 36) holds a value the sim GPU does not produce: it only counts when NVDEC0 is enabled.
    for (let i = from; i < to; i++) out.push({ index: i, active: true, alternatives: [i === 35 ? new Uint8Array(48).fill(0xee) : await simMeasurement(i + 1)] });
    return out;
  };
  // Driver RIM owns indices 0..29, VBIOS RIM 30..63 (0-based): disjoint, like NVIDIA's.
  rims = [await buildSimRim(rimSigner, 'driver', '550.90.07', await entries(0, 30)), await buildSimRim(rimSigner, 'vbios', '96.00.9F.00.01', await entries(30, 64))];
});

/** Serves OCSP for the device chain and for the RIM signing chain (RIM chains are checked for revocation too). */
function ocspGetter(s: NvidiaSimSigner, status: 'good' | 'revoked' = 'good', nextUpdate = new Date(NOW.getTime() + 86_400_000), rimStatus: 'good' | 'revoked' | 'none' = 'good') {
  return {
    ocsp: async (cert: Certificate, issuer: Certificate) => {
      const times = { thisUpdate: new Date(NOW.getTime() - 3_600_000), nextUpdate };
      if (equalBytes(issuer.der, rimSigner.root.der))
        return rimStatus === 'none' ? undefined : buildOcspFor(cert, issuer, rimSigner.rootKey, { ...times, status: rimStatus });
      return buildSimOcsp(s, cert, { status, ...times });
    },
  };
}

function options(over: Partial<GpuVerifyOptions> = {}, policy: Record<string, unknown> = {}): GpuVerifyOptions {
  return {
    now: NOW, roots: { device: [signer.root], rim: [rimSigner.root] }, sim: true, expectedNonce: NONCE, rims,
    collateral: ocspGetter(signer), policy: gpuPolicyFrom({ ...POLICY, ...policy }), collectedAt: new Date(NOW.getTime() - 10_000), ...over,
  };
}

async function reject(gpu: SimGpu, over: Partial<GpuVerifyOptions> = {}, policy: Record<string, unknown> = {}): Promise<GmError> {
  const ev = await buildSimGpuEvidence(signer, [{ nonce: NONCE, ...gpu }]);
  const e = await verifyGpuEvidence(ev, options(over, policy)).then(() => undefined, (x: unknown) => x);
  if (!isGmError(e)) throw new Error(`expected a GmError, got ${String(e)}`);
  return e;
}

describe('fake NVIDIA signer: baseline', () => {
  it('a sim GPU with matching RIMs, good OCSP and policy verifies, every check named', async () => {
    const r = await verifyGpuEvidence(await buildSimGpuEvidence(signer, [{ nonce: NONCE }, { nonce: NONCE }]), options());
    expect(r.report.verified).toBe(true);
    expect(r.gpus).toHaveLength(2);
    const c = r.gpus[0]!.claims;
    expect(c).toMatchObject({ sim: true, ccMode: 'on', ocsp: 'good', measurementsMatch: true, nonceMatch: true, driverVersion: '550.90.07' });
    const ids = new Set(r.gpus[0]!.report.checks.map((x) => x.id));
    for (const id of ['nvidia.chain', 'nvidia.fwid', 'nvidia.report.nonce', 'nvidia.report.signature', 'nvidia.ocsp.0', 'nvidia.ocsp.1', 'nvidia.rim.driver.signature',
      'nvidia.rim.vbios.signature', 'nvidia.rim.driver.ocsp.0', 'nvidia.rim.vbios.ocsp.0', 'nvidia.rim.measurements', 'policy.cc-mode', 'policy.devtools', 'policy.rim-match', 'policy.ocsp', 'policy.evidence-age'])
      expect(ids.has(id), id).toBe(true);
    expect(r.gpus[0]!.report.checks.find((x) => x.id === 'nvidia.rim.versions')!.detail).toMatch(/block 36 skipped \(NVDEC0 disabled\)/);
  });

  it.skipIf(!hasTrustAnchors)('without the sim root (pinned NVIDIA root only) the sim chain is refused', async () => {
    const e = await reject({}, { roots: undefined, trustStore: await trustStore(), sim: false });
    expect(e.code).toBe('CERT_UNTRUSTED_ROOT');
  });
});

describe('fake NVIDIA signer: one field at a time', () => {
  const cases: [string, SimGpu, Partial<GpuVerifyOptions>, Record<string, unknown>, string][] = [
    ['nonce', { nonce: new Uint8Array(32).fill(8) }, {}, {}, 'NVIDIA_NONCE_MISMATCH'],
    ['CC mode off', { ccMode: 'off' }, {}, {}, 'NVIDIA_CC_MODE_OFF'],
    ['devtools on', { ccMode: 'devtools' }, {}, {}, 'NVIDIA_DEVTOOLS_ON'],
    ['measurement value', { measurements: { 12: new Uint8Array(48).fill(1) } }, {}, {}, 'NVIDIA_RIM_MISMATCH'],
    ['driver version', { driverVersion: '535.104.05' }, {}, {}, 'NVIDIA_DRIVER_TOO_OLD'],
    ['VBIOS version', { vbiosVersion: '96.00.30.00.01' }, {}, {}, 'NVIDIA_VBIOS_TOO_OLD'],
    ['FWID', { fwid: new Uint8Array(48).fill(3) }, {}, {}, 'NVIDIA_FWID_MISMATCH'],
    ['signing key', { signWith: undefined }, {}, {}, 'NVIDIA_REPORT_SIGNATURE'],
    ['architecture', { arch: 'AMPERE' }, {}, {}, 'NVIDIA_ARCH_NOT_ALLOWED'],
    ['OCSP revoked', {}, { collateral: undefined }, {}, 'CERT_REVOKED'],
    ['OCSP expired', {}, { collateral: undefined }, {}, 'OCSP_EXPIRED'],
    ['OCSP missing, policy requires it', {}, { collateral: {} }, {}, 'NVIDIA_OCSP_REQUIRED'],
    ['RIM signing certificate revoked', {}, { collateral: undefined }, {}, 'CERT_REVOKED'],
    ['RIM chain OCSP missing, policy requires it', {}, { collateral: undefined }, {}, 'NVIDIA_OCSP_REQUIRED'],
    ['evidence age', {}, { collectedAt: new Date(NOW.getTime() - 3_600_000) }, {}, 'NVIDIA_EVIDENCE_STALE'],
    ['no RIMs while the policy requires a match', {}, { rims: [] }, {}, 'NVIDIA_RIM_MISMATCH'],
    ['policy nonce', {}, {}, { expectedNonce: '00'.repeat(32) }, 'NVIDIA_NONCE_MISMATCH'],
  ];
  for (const [what, gpu, over, policy, want] of cases) {
    it(`${what} → ${want}`, async () => {
      const g = { ...gpu };
      const o = { ...over };
      if (what === 'signing key') Object.assign(g, { signWith: signer.intermediateKey });
      if (what === 'OCSP revoked') o.collateral = ocspGetter(signer, 'revoked');
      if (what === 'OCSP expired') o.collateral = ocspGetter(signer, 'good', new Date(NOW.getTime() - 60_000));
      if (what === 'RIM signing certificate revoked') o.collateral = ocspGetter(signer, 'good', undefined, 'revoked');
      if (what === 'RIM chain OCSP missing, policy requires it') o.collateral = ocspGetter(signer, 'good', undefined, 'none');
      const e = await reject(g, o, policy);
      expect(e.code).toBe(want);
      expect(e.message).toMatch(/^GPU 0 \(/);
    });
  }

  it('a measurement mismatch is reported by index', async () => {
    const e = await reject({ measurements: { 3: new Uint8Array(48), 40: new Uint8Array(48).fill(9) } });
    const failed = e.report!.checks.filter((c) => c.status === 'fail').map((c) => c.id);
    expect(failed).toEqual(['gpu0.nvidia.rim.measurement.3', 'gpu0.nvidia.rim.measurement.40']);
  });

  it('NVDEC0 enabled makes block 36 count', async () => {
    const e = await reject({ nvdec0Status: 'enabled' });
    expect(e.report!.checks.filter((c) => c.status === 'fail').map((c) => c.id)).toEqual(['gpu0.nvidia.rim.measurement.36']);
  });

  it('policy violations are reported together', async () => {
    const e = await reject({ ccMode: 'off', driverVersion: '535.104.05', arch: 'AMPERE' }, { rims: [] });
    const failed = e.report!.checks.filter((c) => c.status === 'fail').map((c) => c.code);
    expect(failed).toEqual(['NVIDIA_CC_MODE_OFF', 'NVIDIA_DRIVER_TOO_OLD', 'NVIDIA_ARCH_NOT_ALLOWED', 'NVIDIA_RIM_MISMATCH']);
  });

  it('OCSP skip passes when the policy allows it and no RIM is required', async () => {
    const ev = await buildSimGpuEvidence(signer, [{ nonce: NONCE }]);
    const r = await verifyGpuEvidence(ev, options({ collateral: undefined, rims: [] }, { ocsp: 'allow-skip', rimMatchRequired: false }));
    expect(r.gpus[0]!.claims.ocsp).toBe('skipped');
    expect(r.report.checks.find((c) => c.id === 'gpu0.nvidia.ocsp')!.status).toBe('skip');
  });

  it('an OCSP source that cannot answer is a skip: allowed by allow-skip, NVIDIA_OCSP_UNAVAILABLE (collateral) when required', async () => {
    const ev = await buildSimGpuEvidence(signer, [{ nonce: NONCE }]);
    const down = { ocsp: async () => { throw collateralError('COLLATERAL_UNAVAILABLE', 'the shim answered HTTP 502'); } };
    const lax = await verifyGpuEvidence(ev, options({ collateral: down, rims: [] }, { ocsp: 'allow-skip', rimMatchRequired: false }));
    expect(lax.gpus[0]!.claims.ocsp).toBe('skipped');
    const row = lax.report.checks.find((c) => c.id === 'gpu0.nvidia.ocsp.0')!;
    expect(row.status).toBe('skip');
    expect(row.detail).toContain('COLLATERAL_UNAVAILABLE');
    const e = (await verifyGpuEvidence(ev, options({ collateral: down, rims: [] }, { ocsp: 'required', rimMatchRequired: false })).catch((x: unknown) => x)) as GmError;
    expect(e.code).toBe('NVIDIA_OCSP_UNAVAILABLE');
    expect(e.kind).toBe('collateral');
    // Anything else the getter throws is not an outage: it propagates.
    const broken = { ocsp: async () => { throw new TypeError('bug'); } };
    await expect(verifyGpuEvidence(ev, options({ collateral: broken, rims: [] }, { ocsp: 'allow-skip', rimMatchRequired: false }))).rejects.toThrow();
  });

  it('a trustee case-4-like chain (leaf without FWID) is refused', async () => {
    const noFwid = await createNvidiaSimSigner({ now: NOW, leafWithoutFwid: true });
    const ev = await buildSimGpuEvidence(noFwid, [{ nonce: NONCE, fwid: noFwid.fwid }]);
    const e = await verifyGpuEvidence(ev, options({ roots: { device: [noFwid.root], rim: [rimSigner.root] } })).catch((x: GmError) => x);
    expect(isGmError(e, 'NVIDIA_FWID_MISSING')).toBe(true);
  });

  it('a warm (cached) chain is re-checked: expired certificates and a different root are refused', async () => {
    const ev = await buildSimGpuEvidence(signer, [{ nonce: NONCE }]);
    await verifyGpuEvidence(ev, options());
    const later = new Date(NOW.getTime() + 11 * 365 * 86_400_000);
    expect(await verifyGpuEvidence(ev, options({ now: later }, { maxEvidenceAgeSeconds: 1e12 })).catch((e: GmError) => e.code)).toBe('CERT_EXPIRED');
    // Another root with the same name: the presented root is then checked as signed by it, and is not.
    const other = await createNvidiaSimSigner({ now: NOW });
    expect(await verifyGpuEvidence(ev, options({ roots: { device: [other.root], rim: [rimSigner.root] } })).catch((e: GmError) => e.code)).toBe('CERT_SIGNATURE');
    const renamed = await createNvidiaSimSigner({ now: NOW, rootName: 'another sim root' });
    expect(await verifyGpuEvidence(ev, options({ roots: { device: [renamed.root], rim: [rimSigner.root] } })).catch((e: GmError) => e.code)).toBe('CERT_UNTRUSTED_ROOT');
  });

  it('a policy with a missing or unknown field is a configuration error', () => {
    const { ocsp: _o, ...missing } = POLICY;
    expect(() => gpuPolicyFrom(missing)).toThrow(expect.objectContaining({ code: 'POLICY_MISSING_FIELD' }));
    expect(() => gpuPolicyFrom({ ...POLICY, ocps: 'required' })).toThrow(expect.objectContaining({ code: 'POLICY_UNKNOWN_FIELD' }));
    expect(() => gpuPolicyFrom({ ...POLICY, ocsp: 'maybe' })).toThrow(expect.objectContaining({ code: 'POLICY_INVALID' }));
  });
});

describe('verifyOneGpu (as the bundle verifier calls it)', () => {
  it('uses the RIMs given in options (no silent skip)', async () => {
    const [item] = parseGpuEvidenceJson(await buildSimGpuEvidence(signer, [{ nonce: NONCE, measurements: { 5: new Uint8Array(48) } }]));
    const e = await verifyOneGpu(item!, options()).catch((x: GmError) => x);
    expect(isGmError(e, 'NVIDIA_RIM_MISMATCH')).toBe(true);
    expect((e as GmError).report!.checks.filter((c) => c.status === 'fail').map((c) => c.id)).toEqual(['nvidia.rim.measurement.5']);
  });
});
