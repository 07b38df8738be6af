import { describe, expect, it } from 'vitest';
import { verifyBundle } from '../../attestation/bundle-verify.ts';
import { isGmError } from '../../attestation/errors.ts';
import { DEFAULT_POLICY } from '../../attestation/sevsnp/index.ts';
import { DEFAULT_TDX_POLICY } from '../../attestation/tdx/index.ts';
import { reportData } from '../../protocol/binding.ts';
import { makeBundle } from './evidence.ts';
import { SIM_MEASUREMENT, SIM_MRTD, simProvider } from './sim.ts';

const keyConfigs = new Uint8Array([0, 1, 2, 3]);
const signingKey = new Uint8Array(32).fill(9);

describe('sim TEE providers', () => {
  for (const platform of ['sim-sev-snp', 'sim-tdx'] as const) {
    it(`${platform}: real-format evidence that verifies only with allowSim, every row marked sim`, async () => {
      const tee = simProvider({ platform });
      const nonce = crypto.getRandomValues(new Uint8Array(32));
      const b = await makeBundle({ tee, role: 'enclave', keyConfigs, signingKey, nonce });
      expect(b.platform).toBe(platform);
      const rd = await reportData({ role: 'enclave', nonce, keyConfigs, signingKey });
      const policy = platform === 'sim-tdx' ? { tdx: { ...DEFAULT_TDX_POLICY } } : { 'sev-snp': { ...DEFAULT_POLICY, measurements: [SIM_MEASUREMENT] } };
      const v = await verifyBundle(b, { expectedReportData: rd, expectedNonce: nonce, policy, allowSim: true, now: new Date(), maxAgeMs: 60_000 });
      expect(v.claims.sim).toBe(true);
      expect(v.claims.cpu.measurement).toBe(Buffer.from(platform === 'sim-tdx' ? SIM_MRTD : SIM_MEASUREMENT).toString('hex'));
      expect(v.report.checks.every((c) => c.what.startsWith('[sim] '))).toBe(true);
      const e = await verifyBundle(b, { expectedReportData: rd, policy, now: new Date() }).catch((x: unknown) => x);
      expect(isGmError(e, 'SIM_NOT_ALLOWED')).toBe(true);
      // a REPORT_DATA for other keys does not verify
      const other = await reportData({ role: 'enclave', nonce, keyConfigs, signingKey: new Uint8Array(32) });
      const e2 = await verifyBundle(b, { expectedReportData: other, policy, allowSim: true, now: new Date() }).catch((x: unknown) => x);
      expect(isGmError(e2)).toBe(true);
    }, 60_000);
  }
});
