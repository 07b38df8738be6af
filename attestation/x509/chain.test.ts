import { describe, expect, it } from 'vitest';
import { isGmError } from '../errors.ts';
import { hasTrustAnchors, trustStore } from '../../test/vectors.ts';
import { parseCertificate } from './cert.ts';
import { verifyChain } from './chain.ts';

describe.skipIf(!hasTrustAnchors)('x509 chains over the pinned vendor anchors', () => {
  it('loads every pinned anchor from the trust directory', async () => {
    const t = await trustStore();
    expect(t.missing).toEqual([]);
    // 6 ASK/ASVK + 3 ARKs (each shared by its VCEK and VLEK files) + Intel root + 2 NVIDIA roots
    expect(t.entries.length).toBe(12);
  });

  it('ARK-Milan → SEV-Milan verifies with RSA-PSS SHA-384', async () => {
    const t = await trustStore();
    const ask = t.get('amd-ask', 'Milan');
    const v = await verifyChain([ask], { now: new Date('2025-01-01Z'), roots: [t.get('amd-ark', 'Milan')], algorithms: ['rsa-pss-sha384'] });
    expect(v.path.map((c) => c.subject.text)).toEqual([ask.subject.text, t.get('amd-ark', 'Milan').subject.text]);
  });

  it('refuses a disallowed algorithm before using the key, and the wrong root', async () => {
    const t = await trustStore();
    const ask = t.get('amd-ask', 'Milan');
    await expect(verifyChain([ask], { now: new Date('2025-01-01Z'), roots: [t.get('amd-ark', 'Milan')], algorithms: ['ecdsa-p384-sha384'] }))
      .rejects.toMatchObject({ code: 'CERT_ALGORITHM' });
    await expect(verifyChain([ask], { now: new Date('2025-01-01Z'), roots: [t.get('amd-ark', 'Genoa')], algorithms: ['rsa-pss-sha384'] }))
      .rejects.toMatchObject({ code: 'CERT_UNTRUSTED_ROOT' });
    await expect(verifyChain([ask], { now: new Date('2060-01-01Z'), roots: [t.get('amd-ark', 'Milan')], algorithms: ['rsa-pss-sha384'] }))
      .rejects.toMatchObject({ code: 'CERT_EXPIRED' });
  });

  it('a flipped signature byte in the ASK is CERT_SIGNATURE', async () => {
    const t = await trustStore();
    const der = t.get('amd-ask', 'Milan').der.slice();
    der[der.length - 10]! ^= 1;
    const ask = parseCertificate(der);
    const e = await verifyChain([ask], { now: new Date('2025-01-01Z'), roots: [t.get('amd-ark', 'Milan')], algorithms: ['rsa-pss-sha384'] }).catch((x) => x);
    expect(isGmError(e, 'CERT_SIGNATURE')).toBe(true);
  });

  it('NVIDIA and Intel roots self-verify', async () => {
    const t = await trustStore();
    for (const [role, alg] of [['nvidia-device-root', 'ecdsa-p384-sha384'], ['intel-sgx-root', 'ecdsa-p256-sha256'], ['nvidia-rim-root', 'ecdsa-p384-sha384']] as const) {
      const r = t.get(role);
      await verifyChain([r], { now: new Date('2025-01-01Z'), roots: [r], algorithms: [alg] });
    }
  });
});
