/**
 * RIMs from a collateral getter (GpuCollateral.rim): the ids are derived from the verified report as NVIDIA's
 * verifiers name them (checked against the real GH100 report), the getter is asked only after the chain and the
 * report signature verified, what it returns is verified like `rims`, and a getter that cannot supply them refuses
 * with a collateral code when the policy requires a RIM match (a visible skip otherwise).
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { equalBytes, fromHex } from '../bytes.ts';
import { type GmError, collateralError, isGmError } from '../errors.ts';
import type { Certificate } from '../x509/cert.ts';
import { hasVectors, vectorText } from '../../test/vectors.ts';
import { type GpuCollateral, type GpuVerifyOptions, type RimWant, gpuPolicyFrom, parseGpuEvidenceJson, rimIdsFor, verifyGpuEvidence } from './index.ts';
import {
  type NvidiaSimSigner, type SimGpu, type SimRimSigner, buildOcspFor, buildSimGpuEvidence, buildSimGpuReport, buildSimOcsp, buildSimRim, createNvidiaSimSigner,
  createSimRimSigner, simMeasurement,
} from './sim.ts';
import { OPAQUE_FIELD_ID, parseGpuAttestationReport } from './spdm.ts';

const NOW = new Date('2026-03-01T12:00:00Z');
const NONCE = new Uint8Array(32).fill(9);
const POLICY = {
  ccModeRequired: true, allowDebug: false, allowDevtools: false, minDriverVersion: '550.54.14', minVbiosVersion: '96.00.5e.00.00',
  allowedArchitectures: ['HOPPER', 'BLACKWELL'], rimMatchRequired: true, ocsp: 'required', maxEvidenceAgeSeconds: 300,
};
const DRIVER_ID = 'NV_GPU_DRIVER_GH100_550.90.07';
const VBIOS_ID = 'NV_GPU_VBIOS_1010_0200_882_96009F0001';

let signer: NvidiaSimSigner;
let rimSigner: SimRimSigner;
let driverXml: string;
let vbiosXml: string;

const entries = async (from: number, to: number, change?: number) => {
  const out = [];
  for (let i = from; i < to; i++) out.push({ index: i, active: true, alternatives: [i === change ? new Uint8Array(48).fill(0xab) : await simMeasurement(i + 1)] });
  return out;
};

beforeAll(async () => {
  signer = await createNvidiaSimSigner({ now: NOW });
  rimSigner = await createSimRimSigner(NOW);
  driverXml = await buildSimRim(rimSigner, 'driver', '550.90.07', await entries(0, 30));
  vbiosXml = await buildSimRim(rimSigner, 'vbios', '96.00.9F.00.01', await entries(30, 64));
});

/** A getter serving `byId` and recording every ask; OCSP good for the device chain and the RIM signing chain. */
function source(byId: Record<string, string | Error | undefined> = { [DRIVER_ID]: driverXml, [VBIOS_ID]: vbiosXml }) {
  const asked: RimWant[] = [];
  const collateral: GpuCollateral = {
    async rim(want) {
      asked.push(want);
      const v = byId[want.id];
      if (v instanceof Error) throw v;
      return v;
    },
    async ocsp(cert: Certificate, issuer: Certificate) {
      const times = { thisUpdate: new Date(NOW.getTime() - 3_600_000), nextUpdate: new Date(NOW.getTime() + 86_400_000) };
      if (equalBytes(issuer.der, rimSigner.root.der)) return buildOcspFor(cert, issuer, rimSigner.rootKey, times);
      return buildSimOcsp(signer, cert, times);
    },
  };
  return { asked, collateral };
}

function options(collateral: GpuCollateral, policy: Record<string, unknown> = {}, over: Partial<GpuVerifyOptions> = {}): GpuVerifyOptions {
  return {
    now: NOW, roots: { device: [signer.root], rim: [rimSigner.root] }, sim: true, expectedNonce: NONCE, collateral,
    policy: gpuPolicyFrom({ ...POLICY, ...policy }), collectedAt: new Date(NOW.getTime() - 10_000), ...over,
  };
}

async function outcome(gpus: readonly SimGpu[], o: GpuVerifyOptions) {
  return verifyGpuEvidence(await buildSimGpuEvidence(signer, gpus), o).then((r) => ({ ok: r, err: undefined }), (e: unknown) => {
    if (!isGmError(e)) throw e;
    return { ok: undefined, err: e };
  });
}
type Rows = { checks: readonly { id: string; status: string; code?: string; detail?: string }[] };
const row = (r: Rows | undefined, id: string) => r?.checks.find((c) => c.id === id);

