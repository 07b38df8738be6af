/**
 * Real SEV-SNP evidence (test/vectors/sev-snp, PROVENANCE.md §1) through verifySevSnp with the pinned AMD
 * anchors, and the negative cases built from it: byte flips over the signed region, a flipped certificate byte,
 * the wrong product's chain, a VLEK report with a VCEK, validity, trustee's invalid VCEKs.
 */
import { describe, expect, it } from 'vitest';
import { hex } from '../bytes.ts';
import { GmError } from '../errors.ts';
import { parseCertificate } from '../x509/cert.ts';
import { verifyChain } from '../x509/chain.ts';
import { certificatesFrom } from '../x509/pem.ts';
import { binaryOrHex } from '../../cli/io.ts';
import { hasVectors, trustStore, vector } from '../../test/vectors.ts';
import { SIGNED_LENGTH, parseReport } from './abi.ts';
import { type VerifySevSnpOptions, verifySevSnp } from './index.ts';

const D = 'sev-snp/';

interface Case {
  readonly name: string;
  readonly report: string;
  readonly cert: string;
  readonly now: string;
  readonly expect: Record<string, unknown>;
  readonly prefixes?: Record<string, [string, string]>;
}

const CASES: readonly Case[] = [
  {
    name: 'go-sev-guest attestation.bin (Milan, v2)', report: 'go-sev-guest/attestation.bin', cert: 'go-sev-guest/vcek.testcer', now: '2022-09-25T00:00:00Z',
    expect: {
      version: 2, product: 'Milan', signingKey: 'vcek', vmpl: 0, firmware: '1.49.3',
      measurement: 'b07af9620f3b839b47996422ddec6058338951d984e312115131ea82705eaf5b6bdf8a9ece31a5a608eb0cf2e4872b01',
      reportData: `0102030405${'00'.repeat(59)}`,
    },
    prefixes: { chipId: ['3ac3fe21', '8b006b5d'] },
  },
  {
    name: 'virtee milan report (hex text)', report: 'virtee-sev/report_milan.hex', cert: 'virtee-sev/vcek_milan.der', now: '2024-06-01T00:00:00Z',
    expect: { version: 2, product: 'Milan', signingKey: 'vcek', vmpl: 0, measurement: '7a1e5c266c0108dbc9bb94fa926951320940915d0aafb42464bd88b579ea158d3e1a0dc39b2c60bd95b9c480cd81841f' },
    prefixes: { chipId: ['d49554ec', '4d541eb6'], reportData: ['d447b55d', '6a93ebfd'] },
  },
  {
    name: 'trustee test-report (Milan, v2)', report: 'trustee/test-report.bin', cert: 'trustee/test-vcek.der', now: '2024-06-01T00:00:00Z',
    expect: { version: 2, product: 'Milan', signingKey: 'vcek', vmpl: 0, guestSvn: 4, measurement: 'a1f3930413247bb38cfc171579ea3c12d5fe4901f0c792f63fd75d98f1ef827c23500644e0e692e6be917f9050d3d38c' },
    prefixes: { chipId: ['c38427a3', 'e477524e'], reportData: ['ec6c52d7', '0'.repeat(64)], idKeyDigest: ['0356215882', 'af7a44a3'] },
  },
  {
    name: 'trustee VLEK report (AWS Milan, v3)', report: 'trustee/test-vlek-report.bin', cert: 'trustee/test-vlek.der', now: '2025-06-01T00:00:00Z',
    expect: { version: 3, product: 'Milan', signingKey: 'vlek', vmpl: 1, chipId: '00'.repeat(64), measurement: '8922ebbdd00ec2c541f36a6e7a82a8773a7accb451ed67bc94e740dbe92c93c4e8c9af857f5ceeb5a493df2a570d7bf0' },
    prefixes: { reportData: ['819770b7', 'a7bc27ca'] },
  },
  {
    name: 'Azure Genoa (v3)', report: 'azure-genoa/genoa-hcl-snp-report.bin', cert: 'azure-genoa/vcek-genoa.pem', now: '2026-01-01T00:00:00Z',
    expect: { version: 3, product: 'Genoa', signingKey: 'vcek', vmpl: 0, guestSvn: 65547, firmware: '1.55.40', measurement: 'f57dc09a507c6ecd82369bffb600f0003792f4d99bc26e985ec0c266fc34faf3706faf814c9e61065768a6ff917c89ae' },
    prefixes: { chipId: ['0506ffba', 'aaea4ad1'], reportData: ['b581f12e', '0'.repeat(64)], idKeyDigest: ['942fd93e', '56af4177'] },
  },
];

