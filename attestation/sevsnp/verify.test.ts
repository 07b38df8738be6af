/**
 * The verify layer against the simulated AMD signer: every extension, chain, key and revocation check, one field
 * changed at a time, each with its exact code.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { concat } from '../bytes.ts';
import { GmError } from '../errors.ts';
import { verifySevSnp, type VerifySevSnpOptions } from './index.ts';
import { AMD_OID } from './extensions.ts';
import { type SimAmd, type SimEndorsement, createSimAmd } from './sim.ts';

const NOW = new Date('2026-01-01T00:00:00Z');
let genoa: SimAmd;
let turin: SimAmd;
let other: SimAmd;
beforeAll(async () => {
  [genoa, turin, other] = await Promise.all([createSimAmd({ product: 'Genoa' }), createSimAmd({ product: 'Turin' }), createSimAmd({ product: 'Genoa' })]);
});

function opts(sim: SimAmd, e: SimEndorsement, extra: Partial<VerifySevSnpOptions> = {}): VerifySevSnpOptions {
  return { now: NOW, roots: sim.roots(e.kind), vcek: e.der, policy: null, ...extra };
}
async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'VERIFIED';
  } catch (e) {
    if (!(e instanceof GmError)) throw e;
    expect(e.report?.verified).toBe(false);
    return e.code;
  }
}

describe('SEV-SNP verify with a simulated AMD', () => {
  it('accepts VCEK and VLEK reports of Genoa and Turin (v2, v3, v5)', async () => {
    for (const sim of [genoa, turin]) {
      for (const e of [sim.vcek, sim.vlek]) {
        for (const version of sim.product === 'Turin' ? [3, 5] : [2, 3, 5]) {
          const { claims, report } = await verifySevSnp(await e.signReport({ version }), opts(sim, e));
          expect(report.verified).toBe(true);
          expect(claims).toMatchObject({ product: sim.product, signingKey: e.kind, version });
          expect(claims.anchor).toContain('(sim)');
        }
      }
    }
  });

  it('hwID must equal CHIP_ID (SNP_HWID_MISMATCH); Turin compares 8 bytes and wants the rest zero', async () => {
    const chip = genoa.chipId.slice();
    chip[63]! ^= 1;
    expect(await code(verifySevSnp(await genoa.vcek.signReport({ chipId: chip }), opts(genoa, genoa.vcek)))).toBe('SNP_HWID_MISMATCH');
    const t1 = turin.chipId.slice();
    t1[7]! ^= 1;
    expect(await code(verifySevSnp(await turin.vcek.signReport({ chipId: t1 }), opts(turin, turin.vcek)))).toBe('SNP_HWID_MISMATCH');
    const t2 = turin.chipId.slice();
    t2[8] = 1;
    expect(await code(verifySevSnp(await turin.vcek.signReport({ chipId: t2 }), opts(turin, turin.vcek)))).toBe('SNP_HWID_MISMATCH');
  });

  it('a masked CHIP_ID skips the hwID comparison, visibly; an unmasked or inconsistent one does not', async () => {
    const { report } = await verifySevSnp(await genoa.vcek.signReport({ signerInfo: 2, chipId: new Uint8Array(64) }), opts(genoa, genoa.vcek));
    expect(report.checks.find((r) => r.id === 'snp.cert.hwid')?.status).toBe('skip');
    // Zero without the MASK_CHIP_KEY bit, or the bit with a non-zero CHIP_ID: compared, and refused.
    expect(await code(verifySevSnp(await genoa.vcek.signReport({ signerInfo: 0, chipId: new Uint8Array(64) }), opts(genoa, genoa.vcek)))).toBe('SNP_HWID_MISMATCH');
    const other64 = genoa.chipId.slice();
    other64[0]! ^= 1;
    expect(await code(verifySevSnp(await genoa.vcek.signReport({ signerInfo: 2, chipId: other64 }), opts(genoa, genoa.vcek)))).toBe('SNP_HWID_MISMATCH');
  });

  it('accepts the hwID DER-wrapped in an OCTET STRING (KDS "new" format), at the exact length only', async () => {
    const wrapped = await genoa.issueEndorsement('vcek', { hwId: concat(Uint8Array.of(0x04, 0x40), genoa.chipId) });
    expect(await code(verifySevSnp(await wrapped.signReport(), opts(genoa, wrapped)))).toBe('VERIFIED');
    const short = await genoa.issueEndorsement('vcek', { hwId: genoa.chipId.subarray(0, 63) });
    expect(await code(verifySevSnp(await short.signReport(), opts(genoa, short)))).toBe('SNP_CERT_EXTENSION');
    const turin64 = await turin.issueEndorsement('vcek', { hwId: new Uint8Array(64) });
    expect(await code(verifySevSnp(await turin64.signReport(), opts(turin, turin64)))).toBe('SNP_CERT_EXTENSION');
  });

  it('each SPL must equal REPORTED_TCB (SNP_TCB_MISMATCH), fmc too on Turin', async () => {
    const base = genoa.tcb;
    for (const k of ['bootloader', 'tee', 'snp', 'microcode'] as const) {
      const e = await genoa.issueEndorsement('vcek', { tcb: { ...base, [k]: base[k] + 1 } });
      expect(await code(verifySevSnp(await e.signReport(), opts(genoa, e))), k).toBe('SNP_TCB_MISMATCH');
    }
    const tf = await turin.issueEndorsement('vcek', { tcb: { ...turin.tcb, fmc: (turin.tcb.fmc ?? 0) + 1 } });
    expect(await code(verifySevSnp(await tf.signReport(), opts(turin, tf)))).toBe('SNP_TCB_MISMATCH');
    // The report side: a REPORTED_TCB the VCEK was not issued for.
    expect(await code(verifySevSnp(await genoa.vcek.signReport({ reportedTcb: { ...base, snp: base.snp + 1 } }), opts(genoa, genoa.vcek)))).toBe('SNP_TCB_MISMATCH');
  });

  it('product: CPUID vs certificate name (SNP_PRODUCT_MISMATCH), unknown names and families (SNP_PRODUCT_UNKNOWN)', async () => {
    const milanName = await genoa.issueEndorsement('vcek', { productName: 'Milan-B0' });
    expect(await code(verifySevSnp(await milanName.signReport(), opts(genoa, milanName)))).toBe('SNP_PRODUCT_MISMATCH');
    expect(await code(verifySevSnp(await genoa.vcek.signReport({ cpuid: { family: 0x19, model: 0x01, stepping: 1 } }), opts(genoa, genoa.vcek)))).toBe('SNP_PRODUCT_MISMATCH');
    expect(await code(verifySevSnp(await genoa.vcek.signReport({ cpuid: { family: 0x17, model: 0x31, stepping: 0 } }), opts(genoa, genoa.vcek)))).toBe('SNP_PRODUCT_UNKNOWN');
    const venice = await genoa.issueEndorsement('vcek', { productName: 'Venice' });
    expect(await code(verifySevSnp(await venice.signReport({ version: 2 }), opts(genoa, venice)))).toBe('SNP_PRODUCT_UNKNOWN');
    // v2 has no CPUID: the certificate names the product.
    const { claims } = await verifySevSnp(await genoa.vcek.signReport({ version: 2 }), opts(genoa, genoa.vcek));
    expect(claims.product).toBe('Genoa');
  });

  it('missing or malformed AMD extensions are SNP_CERT_EXTENSION', async () => {
    for (const oid of [AMD_OID.productName, AMD_OID.blSpl, AMD_OID.teeSpl, AMD_OID.snpSpl, AMD_OID.ucodeSpl, AMD_OID.structVersion, AMD_OID.hwId]) {
      const e = await genoa.issueEndorsement('vcek', { omit: [oid] });
      expect(await code(verifySevSnp(await e.signReport(), opts(genoa, e))), oid).toBe('SNP_CERT_EXTENSION');
    }
    const noFmc = await turin.issueEndorsement('vcek', { omit: [AMD_OID.fmcSpl] });
    expect(await code(verifySevSnp(await noFmc.signReport(), opts(turin, noFmc)))).toBe('SNP_CERT_EXTENSION');
    const noCsp = await genoa.issueEndorsement('vlek', { omit: [AMD_OID.cspId] });
    expect(await code(verifySevSnp(await noCsp.signReport(), opts(genoa, noCsp)))).toBe('SNP_CERT_EXTENSION');
  });

  it('a P-256 endorsement key is refused before use (SNP_CERT_KEY)', async () => {
    const p256 = await genoa.issueEndorsement('vcek', { curve: 'P-256' });
    expect(await code(verifySevSnp(await genoa.vcek.signReport(), opts(genoa, p256)))).toBe('SNP_CERT_KEY');
  });

  it('a correctly signed VCEK whose key is not a P-384 point: the chain passes, the key is refused (SNP_CERT_KEY)', async () => {
    const good = (await import('../x509/cert.ts')).parseCertificate(genoa.vcek.der).spki.raw;
    const spki = good.slice();
    spki[spki.length - 1]! ^= 0x01; // last byte of Y: (almost surely) no longer on the curve
    const bad = await genoa.issueEndorsement('vcek', { spki });
    const e = (await verifySevSnp(await genoa.vcek.signReport(), opts(genoa, bad)).catch((x) => x)) as GmError;
    expect(e.code).toBe('SNP_CERT_KEY');
    expect(e.report?.checks.find((r) => r.id === 'snp.chain')?.status).toBe('pass');
    expect(e.report?.checks.find((r) => r.id === 'snp.report.signature')?.status).toBe('fail');
  });

  it('the chain is verified before the report signature: a VCEK from another ASK fails as a certificate, not as a report', async () => {
    const e = (await verifySevSnp(await other.vcek.signReport({ chipId: genoa.chipId }), opts(genoa, other.vcek)).catch((x) => x)) as GmError;
    expect(e.code).toBe('CERT_SIGNATURE');
    const ids = e.report!.checks.map((r) => `${r.id}:${r.status}`);
    expect(ids.slice(-2)).toEqual(['snp.anchors:pass', 'snp.chain:fail']);
  });

  it('signing key: none (SNP_SIGNING_KEY_NONE), kind vs certificate (SNP_SIGNING_KEY_MISMATCH)', async () => {
    expect(await code(verifySevSnp(await genoa.vcek.signReport({ signerInfo: 7 << 2 }), opts(genoa, genoa.vcek)))).toBe('SNP_SIGNING_KEY_NONE');
    expect(await code(verifySevSnp(await genoa.vlek.signReport({ signerInfo: 0 }), opts(genoa, genoa.vlek)))).toBe('SNP_SIGNING_KEY_MISMATCH');
    expect(await code(verifySevSnp(await genoa.vlek.signReport(), { ...opts(genoa, genoa.vlek), vcek: genoa.vcek.der }))).toBe('SNP_SIGNING_KEY_MISMATCH');
  });

  it('report signed by another key is SNP_REPORT_SIGNATURE', async () => {
    expect(await code(verifySevSnp(await other.vcek.signReport({ chipId: genoa.chipId }), opts(genoa, genoa.vcek)))).toBe('SNP_REPORT_SIGNATURE');
  });

  it('a pluggable P-384 verifier (node:crypto) gives the same outcomes, and is never handed a key that is not P-384', async () => {
    const { createPublicKey, verify } = await import('node:crypto');
    let calls = 0;
    const p384Verifier = (spki: Uint8Array, data: Uint8Array, sig: Uint8Array) => {
      calls++;
      return verify('sha384', data, { key: createPublicKey({ key: Buffer.from(spki), format: 'der', type: 'spki' }), dsaEncoding: 'ieee-p1363' }, sig);
    };
    expect(await code(verifySevSnp(await genoa.vcek.signReport(), opts(genoa, genoa.vcek, { p384Verifier })))).toBe('VERIFIED');
    expect(await code(verifySevSnp(await other.vcek.signReport({ chipId: genoa.chipId }), opts(genoa, genoa.vcek, { p384Verifier })))).toBe('SNP_REPORT_SIGNATURE');
    expect(calls).toBe(2);
    const p256 = await genoa.issueEndorsement('vcek', { curve: 'P-256' });
    expect(await code(verifySevSnp(await genoa.vcek.signReport(), opts(genoa, p256, { p384Verifier })))).toBe('SNP_CERT_KEY');
    expect(calls).toBe(2); // refused before the key was used
    const spki = (await import('../x509/cert.ts')).parseCertificate(genoa.vcek.der).spki.raw.slice();
    spki[spki.length - 1]! ^= 0x01;
    const offCurve = await genoa.issueEndorsement('vcek', { spki });
    expect(await code(verifySevSnp(await genoa.vcek.signReport(), opts(genoa, offCurve, { p384Verifier })))).toBe('SNP_CERT_KEY');
  });

  it('chain: another AMD root (CERT_ISSUER_MISMATCH / CERT_SIGNATURE), VLEK under the ASK, validity', async () => {
    // Same names, different keys: the sims name their ARKs alike, so the path builds and the signature fails.
    expect(await code(verifySevSnp(await genoa.vcek.signReport(), opts(genoa, genoa.vcek, { roots: other.roots() })))).toBe('CERT_SIGNATURE');
    expect(await code(verifySevSnp(await genoa.vcek.signReport(), opts(genoa, genoa.vcek, { roots: turin.roots() })))).toBe('CERT_ISSUER_MISMATCH');
    expect(await code(verifySevSnp(await genoa.vlek.signReport(), opts(genoa, genoa.vlek, { roots: genoa.roots('vcek') })))).toBe('CERT_ISSUER_MISMATCH');
    const old = await genoa.issueEndorsement('vcek', { notBefore: new Date('2020-01-01Z'), notAfter: new Date('2025-01-01Z') });
    expect(await code(verifySevSnp(await old.signReport(), opts(genoa, old)))).toBe('CERT_EXPIRED');
    const future = await genoa.issueEndorsement('vcek', { notBefore: new Date('2027-01-01Z') });
    expect(await code(verifySevSnp(await future.signReport(), opts(genoa, future)))).toBe('CERT_NOT_YET_VALID');
  });

  it('revocation: ASK-signed CRL revoking the VCEK, ARK CRL revoking the ASK, stale and foreign CRLs', async () => {
    const r = await genoa.vcek.signReport();
    expect(await code(verifySevSnp(r, opts(genoa, genoa.vcek, { crl: await genoa.crl([0], { issuer: 'ask' }) })))).toBe('CERT_REVOKED');
    expect(await code(verifySevSnp(r, opts(genoa, genoa.vcek, { crl: await genoa.crl([2]) })))).toBe('CERT_REVOKED');
    const ok = await verifySevSnp(r, opts(genoa, genoa.vcek, { crl: await genoa.crl([99]) }));
    expect(ok.claims.revocationChecked).toBe(true);
    expect(ok.report.checks.find((c) => c.id === 'snp.crl')?.status).toBe('pass');
    const stale = await genoa.crl([], { thisUpdate: new Date('2024-01-01Z'), nextUpdate: new Date('2025-01-01Z') });
    expect(await code(verifySevSnp(r, opts(genoa, genoa.vcek, { crl: stale })))).toBe('CRL_EXPIRED');
    expect(await code(verifySevSnp(r, opts(genoa, genoa.vcek, { crl: await turin.crl([]) })))).toBe('CRL_ISSUER_MISMATCH');
    expect(await code(verifySevSnp(r, opts(genoa, genoa.vcek, { crl: await other.crl([]) })))).toBe('CRL_SIGNATURE');
    const none = await verifySevSnp(r, opts(genoa, genoa.vcek));
    expect(none.report.checks.find((c) => c.id === 'snp.crl')?.status).toBe('skip');
    expect(await code(verifySevSnp(r, opts(genoa, genoa.vcek, { requireRevocation: true })))).toBe('SNP_CRL_MISSING');
    expect(await code(verifySevSnp(r, opts(genoa, genoa.vcek, { requireRevocation: true, crl: await genoa.crl([]) })))).toBe('VERIFIED');
  });

  it('collateral getter: supplies the VCEK and CRL when absent; nothing supplied is SNP_CERT_MISSING (collateral)', async () => {
    const r = await genoa.vcek.signReport();
    const asked: string[] = [];
    const crl = await genoa.crl([]);
    const res = await verifySevSnp(r, { now: NOW, roots: genoa.roots(), policy: null, collateral: async (req) => {
      asked.push(req.kind);
      return req.kind === 'vcek' ? genoa.vcek.der : req.kind === 'crl' ? crl : undefined;
    } });
    expect(asked).toEqual(['vcek', 'crl']);
    expect(res.claims.revocationChecked).toBe(true);
    const e = (await verifySevSnp(r, { now: NOW, roots: genoa.roots(), policy: null }).catch((x) => x)) as GmError;
    expect(e.code).toBe('SNP_CERT_MISSING');
    expect(e.kind).toBe('collateral');
  });

  it('a warm chain is not reused outside its validity window, nor for other roots', async () => {
    const r = await genoa.vcek.signReport();
    await verifySevSnp(r, opts(genoa, genoa.vcek));
    expect(await code(verifySevSnp(r, opts(genoa, genoa.vcek, { now: new Date('2032-01-01Z') })))).toBe('CERT_EXPIRED');
    expect(await code(verifySevSnp(r, opts(genoa, genoa.vcek, { roots: other.roots() })))).toBe('CERT_SIGNATURE');
    expect(await code(verifySevSnp(r, opts(genoa, genoa.vcek)))).toBe('VERIFIED');
  });

  it('options.now must be a Date', async () => {
    expect(await code(verifySevSnp(await genoa.vcek.signReport(), { ...opts(genoa, genoa.vcek), now: new Date('x') }))).toBe('SNP_OPTIONS');
  });
});