describe('RIM ids (NVIDIA RIM service naming)', () => {
  it.skipIf(!hasVectors)('the real GH100 report names NV_GPU_DRIVER_GH100_550.90.07 and NV_GPU_VBIOS_1010_0200_882_96009F0001', () => {
    const raw = fromHex(vectorText('nvidia/nvtrust/hopperAttestationReport.txt').replace(/\s/g, ''));
    const report = parseGpuAttestationReport(raw);
    // Opaque fields as the report carries them: PROJECT "1010", PROJECT_SKU "0200", CHIP_SKU "882" (NUL-padded).
    expect([report.response.opaque.project, report.response.opaque.projectSku, report.response.opaque.chipSku]).toEqual(['1010', '0200', '882']);
    expect(rimIdsFor(report, 'HOPPER')).toEqual({ driver: DRIVER_ID, vbios: VBIOS_ID });
    // NVIDIA's format: prefix, then project_projectSku_chipSku_<VBIOS version without dots, upper case>.
    expect(rimIdsFor(report, 'hopper').vbios).toMatch(/^NV_GPU_VBIOS_[0-9A-Z]+_[0-9A-Z]+_[0-9A-Z]+_[0-9A-F]{10}$/);
  });

  it.skipIf(!hasVectors)('every GPU of the real 8-GPU nvtrust evidence (an H100 board of project G520) names its pair', () => {
    const items = parseGpuEvidenceJson(vectorText('nvidia/nvtrust/gpu_evidence.json'));
    expect(items).toHaveLength(8);
    // Driver 590.12, VBIOS 96.00.a5.00.01, PROJECT "G520", PROJECT_SKU "0200", CHIP_SKU "885".
    for (const it of items) expect(rimIdsFor(it.report, it.arch)).toEqual({ driver: 'NV_GPU_DRIVER_GH100_590.12', vbios: 'NV_GPU_VBIOS_G520_0200_885_9600A50001' });
  });

  it('Blackwell: NV_GPU_CC_DRIVER_<CHIP_INFO>_, GB100 without CHIP_INFO; a missing or odd field is NVIDIA_RIM_ID', async () => {
    const rep = async (o: Parameters<typeof buildSimGpuReport>[1]) => parseGpuAttestationReport(await buildSimGpuReport(signer, o));
    const enc = (s: string) => new TextEncoder().encode(s);
    expect(rimIdsFor(await rep({ opaque: new Map([[OPAQUE_FIELD_ID.CHIP_INFO, enc('GB202\0')]]) }), 'BLACKWELL').driver).toBe('NV_GPU_CC_DRIVER_GB202_550.90.07');
    expect(rimIdsFor(await rep({}), 'BLACKWELL').driver).toBe('NV_GPU_CC_DRIVER_GB100_550.90.07');
    expect(rimIdsFor(await rep({ opaque: new Map([[OPAQUE_FIELD_ID.PROJECT_SKU, enc(' 02a0\0')]]) }), 'HOPPER').vbios).toBe('NV_GPU_VBIOS_1010_02A0_882_96009F0001');
    const code = (f: () => unknown) => { try { f(); } catch (e) { return (e as GmError).code; } return undefined; };
    const noSku = await rep({ opaque: new Map([[OPAQUE_FIELD_ID.PROJECT_SKU, new Uint8Array(0)]]) });
    expect(code(() => rimIdsFor(noSku, 'HOPPER'))).toBe('NVIDIA_RIM_ID');
    const slash = await rep({ opaque: new Map([[OPAQUE_FIELD_ID.PROJECT, enc('10/0')]]) });
    expect(code(() => rimIdsFor(slash, 'HOPPER'))).toBe('NVIDIA_RIM_ID');
    expect(code(() => rimIdsFor(slash, 'AMPERE'))).toBe('NVIDIA_RIM_ID');
  });
});