const TCB: Record<string, { reported: string; bl: number; tee: number; snp: number; ucode: number; policy: string; current?: string }> = {
  'go-sev-guest/attestation.bin': { reported: '0x4405000000000002', bl: 2, tee: 0, snp: 5, ucode: 68, policy: '0xb0000' },
  'virtee-sev/report_milan.hex': { reported: '0x7308000000000003', bl: 3, tee: 0, snp: 8, ucode: 115, policy: '0x30000' },
  'trustee/test-report.bin': { reported: '0x7308000000000003', bl: 3, tee: 0, snp: 8, ucode: 115, policy: '0x3001f', current: '0xce08000000000003' },
  'trustee/test-vlek-report.bin': { reported: '0xd918000000000004', bl: 4, tee: 0, snp: 24, ucode: 217, policy: '0x30000' },
  'azure-genoa/genoa-hcl-snp-report.bin': { reported: '0x541700000000000a', bl: 10, tee: 0, snp: 23, ucode: 84, policy: '0x3001f' },
};

const reportBytes = (rel: string) => binaryOrHex(vector(D + rel));
async function opts(c: Case, extra: Partial<VerifySevSnpOptions> = {}): Promise<VerifySevSnpOptions> {
  return { now: new Date(c.now), trust: await trustStore(), vcek: vector(D + c.cert), policy: null, ...extra };
}
async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(GmError);
    expect((e as GmError).report?.verified).toBe(false);
    return (e as GmError).code;
  }
  return 'VERIFIED';
}

