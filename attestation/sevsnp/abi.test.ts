import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { GmError } from '../errors.ts';
import { hasVectors, vector } from '../../test/vectors.ts';
import { REPORT_SIZE, decodeTcb, parseReport, productFromCpuid, signatureP1363 } from './abi.ts';
import { type SimAmd, createSimAmd } from './sim.ts';

function codeOf(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(GmError);
    return (e as GmError).code;
  }
  return 'PARSED';
}

let sim: SimAmd;
let turin: SimAmd;
beforeAll(async () => {
  [sim, turin] = await Promise.all([createSimAmd({ product: 'Genoa' }), createSimAmd({ product: 'Turin' })]);
});

describe('SEV-SNP report parser', () => {
  it('parses v2, v3 and v5 layouts with every field in place', () => {
    for (const version of [2, 3, 5]) {
      const r = parseReport(sim.buildReport({
        version, guestSvn: 7, vmpl: 2, reportData: new Uint8Array(64).fill(0xaa), hostData: new Uint8Array(32).fill(0xbb),
        launchMitVector: 0x11n, currentMitVector: 0x22n, signerInfo: 0b11,
      }));
      expect(r.version).toBe(version);
      expect(r.guestSvn).toBe(7);
      expect(r.vmpl).toBe(2);
      expect(r.reportData.every((b) => b === 0xaa)).toBe(true);
      expect(r.hostData.every((b) => b === 0xbb)).toBe(true);
      expect(r.signerInfo).toEqual({ raw: 3, authorKeyEn: true, maskChipKey: true, signingKey: 'vcek' });
      expect(r.cpuid).toEqual(version >= 3 ? { family: 0x19, model: 0x11, stepping: 1 } : undefined);
      expect(r.launchMitVector).toBe(version >= 5 ? 0x11n : undefined);
      expect(r.currentMitVector).toBe(version >= 5 ? 0x22n : undefined);
      expect(r.reportedTcb).toMatchObject({ bootloader: 10, tee: 0, snp: 23, microcode: 84, fmc: undefined });
      expect(r.currentVersion).toEqual({ major: 1, minor: 55, build: 40 });
      expect(r.policy).toMatchObject({ smt: true, debug: false, migrateMa: false, abiMajor: 0 });
      expect(r.platformInfo).toMatchObject({ smtEnabled: true, tsmeEnabled: false, eccEnabled: true, aliasCheckComplete: true });
    }
  });

  it('decodes Turin TCB_VERSION with FMC first', () => {
    const r = parseReport(turin.buildReport({ version: 5 }));
    expect(r.tcbLayout).toBe('turin');
    expect(r.reportedTcb).toMatchObject({ fmc: 1, bootloader: 2, tee: 3, snp: 4, microcode: 5 });
    expect(decodeTcb(0x0500000004030201n, 'turin')).toMatchObject({ fmc: 1, bootloader: 2, tee: 3, snp: 4, microcode: 5 });
    expect(decodeTcb(0x4405000000000002n, 'milan-genoa')).toMatchObject({ bootloader: 2, tee: 0, snp: 5, microcode: 68 });
  });

  it('maps CPUID family/model to products', () => {
    expect(productFromCpuid({ family: 0x19, model: 0x01, stepping: 1 })).toBe('Milan');
    expect(productFromCpuid({ family: 0x19, model: 0x11, stepping: 1 })).toBe('Genoa');
    expect(productFromCpuid({ family: 0x19, model: 0xa0, stepping: 1 })).toBe('Genoa');
    expect(productFromCpuid({ family: 0x1a, model: 0x02, stepping: 0 })).toBe('Turin');
    expect(productFromCpuid({ family: 0x19, model: 0x21, stepping: 0 })).toBeUndefined();
    expect(productFromCpuid({ family: 0x17, model: 0x31, stepping: 0 })).toBeUndefined();
  });

  it('refuses wrong sizes, unknown versions and signature algorithms with their codes', () => {
    const good = sim.buildReport();
    expect(codeOf(() => parseReport(good.subarray(0, REPORT_SIZE - 1)))).toBe('SNP_REPORT_SIZE');
    expect(codeOf(() => parseReport(new Uint8Array(REPORT_SIZE + 1)))).toBe('SNP_REPORT_SIZE');
    expect(codeOf(() => parseReport(new Uint8Array(0)))).toBe('SNP_REPORT_SIZE');
    for (const v of [0, 1, 4, 6, 0x100]) expect(codeOf(() => parseReport(sim.buildReport({ version: v })))).toBe('SNP_REPORT_VERSION');
    for (const a of [0, 2, 0x100]) expect(codeOf(() => parseReport(sim.buildReport({ signatureAlgo: a })))).toBe('SNP_SIG_ALGO');
  });

  it('refuses every non-zero reserved range and reserved bit with SNP_REPORT_RESERVED', () => {
    const one = Uint8Array.of(1);
    const cases: [string, Parameters<SimAmd['buildReport']>[0]][] = [
      ['policy bit 17 clear', { policy: 0x10000n }],
      ['policy bit 26', { policy: 0x30000n | (1n << 26n) }],
      ['signer info bit 5', { signerInfo: 1 << 5 }],
      ['signing key 2 (reserved)', { signerInfo: 2 << 2 }],
      ['word at 0x4C', { patch: [[0x4c, one]] }],
      ['v2 CPUID bytes', { version: 2, patch: [[0x188, one]] }],
      ['v3 byte 0x18B', { version: 3, patch: [[0x18b, one]] }],
      ['byte 0x1EB', { patch: [[0x1eb, one]] }],
      ['byte 0x1EF', { patch: [[0x1ef, one]] }],
      ['v3 LAUNCH_MIT_VECTOR position', { version: 3, patch: [[0x1f8, one]] }],
      ['v5 byte 0x208', { version: 5, patch: [[0x208, one]] }],
      ['last signed byte', { patch: [[0x29f, one]] }],
      ['high bytes of R', { patch: [[0x2a0 + 48, one]] }],
      ['high bytes of S', { patch: [[0x2e8 + 71, one]] }],
      ['after S', { patch: [[0x330, one]] }],
      ['last byte', { patch: [[REPORT_SIZE - 1, one]] }],
      ['REPORTED_TCB reserved byte', { reportedTcb: 0x541700000001000an }],
      ['CURRENT_TCB reserved byte', { currentTcb: 0x5417000100000000an }],
    ];
    for (const [what, f] of cases) expect(codeOf(() => parseReport(sim.buildReport(f))), what).toBe('SNP_REPORT_RESERVED');
    // Turin's reserved TCB bytes are 4..6 instead.
    expect(codeOf(() => parseReport(turin.buildReport({ reportedTcb: 0x0500010004030201n })))).toBe('SNP_REPORT_RESERVED');
    expect(codeOf(() => parseReport(turin.buildReport({ reportedTcb: 0x0500000004030201n })))).toBe('PARSED');
    // Signing key 7 (none) parses; the verifier refuses it.
    expect(parseReport(sim.buildReport({ signerInfo: 7 << 2 })).signerInfo.signingKey).toBe('none');
  });

  it('converts little-endian R and S to P1363', () => {
    const b = sim.buildReport();
    b[0x2a0] = 0x01; // least significant byte of R
    b[0x2a0 + 47] = 0x02; // most significant
    b[0x2e8] = 0x03;
    const p = signatureP1363(parseReport(b));
    expect(p[47]).toBe(0x01);
    expect(p[0]).toBe(0x02);
    expect(p[95]).toBe(0x03);
  });

  it('property: random and truncated input throws only GmError', () => {
    fc.assert(fc.property(fc.uint8Array({ minLength: 0, maxLength: 1300 }), (b) => {
      try {
        parseReport(b);
      } catch (e) {
        return e instanceof GmError;
      }
      return b.length === REPORT_SIZE;
    }), { numRuns: 300 });
    const good = sim.buildReport({ version: 5 });
    fc.assert(fc.property(fc.nat(REPORT_SIZE), (n) => codeOf(() => parseReport(good.subarray(0, n))) === (n === REPORT_SIZE ? 'PARSED' : 'SNP_REPORT_SIZE')), { numRuns: 200 });
  });

  it('property: a valid report with random bytes overwritten parses or throws a GmError with an SNP code', () => {
    const good = sim.buildReport({ version: 3 });
    fc.assert(fc.property(fc.array(fc.tuple(fc.nat(REPORT_SIZE - 1), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 8 }), (edits) => {
      const b = good.slice();
      for (const [o, v] of edits) b[o] = v;
      const c = codeOf(() => parseReport(b));
      return c === 'PARSED' || c.startsWith('SNP_');
    }), { numRuns: 500 });
  });
});

describe.skipIf(!hasVectors)('SEV-SNP parser over real reports', () => {
  it('truncations of a real report are SNP_REPORT_SIZE', () => {
    const good = vector('sev-snp/azure-genoa/genoa-hcl-snp-report.bin');
    for (const n of [0, 1, 0x2a0, REPORT_SIZE - 1]) expect(codeOf(() => parseReport(good.subarray(0, n)))).toBe('SNP_REPORT_SIZE');
    expect(parseReport(good).version).toBe(3);
  });
});
