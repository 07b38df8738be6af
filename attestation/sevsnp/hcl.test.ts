/** Azure HCL reports: strict container parsing and the runtime-data binding, on real Genoa and Milan reports. */
import { describe, expect, it } from 'vitest';
import { isGmError } from '../errors.ts';
import { hasTrustAnchors, trustStore, vector } from '../../test/vectors.ts';
import { HCL_REQUEST_DATA_OFFSET, parseHclReport } from './hcl.ts';
import { verifySevSnpHcl } from './index.ts';

const local = (rel: string) => vector(`sev-snp/${rel}`);
const genoa = () => local('trustee-azure/hcl-report-genoa.bin');
const NOW = new Date('2026-01-01T00:00:00Z');
const set32 = (b: Uint8Array, o: number, v: number) => new DataView(b.buffer, b.byteOffset).setUint32(o, v, true);

function code(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    return isGmError(e) ? e.code : String(e);
  }
  return 'none';
}

describe('parseHclReport', () => {
  it('reads the real Genoa (HCL v2) and Milan (HCL v1) reports', () => {
    const g = parseHclReport(genoa());
    expect(g).toMatchObject({ version: 2, hashType: 'SHA-256', padding: 2600 - 2436 });
    expect(g.snpReport.length).toBe(1184);
    expect(g.runtimeData.length).toBe(1200);
    expect(new TextDecoder().decode(g.runtimeData)).toMatch(/^\{"keys":\[\{"kid":"HCLAkPub"/);
    expect(parseHclReport(local('trustee-azure/hcl-report-milan.bin')).version).toBe(1);
  });

  it('refuses every malformed field with SNP_HCL_INVALID, and a TDX HCL report as a usage error', () => {
    const cases: [string, (b: Uint8Array) => void][] = [
      ['signature', (b) => void (b[0] = 0x68)],
      ['status', (b) => set32(b, 16, 1)],
      ['reserved', (b) => void (b[28] = 1)],
      ['report_size', (b) => set32(b, 8, 2437)],
      ['data_size', (b) => set32(b, HCL_REQUEST_DATA_OFFSET, 1221)],
      ['hash type', (b) => set32(b, HCL_REQUEST_DATA_OFFSET + 12, 4)],
      ['report type', (b) => set32(b, HCL_REQUEST_DATA_OFFSET + 8, 3)],
      ['padding', (b) => void (b[2599] = 1)],
    ];
    for (const [what, mutate] of cases) {
      const b = genoa();
      mutate(b);
      expect(code(() => parseHclReport(b)), what).toBe('SNP_HCL_INVALID');
    }
    expect(code(() => parseHclReport(genoa().subarray(0, 1300)))).toBe('SNP_HCL_INVALID');
    const tdx = local('azure-cvm-tooling/hcl-report-tdx.bin');
    expect(code(() => parseHclReport(tdx))).toBe('SNP_HCL_TDX');
  });
});

describe.skipIf(!hasTrustAnchors)('verifySevSnpHcl (pinned AMD chains)', () => {
  it('verifies the report inside and its runtime-data binding', async () => {
    const trust = await trustStore();
    for (const p of ['genoa', 'milan']) {
      // vcek-milan.pem is Azure's vcek.pem (VCEK, ASK, ARK): the verifier takes the VCEK alone.
      const vcek = new TextDecoder().decode(local(`trustee-azure/vcek-${p}.pem`)).split(/(?<=-----END CERTIFICATE-----)/)[0]!;
      const r = await verifySevSnpHcl(local(`trustee-azure/hcl-report-${p}.bin`), { now: NOW, trust, vcek: new TextEncoder().encode(vcek) });
      expect(r.report.verified).toBe(true);
      expect(r.report.checks.map((c) => c.id)).toEqual(expect.arrayContaining(['snp.hcl.parse', 'snp.report.signature', 'snp.hcl.runtimeData']));
      expect(r.claims.hclRuntimeData).toContain('HCLAkPub');
    }
  });

  it('runtime data that is not the one REPORT_DATA hashes is rejected (SNP_HCL_RUNTIME_DATA), the report signature still passing', async () => {
    const b = genoa();
    b[HCL_REQUEST_DATA_OFFSET + 20 + 10]! ^= 1;
    const e = await verifySevSnpHcl(b, { now: NOW, trust: await trustStore(), vcek: local('trustee-azure/vcek-genoa.pem') }).catch((x: unknown) => x);
    expect(isGmError(e, 'SNP_HCL_RUNTIME_DATA')).toBe(true);
    const rows = (e as { report: { checks: { id: string; status: string }[] } }).report.checks;
    expect(rows.find((r) => r.id === 'snp.report.signature')?.status).toBe('pass');
    expect(rows.at(-1)).toMatchObject({ id: 'snp.hcl.runtimeData', status: 'fail' });
  });
});