describe.skipIf(!hasVectors)('SEV-SNP real reports', () => {
  for (const c of CASES) {
    it(`${c.name} verifies and yields the PROVENANCE values`, async () => {
      const { claims, report } = await verifySevSnp(reportBytes(c.report), await opts(c));
      expect(report.verified).toBe(true);
      expect(claims).toMatchObject(c.expect);
      for (const [k, [pre, suf]] of Object.entries(c.prefixes ?? {})) {
        const v = (claims as unknown as Record<string, string>)[k]!;
        expect(v.startsWith(pre) && v.endsWith(suf), `${k} = ${v}`).toBe(true);
      }
      const t = TCB[c.report]!;
      expect(claims.reportedTcb).toEqual({ raw: t.reported, bootloader: t.bl, tee: t.tee, snp: t.snp, microcode: t.ucode });
      expect(claims.policy.raw).toBe(t.policy);
      if (t.current) expect(claims.currentTcb.raw).toBe(t.current);
      expect(claims.anchor).toMatch(/^pinned ARK-/);
      const ids = report.checks.map((r) => `${r.id}:${r.status}`);
      expect(ids).toContain('snp.report.signature:pass');
      expect(ids).toContain('snp.chain:pass');
      expect(ids).toContain(c.expect.signingKey === 'vlek' ? 'snp.cert.csp:pass' : 'snp.cert.hwid:pass');
      expect(ids).toContain('snp.cert.tcb:pass');
    });
  }

  it('the VLEK carries the AWS csp_id; v3 CPUID fields decode', async () => {
    const c = CASES[3]!;
    const { claims, parsed } = await verifySevSnp(reportBytes(c.report), await opts(c));
    expect(claims.cspId).toContain('cc-us-east-2.amazonaws.com');
    expect(parsed.cpuid).toEqual({ family: 0x19, model: 0x01, stepping: 1 });
    expect(parsed.signerInfo.raw).toBe(4);
  });

  it('the default policy refuses go-sev-guest attestation.bin: its DEBUG bit is set', async () => {
    const c = CASES[0]!;
    const e = (await verifySevSnp(reportBytes(c.report), await opts(c, { policy: undefined })).catch((x) => x)) as GmError;
    expect(e.code).toBe('SNP_POLICY_DEBUG');
    expect(e.report?.checks.find((r) => r.id === 'snp.policy.debug')?.status).toBe('fail');
  });

  /**
   * Every byte of [0, 0x2A0) flipped (XOR 0x01) in a v2 and a v3 report. The signature is checked before any
   * field is compared with the certificate, so a flip that still parses fails the report signature. A flip the
   * parser refuses gets the parser's code:
   *   0x00        v2: VERSION 2→3, a known version whose CPUID bytes read zero → SNP_REPORT_SIGNATURE
   *               v3: VERSION 3→2, so the CPUID bytes now lie in v2's reserved range → SNP_REPORT_RESERVED
   *   0x01..0x03  VERSION ≥ 0x100 → SNP_REPORT_VERSION
   *   0x0C..0x0F  GUEST POLICY bits 32..63, reserved → SNP_REPORT_RESERVED (0x0A sets SMT, 0x0B CIPHERTEXT_HIDING: valid)
   *   0x34..0x37  SIGNATURE_ALGO ≠ 1 → SNP_SIG_ALGO
   *   0x49..0x4B  SIGNER_INFO bits 8..31, reserved → SNP_REPORT_RESERVED (0x48 sets AUTHOR_KEY_EN: valid)
   *   0x4C..0x4F  reserved word → SNP_REPORT_RESERVED
   *   bytes 2..5 of CURRENT/REPORTED/COMMITTED/LAUNCH_TCB (reserved on Milan/Genoa) → SNP_REPORT_RESERVED
   *   0x188..0x19F (v2) / 0x18B..0x19F (v3), 0x1EB, 0x1EF, 0x1F8..0x29F (v2/v3) → SNP_REPORT_RESERVED
   *   everything else → SNP_REPORT_SIGNATURE
   */
  function expectedFlipCode(version: number, off: number): string {
    const tcbOffsets = [0x38, 0x180, 0x1e0, 0x1f0];
    if (off === 0) return version === 2 ? 'SNP_REPORT_SIGNATURE' : 'SNP_REPORT_RESERVED';
    if (off >= 0x01 && off < 0x04) return 'SNP_REPORT_VERSION';
    if (off >= 0x34 && off < 0x38) return 'SNP_SIG_ALGO';
    if (off >= 0x0c && off < 0x10) return 'SNP_REPORT_RESERVED';
    if (off >= 0x49 && off < 0x50) return 'SNP_REPORT_RESERVED';
    if (tcbOffsets.some((t) => off >= t + 2 && off < t + 6)) return 'SNP_REPORT_RESERVED';
    if (off >= (version >= 3 ? 0x18b : 0x188) && off < 0x1a0) return 'SNP_REPORT_RESERVED';
    if (off === 0x1eb || off === 0x1ef || (off >= 0x1f8 && off < SIGNED_LENGTH)) return 'SNP_REPORT_RESERVED';
    return 'SNP_REPORT_SIGNATURE';
  }

  for (const c of [CASES[0]!, CASES[4]!]) {
    it(`each flipped signed byte of ${c.name} is rejected with the code its table names`, async () => {
      const good = reportBytes(c.report);
      const version = parseReport(good).version;
      const o = await opts(c);
      const got: Record<string, number> = {};
      for (let off = 0; off < SIGNED_LENGTH; off++) {
        const bad = good.slice();
        bad[off]! ^= 0x01;
        const want = expectedFlipCode(version, off);
        const have = await code(verifySevSnp(bad, o));
        if (have !== want) throw new Error(`offset 0x${off.toString(16)}: expected ${want}, got ${have}`);
        got[have] = (got[have] ?? 0) + 1;
      }
      expect(Object.values(got).reduce((a, b) => a + b, 0)).toBe(SIGNED_LENGTH);
      expect(got.SNP_REPORT_SIGNATURE).toBe(version === 2 ? 444 : 446);
      expect(got.SNP_SIG_ALGO).toBe(4);
      expect(got.SNP_REPORT_VERSION).toBe(3);
    });
  }

  it('a flipped signature byte (R, S) is SNP_REPORT_SIGNATURE', async () => {
    const c = CASES[4]!;
    for (const off of [0x2a0, 0x2a0 + 47, 0x2e8, 0x2e8 + 47]) {
      const bad = reportBytes(c.report).slice();
      bad[off]! ^= 0x01;
      expect(await code(verifySevSnp(bad, await opts(c)))).toBe('SNP_REPORT_SIGNATURE');
    }
  });

  it('a flipped byte in the VCEK signature, TBS or key is CERT_SIGNATURE (the chain is checked before the key is used)', async () => {
    const c = CASES[4]!;
    const der = certificatesFrom(vector(D + c.cert))[0]!;
    const sigFlip = der.slice();
    sigFlip[sigFlip.length - 5]! ^= 0x01;
    expect(await code(verifySevSnp(reportBytes(c.report), await opts(c, { vcek: sigFlip })))).toBe('CERT_SIGNATURE');
    // A TBS byte (the subject's CN letter) changes what the ASK signed.
    const cert = parseCertificate(der);
    const cnAt = findBytes(der, new TextEncoder().encode('SEV-VCEK'));
    const tbsFlip = der.slice();
    tbsFlip[cnAt + 4]! ^= 0x01;
    expect(await code(verifySevSnp(reportBytes(c.report), await opts(c, { vcek: tbsFlip })))).toBe('CERT_SIGNATURE');
    const keyAt = findBytes(der, cert.spki.publicKey) + 20;
    const keyFlip = der.slice();
    keyFlip[keyAt]! ^= 0x01;
    // The key is part of what the ASK signed: the altered certificate is refused before its key is imported.
    expect(await code(verifySevSnp(reportBytes(c.report), await opts(c, { vcek: keyFlip })))).toBe('CERT_SIGNATURE');
  });

  it("the wrong product's chain is refused", async () => {
    const t = await trustStore();
    const c = CASES[4]!; // Genoa VCEK under the Milan ARK/ASK
    expect(await code(verifySevSnp(reportBytes(c.report), await opts(c, { trust: undefined, roots: { ark: t.get('amd-ark', 'Milan'), ask: t.get('amd-ask', 'Milan') } }))))
      .toBe('CERT_ISSUER_MISMATCH');
    const m = CASES[2]!; // Milan VCEK under the Genoa chain
    expect(await code(verifySevSnp(reportBytes(m.report), await opts(m, { trust: undefined, roots: { ark: t.get('amd-ark', 'Genoa'), ask: t.get('amd-ask', 'Genoa') } }))))
      .toBe('CERT_ISSUER_MISMATCH');
    // The right ASK presented under the wrong ARK: the ASK's issuer is not that root.
    expect(await code(verifySevSnp(reportBytes(m.report), await opts(m, { trust: undefined, roots: { ark: t.get('amd-ark', 'Genoa'), ask: t.get('amd-ask', 'Milan') } }))))
      .toBe('CERT_UNTRUSTED_ROOT');
  });

  it('a VLEK report with a VCEK is SNP_SIGNING_KEY_MISMATCH, and a VCEK report with the VLEK too', async () => {
    const v = CASES[3]!;
    expect(await code(verifySevSnp(reportBytes(v.report), await opts(v, { vcek: vector(D + 'trustee/test-vcek.der') })))).toBe('SNP_SIGNING_KEY_MISMATCH');
    const m = CASES[2]!;
    expect(await code(verifySevSnp(reportBytes(m.report), await opts(m, { vcek: vector(D + 'trustee/test-vlek.der') })))).toBe('SNP_SIGNING_KEY_MISMATCH');
  });

  it('a VCEK outside its validity at now is CERT_NOT_YET_VALID / CERT_EXPIRED', async () => {
    const c = CASES[4]!;
    expect(await code(verifySevSnp(reportBytes(c.report), await opts(c, { now: new Date('2025-01-23T00:00:00Z') })))).toBe('CERT_NOT_YET_VALID');
    expect(await code(verifySevSnp(reportBytes(c.report), await opts(c, { now: new Date('2032-02-01T00:00:00Z') })))).toBe('CERT_EXPIRED');
    const v = CASES[3]!; // the VLEK lives one year only
    expect(await code(verifySevSnp(reportBytes(v.report), await opts(v, { now: new Date('2025-12-11T00:00:00Z') })))).toBe('CERT_EXPIRED');
    // Warm cache, then a now outside the window: the cached chain must not be reused.
    await verifySevSnp(reportBytes(c.report), await opts(c));
    expect(await code(verifySevSnp(reportBytes(c.report), await opts(c, { now: new Date('2033-01-01T00:00:00Z') })))).toBe('CERT_EXPIRED');
  });

  it("both of trustee's invalid VCEKs are refused with CERT_SIGNATURE (the ASK did not sign them)", async () => {
    const t = await trustStore();
    const c = CASES[2]!;
    for (const f of ['trustee/test-vcek-invalid-legacy.der', 'trustee/test-vcek-invalid-new.der']) {
      const e1 = (await verifySevSnp(reportBytes(c.report), await opts(c, { vcek: vector(D + f) })).catch((x) => x)) as GmError;
      expect(e1.code, f).toBe('CERT_SIGNATURE');
      expect(e1.report?.checks.find((r) => r.id === 'snp.chain')?.status, f).toBe('fail');
      // Refused before the report signature is even looked at.
      expect(e1.report?.checks.some((r) => r.id === 'snp.report.signature'), f).toBe(false);
      // The chain alone: the ASK's RSA-PSS signature over each does not verify.
      const e = await verifyChain([parseCertificate(vector(D + f)), t.get('amd-ask', 'Milan')], {
        now: new Date(c.now), roots: [t.get('amd-ark', 'Milan')], algorithms: ['rsa-pss-sha384'],
      }).catch((x) => x);
      expect((e as GmError).code, f).toBe('CERT_SIGNATURE');
    }
  });

  it('without any trust or roots the result is a configuration error', async () => {
    const c = CASES[4]!;
    expect(await code(verifySevSnp(reportBytes(c.report), await opts(c, { trust: undefined })))).toBe('SNP_NO_TRUST');
  });

  it('the Turin VCEK (8-byte hwID) parses, and chains to the pinned Turin ARK', async () => {
    const t = await trustStore();
    const cert = parseCertificate(vector(D + 'virtee-sev/vcek_turin.der'));
    const { readAmdExtensions } = await import('./extensions.ts');
    const ext = readAmdExtensions(cert);
    expect(ext.product).toBe('Turin');
    expect(ext.hwId?.length).toBe(8);
    expect(hex(ext.hwId!)).toBe('1e550a8ee5cf9f4d');
    expect(ext.fmcSpl).toBe(0);
    await verifyChain([cert, t.get('amd-ask', 'Turin')], { now: new Date('2025-06-01Z'), roots: [t.get('amd-ark', 'Turin')], algorithms: ['rsa-pss-sha384'] });
  });
});

function findBytes(hay: Uint8Array, needle: Uint8Array): number {
  outer: for (let i = 0; i + needle.length <= hay.length; i++) {
    for (let j = 0; j < needle.length; j++) if (hay[i + j] !== needle[j]) continue outer;
    return i;
  }
  throw new Error('not found');
}
