/** The bundle adapter: sim evidence as the enclave would ship it verifies with the sim root, and fails closed. */
import { describe, expect, it } from 'vitest';
import { tdxBundleVerifier } from './bundle.ts';
import { createSimTdx } from './sim.ts';

describe('tdxBundleVerifier', () => {
  it('verifies sim evidence in its served form, binding REPORTDATA; refuses without a root or with another binding', async () => {
    const sim = await createSimTdx();
    const rd = new Uint8Array(64).fill(0x42);
    const ev = await sim.evidence(rd);
    expect(ev.collateral.chain?.at(-1)).toEqual(sim.rootDer); // verifyBundle takes the sim root from here
    const input = { ...ev, expectedReportData: rd, policy: undefined, trust: undefined, simRoot: sim.rootDer, now: sim.now };
    const r = await tdxBundleVerifier(input);
    expect(r.claims.reportData).toEqual(rd);
    expect(r.claims.measurement).toBe('7d'.repeat(48));
    expect(r.claims.detail.tcbStatus).toBe('UpToDate');
    expect(r.claims.detail.root).toContain('gm sim');
    await expect(tdxBundleVerifier({ ...input, expectedReportData: new Uint8Array(64) })).rejects.toMatchObject({ code: 'TDX_REPORT_DATA_MISMATCH' });
    await expect(tdxBundleVerifier({ ...input, simRoot: undefined })).rejects.toMatchObject({ code: 'TRUST_STORE_REQUIRED' });
    const other = await createSimTdx();
    await expect(tdxBundleVerifier({ ...input, simRoot: other.rootDer })).rejects.toMatchObject({ kind: 'rejected' });
  });
});