describe('RIMs from the collateral getter', () => {
  it('are asked by the derived ids once per call, verified to the RIM root, OCSP-checked, and matched', async () => {
    const s = source();
    const { ok, err } = await outcome([{ nonce: NONCE }, { nonce: NONCE }], options(s.collateral));
    expect(err).toBeUndefined();
    expect(s.asked).toEqual([{ kind: 'driver', id: DRIVER_ID }, { kind: 'vbios', id: VBIOS_ID }]);
    expect(ok!.gpus[1]!.claims).toMatchObject({ measurementsMatch: true, ocsp: 'good' });
    for (const id of ['nvidia.rim.driver.fetch', 'nvidia.rim.vbios.fetch', 'nvidia.rim.driver.signature', 'nvidia.rim.vbios.signature', 'nvidia.rim.driver.ocsp.0', 'nvidia.rim.measurements', 'policy.rim-match', 'policy.ocsp'])
      expect(row(ok!.gpus[0]!.report, id)?.status, id).toBe('pass');
  });

  it('are not asked when the chain or the report signature fails, nor when `rims` already holds both', async () => {
    const s = source();
    const other = await createNvidiaSimSigner({ now: NOW });
    const bad = await outcome([{ nonce: NONCE, signWith: other.leafKey }], options(s.collateral));
    expect(bad.err?.code).toBe('NVIDIA_REPORT_SIGNATURE');
    const untrusted = await outcome([{ nonce: NONCE }], options(s.collateral, {}, { roots: { device: [other.root], rim: [rimSigner.root] } }));
    expect(untrusted.err?.code).toBe('CERT_SIGNATURE');
    expect(s.asked).toEqual([]);
    const given = await outcome([{ nonce: NONCE }], options(s.collateral, {}, { rims: [driverXml, vbiosXml] }));
    expect(given.err).toBeUndefined();
    expect(s.asked).toEqual([]);
    // Only the missing one is asked.
    const half = await outcome([{ nonce: NONCE }], options(s.collateral, {}, { rims: [driverXml] }));
    expect(half.err).toBeUndefined();
    expect(s.asked).toEqual([{ kind: 'vbios', id: VBIOS_ID }]);
  });

  it('a measurement that differs from the fetched RIM is NVIDIA_RIM_MISMATCH at its block', async () => {
    const s = source();
    const { err } = await outcome([{ nonce: NONCE, measurements: { 5: new Uint8Array(48).fill(1) } }], options(s.collateral));
    expect(err?.code).toBe('NVIDIA_RIM_MISMATCH');
    expect(err?.kind).toBe('rejected');
    expect(row(err?.report, 'gpu0.nvidia.rim.measurement.5')).toMatchObject({ status: 'fail', code: 'NVIDIA_RIM_MISMATCH' });
  });

  it('what the getter serves is verified like `rims`: tampered, foreign root, wrong kind, wrong version each give their code', async () => {
    const foreign = await createSimRimSigner(NOW);
    const foreignXml = await buildSimRim(foreign, 'vbios', '96.00.9F.00.01', await entries(30, 64));
    const cases: [Record<string, string>, string][] = [
      [{ [VBIOS_ID]: vbiosXml.replace(/ns2:Hash0="[0-9a-f]/, (m) => m.slice(0, -1) + (m.endsWith('0') ? '1' : '0')) }, 'NVIDIA_RIM_DIGEST'],
      // Same root name, other key: the chain to the trusted RIM root does not verify.
      [{ [VBIOS_ID]: foreignXml }, 'CERT_SIGNATURE'],
      [{ [VBIOS_ID]: driverXml }, 'NVIDIA_RIM_INVALID'],
      [{ [VBIOS_ID]: '<not-xml' }, 'XML_INVALID'],
      [{ [VBIOS_ID]: await buildSimRim(rimSigner, 'vbios', '96.00.9F.00.02', await entries(30, 64)) }, 'NVIDIA_RIM_VERSION_MISMATCH'],
    ];
    for (const [served, code] of cases) {
      const { err } = await outcome([{ nonce: NONCE }], options(source({ [DRIVER_ID]: driverXml, ...served }).collateral, { rimMatchRequired: false }));
      expect(err?.code, code).toBe(code);
    }
  });

  it('RIMs the getter cannot supply: a collateral refusal when the policy requires a match, a visible skip otherwise', async () => {
    for (const missing of [collateralError('COLLATERAL_UNAVAILABLE', 'the collateral cache answered HTTP 503'), undefined]) {
      const s = source({ [DRIVER_ID]: driverXml, [VBIOS_ID]: missing });
      const { err } = await outcome([{ nonce: NONCE }], options(s.collateral));
      expect(err?.code).toBe('NVIDIA_RIM_UNAVAILABLE');
      expect(err?.kind).toBe('collateral');
      expect(row(err?.report, 'gpu0.policy.rim-match')).toMatchObject({ status: 'fail', code: 'NVIDIA_RIM_UNAVAILABLE' });
      expect(row(err?.report, 'gpu0.nvidia.rim')?.status).toBe('skip');
      expect(row(err?.report, 'gpu0.nvidia.rim')?.detail).toContain(VBIOS_ID);

      const lax = await outcome([{ nonce: NONCE }], options(s.collateral, { rimMatchRequired: false }));
      expect(lax.err).toBeUndefined();
      expect(lax.ok!.gpus[0]!.claims.measurementsMatch).toBeUndefined();
      expect(row(lax.ok!.gpus[0]!.report, 'nvidia.rim')).toMatchObject({ status: 'skip' });
    }
    // A report whose RIMs cannot be named (no PROJECT_SKU) is the same refusal, with the reason.
    const s = source();
    const { err } = await outcome([{ nonce: NONCE, opaque: new Map([[OPAQUE_FIELD_ID.PROJECT_SKU, new Uint8Array(0)]]) }], options(s.collateral));
    expect(err?.code).toBe('NVIDIA_RIM_UNAVAILABLE');
    expect(row(err?.report, 'gpu0.nvidia.rim')?.detail).toContain('NVIDIA_RIM_ID');
    expect(s.asked).toEqual([]);
  });
});
