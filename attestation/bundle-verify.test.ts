import { describe, expect, it } from 'vitest';
import type { EvidenceBundle } from './bundle.ts';
import { type GpuClaims, type Verifiers, verifyBundle, type VerifyBundleOptions } from './bundle-verify.ts';
import { isGmError } from './errors.ts';
import { Checks } from './report.ts';

const rd = new Uint8Array(64).fill(9);
const gnonce = new Uint8Array(32).fill(3);
const bundle: EvidenceBundle = {
  v: 1, platform: 'sim-sev-snp', evidence: new Uint8Array([1]), certs: [new Uint8Array([2]), new Uint8Array([3])], collateral: {},
  gpu: [{ arch: 'HOPPER', evidence: new Uint8Array([4]), certs: [new Uint8Array([5])], ccMode: 'on' }],
  keys: { ohttp: new Uint8Array([6]), signing: new Uint8Array([7]) }, nonce: new Uint8Array(32), issuedAt: 1_000_000,
};
const opts: VerifyBundleOptions = { expectedReportData: rd, expectedGpuNonce: gnonce, requireGpu: true, policy: {}, allowSim: true, now: new Date(1_000_500), maxAgeMs: 10_000 };

function fakes(o: { reportData?: Uint8Array; gpu?: Partial<GpuClaims>; cpuFail?: boolean } = {}): Verifiers {
  return {
    'sev-snp': async (i) => {
      const c = new Checks('snp');
      c.pass('snp.sig', 'report signature', i.simRoot ? 'sim' : 'ark');
      if (o.cpuFail) throw c.failed('snp.measurement', 'measurement allowed', 'policy', Object.assign(new Error('x'), {}));
      return { claims: { reportData: o.reportData ?? i.expectedReportData, measurement: 'aa', detail: {} }, report: c.report() };
    },
    gpu: async (i) => ({ claims: { arch: 'hopper', nonce: i.expectedNonce, ccMode: true, devToolsMode: false, detail: {}, ...o.gpu }, report: new Checks('gpu').report() }),
  };
}
async function code(p: Promise<unknown>) {
  try {
    await p;
  } catch (e) {
    if (isGmError(e)) return e.code;
    throw e;
  }
  return 'OK';
}

describe('verifyBundle', () => {
  it('passes with sim allowed and marks every row and the claims as sim', async () => {
    const r = await verifyBundle(bundle, opts, fakes());
    expect(r.claims.sim).toBe(true);
    expect(r.report.verified).toBe(true);
    expect(r.report.checks.every((c) => c.what.startsWith('[sim] '))).toBe(true);
    expect(r.report.checks.map((c) => c.id)).toContain('snp.sig');
  });
  it('refuses sim unless allowed, and sim roots other than the trusted ones', async () => {
    expect(await code(verifyBundle(bundle, { ...opts, allowSim: false }, fakes()))).toBe('SIM_NOT_ALLOWED');
    expect(await code(verifyBundle(bundle, { ...opts, simRoots: [new Uint8Array([9])] }, fakes()))).toBe('SIM_ROOT_UNTRUSTED');
    expect(await code(verifyBundle(bundle, { ...opts, simRoots: [new Uint8Array([3])] }, fakes()))).toBe('OK');
  });
  it('refuses a REPORT_DATA that does not bind the keys', async () => {
    expect(await code(verifyBundle(bundle, opts, fakes({ reportData: new Uint8Array(64) })))).toBe('REPORT_DATA_MISMATCH');
  });
  it('refuses GPU evidence with CC off, devtools on, or a nonce not bound to the CPU evidence', async () => {
    expect(await code(verifyBundle(bundle, opts, fakes({ gpu: { ccMode: false } })))).toBe('GPU_CC_MODE_OFF');
    expect(await code(verifyBundle(bundle, opts, fakes({ gpu: { devToolsMode: true } })))).toBe('GPU_DEVTOOLS_ON');
    expect(await code(verifyBundle(bundle, opts, fakes({ gpu: { nonce: new Uint8Array(32) } })))).toBe('GPU_NONCE_MISMATCH');
    const { gpu: _g, ...noGpu } = bundle;
    expect(await code(verifyBundle(noGpu, opts, fakes()))).toBe('GPU_EVIDENCE_MISSING');
  });
  it('refuses stale or future evidence and a wrong nonce', async () => {
    expect(await code(verifyBundle(bundle, { ...opts, now: new Date(1_000_000 + 20_000) }, fakes()))).toBe('EVIDENCE_STALE');
    expect(await code(verifyBundle(bundle, { ...opts, now: new Date(1_000_000 - 120_000) }, fakes()))).toBe('EVIDENCE_FROM_FUTURE');
    expect(await code(verifyBundle(bundle, { ...opts, expectedNonce: new Uint8Array(32).fill(1) }, fakes()))).toBe('NONCE_MISMATCH');
  });
  it('keeps the platform verifier rows of a failure in the thrown report', async () => {
    try {
      await verifyBundle(bundle, opts, fakes({ cpuFail: true }));
      expect.unreachable();
    } catch (e) {
      expect(isGmError(e)).toBe(true);
      const ids = (e as { report: { checks: { id: string }[] } }).report.checks.map((c) => c.id);
      expect(ids).toEqual(expect.arrayContaining(['snp.sig', 'snp.measurement', 'bundle.cpu']));
    }
  });
  it('says which verifier is missing', async () => {
    expect(await code(verifyBundle(bundle, opts, {}))).toBe('VERIFIER_UNAVAILABLE');
  });
});
