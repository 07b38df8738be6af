/**
 * The SEV-SNP policy layer: every rule rejects exactly its case with its code (one field changed at a time, with
 * the simulated AMD), all violations are reported together, and the JSON policy reader is strict.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { GmError } from '../errors.ts';
import { DEFAULT_POLICY, type SnpPolicy, parseSnpPolicy, verifySevSnp } from './index.ts';
import { type SimAmd, type SimReportFields, createSimAmd } from './sim.ts';

const NOW = new Date('2026-01-01T00:00:00Z');
const M = new Uint8Array(48).fill(0x4d); // the sim's default MEASUREMENT
let sim: SimAmd;
beforeAll(async () => {
  sim = await createSimAmd({ product: 'Genoa' });
});

const strict: SnpPolicy = {
  ...DEFAULT_POLICY,
  measurements: [M],
  allowSmt: true,
  vmpls: [0],
  signingKeys: ['vcek'],
  products: ['Genoa'],
  minTcb: { Genoa: { bootloader: 10, tee: 0, snp: 23, microcode: 84 } },
  minGuestSvn: 1,
  reportData: new Uint8Array(64),
  hostData: new Uint8Array(32),
  idKeyDigests: [new Uint8Array(48)],
  maxEvidenceAgeSeconds: 300,
};

async function run(fields: SimReportFields, policy: Partial<SnpPolicy> = {}, extra: { evidenceTime?: Date | undefined; expectedReportData?: Uint8Array; vlek?: boolean } = {}) {
  const e = extra.vlek ? sim.vlek : sim.vcek;
  return verifySevSnp(await e.signReport(fields), {
    now: NOW, roots: sim.roots(e.kind), vcek: e.der, policy: { ...strict, ...policy },
    evidenceTime: 'evidenceTime' in extra ? extra.evidenceTime : new Date(NOW.getTime() - 10_000), expectedReportData: extra.expectedReportData,
  });
}
async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'VERIFIED';
  } catch (e) {
    if (!(e instanceof GmError)) throw e;
    return e.code;
  }
}

describe('SEV-SNP policy', () => {
  it('the strict policy passes the sim default report with every rule recorded', async () => {
    const { report } = await run({});
    const rows = report.checks.filter((r) => r.id.startsWith('snp.policy.'));
    expect(rows.map((r) => r.status).every((s) => s === 'pass')).toBe(true);
    expect(rows.length).toBe(13);
  });

  it('each rule rejects exactly its case', async () => {
    const low = { bootloader: 10, tee: 0, snp: 22, microcode: 84 };
    const cases: [string, () => Promise<unknown>][] = [
      ['SNP_POLICY_MEASUREMENT', () => run({ measurement: new Uint8Array(48).fill(1) })],
      ['SNP_POLICY_DEBUG', () => run({ policy: 0x30000n | (1n << 19n) })],
      ['SNP_POLICY_SMT', () => run({}, { allowSmt: false })],
      ['SNP_POLICY_SMT', () => run({ policy: 0x20000n, platformInfo: 0x1n }, { allowSmt: false })], // platform SMT on
      ['SNP_POLICY_SMT', () => run({ policy: 0x30000n, platformInfo: 0x0n }, { allowSmt: false })], // guest allows SMT
      ['SNP_POLICY_MIGRATE_MA', () => run({ policy: 0x30000n | (1n << 18n) })],
      ['SNP_POLICY_VMPL', () => run({ vmpl: 2 })],
      ['SNP_POLICY_SIGNING_KEY', () => run({}, {}, { vlek: true })],
      ['SNP_POLICY_PRODUCT', () => run({}, { products: ['Milan', 'Turin'] })],
      ['SNP_POLICY_TCB', () => run({}, { minTcb: { Genoa: { bootloader: 10, tee: 0, snp: 24, microcode: 84 } } })],
      ['SNP_POLICY_TCB', () => run({ currentTcb: low })], // reported fine, current below the minimum
      ['SNP_POLICY_TCB', () => run({ committedTcb: low })],
      ['SNP_POLICY_GUEST_SVN', () => run({ guestSvn: 0 })],
      ['SNP_POLICY_REPORT_DATA', () => run({ reportData: new Uint8Array(64).fill(2) })],
      ['SNP_POLICY_REPORT_DATA', () => run({}, {}, { expectedReportData: new Uint8Array(64).fill(3) })],
      ['SNP_POLICY_HOST_DATA', () => run({ hostData: new Uint8Array(32).fill(4) })],
      ['SNP_POLICY_ID_KEY', () => run({ idKeyDigest: new Uint8Array(48).fill(5) })],
      ['SNP_POLICY_EVIDENCE_AGE', () => run({}, {}, { evidenceTime: new Date(NOW.getTime() - 301_000) })],
      ['SNP_POLICY_EVIDENCE_AGE', () => run({}, {}, { evidenceTime: new Date(NOW.getTime() + 60_000) })],
      ['SNP_POLICY_EVIDENCE_TIME_MISSING', () => run({}, {}, { evidenceTime: undefined })],
    ];
    for (const [want, p] of cases) expect(await code(p()), want).toBe(want);
  });

  it('relaxed rules accept what they allow', async () => {
    expect(await code(run({ policy: 0x30000n | (1n << 19n) | (1n << 18n), vmpl: 2 }, { allowDebug: true, allowMigrationAgent: true, vmpls: [0, 2] }))).toBe('VERIFIED');
    expect(await code(run({}, { signingKeys: ['vcek', 'vlek'] }, { vlek: true }))).toBe('VERIFIED');
    expect(await code(run({ policy: 0x20000n, platformInfo: 0x24n }, { allowSmt: false }))).toBe('VERIFIED');
    const { report } = await run({ measurement: new Uint8Array(48).fill(9) }, { measurements: 'any', minTcb: {} });
    expect(report.checks.find((r) => r.id === 'snp.policy.measurement')?.status).toBe('skip');
    expect(report.checks.find((r) => r.id === 'snp.policy.min-tcb')?.status).toBe('skip');
  });

  it('all violations are reported together', async () => {
    const e = (await run({ measurement: new Uint8Array(48).fill(1), vmpl: 3, guestSvn: 0, policy: 0x30000n | (1n << 19n) }).catch((x) => x)) as GmError;
    expect(e.code).toBe('SNP_POLICY_VIOLATIONS');
    const failed = e.report!.checks.filter((r) => r.status === 'fail').map((r) => r.code);
    expect(failed).toEqual(['SNP_POLICY_MEASUREMENT', 'SNP_POLICY_DEBUG', 'SNP_POLICY_VMPL', 'SNP_POLICY_GUEST_SVN']);
    expect(e.report!.verified).toBe(false);
  });

  it('policy: null verifies without appraisal but still checks a caller-computed REPORT_DATA', async () => {
    const r = await sim.vcek.signReport({ reportData: new Uint8Array(64).fill(7) });
    const base = { now: NOW, roots: sim.roots(), vcek: sim.vcek.der, policy: null };
    const ok = await verifySevSnp(r, base);
    expect(ok.report.checks.find((c) => c.id === 'snp.policy')?.status).toBe('skip');
    expect(await code(verifySevSnp(r, { ...base, expectedReportData: new Uint8Array(64) }))).toBe('SNP_POLICY_REPORT_DATA');
    expect(await code(verifySevSnp(r, { ...base, expectedReportData: new Uint8Array(64).fill(7) }))).toBe('VERIFIED');
  });
});

describe('SEV-SNP policy JSON', () => {
  const full = {
    $comment: 'production enclave',
    measurements: ['4d'.repeat(48)],
    allowDebug: false,
    allowSmt: false,
    allowMigrationAgent: false,
    vmpls: [0],
    signingKeys: ['vcek'],
    products: ['Genoa', 'Turin'],
    minTcb: { Genoa: { bootloader: 10, tee: 0, snp: 23, microcode: 84 }, Turin: { fmc: 1, bootloader: 2, tee: 3, snp: 4, microcode: 5 } },
    minGuestSvn: 1,
    reportData: '00'.repeat(64),
    hostData: '00'.repeat(32),
    idKeyDigests: ['00'.repeat(48)],
    maxEvidenceAgeSeconds: 600,
  };

  it('reads every field', () => {
    const p = parseSnpPolicy(full);
    expect(p.measurements).toEqual([M]);
    expect(p).toMatchObject({ allowDebug: false, allowSmt: false, vmpls: [0], signingKeys: ['vcek'], products: ['Genoa', 'Turin'], minGuestSvn: 1, maxEvidenceAgeSeconds: 600 });
    expect(p.minTcb.Turin).toEqual({ fmc: 1, bootloader: 2, tee: 3, snp: 4, microcode: 5 });
    expect(p.minTcb.Genoa?.fmc).toBeUndefined();
    expect(parseSnpPolicy({ measurements: 'any', allowDebug: false })).toMatchObject({ ...DEFAULT_POLICY });
  });

  it('a missing required field is a configuration error', () => {
    for (const k of ['measurements', 'allowDebug']) {
      const doc: Record<string, unknown> = { ...full };
      delete doc[k];
      expect(() => parseSnpPolicy(doc)).toThrow(expect.objectContaining({ code: 'POLICY_MISSING_FIELD', kind: 'config' }));
    }
    expect(() => parseSnpPolicy({ ...full, minTcb: { Genoa: { bootloader: 1, tee: 0, snp: 1 } } })).toThrow(expect.objectContaining({ code: 'POLICY_MISSING_FIELD' }));
    expect(() => parseSnpPolicy({ ...full, minTcb: { Turin: { bootloader: 1, tee: 0, snp: 1, microcode: 1 } } })).toThrow(expect.objectContaining({ code: 'POLICY_MISSING_FIELD' }));
  });

  it('unknown fields, wrong lengths and wrong types are configuration errors', () => {
    const bad: [Record<string, unknown>, string][] = [
      [{ ...full, allowDebugg: true }, 'POLICY_UNKNOWN_FIELD'],
      [{ ...full, minTcb: { Genoa: { ...full.minTcb.Genoa, fmc: 1 } } }, 'POLICY_UNKNOWN_FIELD'],
      [{ ...full, minTcb: { Venice: full.minTcb.Genoa } }, 'POLICY_UNKNOWN_FIELD'],
      [{ ...full, measurements: ['4d'.repeat(47)] }, 'POLICY_INVALID'],
      [{ ...full, measurements: 'all' }, 'POLICY_INVALID'],
      [{ ...full, reportData: '00'.repeat(32) }, 'POLICY_INVALID'],
      [{ ...full, allowDebug: 'no' }, 'POLICY_INVALID'],
      [{ ...full, vmpls: [4] }, 'POLICY_INVALID'],
      [{ ...full, vmpls: [] }, 'POLICY_INVALID'],
      [{ ...full, signingKeys: ['ask'] }, 'POLICY_INVALID'],
      [{ ...full, minGuestSvn: -1 }, 'POLICY_INVALID'],
      [{ ...full, minTcb: { Genoa: { ...full.minTcb.Genoa, snp: 256 } } }, 'POLICY_INVALID'],
    ];
    for (const [doc, c] of bad) expect(() => parseSnpPolicy(doc), JSON.stringify(doc).slice(0, 80)).toThrow(expect.objectContaining({ code: c }));
    expect(() => parseSnpPolicy([])).toThrow(expect.objectContaining({ code: 'POLICY_INVALID' }));
  });
});
