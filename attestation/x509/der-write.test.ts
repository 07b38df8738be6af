import { describe, expect, it } from 'vitest';
import { hex } from '../bytes.ts';
import { isCA, parseCertificate } from './cert.ts';
import { verifyChain } from './chain.ts';
import { assertNotRevoked, parseCrl, verifyCrl } from './crl.ts';
import { parseDer, readOid, readUnsigned, readTime } from './der.ts';
import { ALG, basicConstraints, certificate, crl, int, keyUsage, name, oid, time, webCryptoSigner } from './der-write.ts';

describe('der-write', () => {
  it('writes minimal INTEGERs the strict reader accepts', () => {
    for (const v of [0, 1, 127, 128, 255, 256, 65535, 2 ** 40]) {
      expect(Number(BigInt(`0x${hex(readUnsigned(parseDer(int(v))))}`))).toBe(v);
    }
    expect(hex(int(Uint8Array.of(0, 0, 0x80)))).toBe('02020080');
  });

  it('writes OIDs and times that read back', () => {
    for (const o of ['1.3.6.1.4.1.3704.1.3.8', '2.5.29.19', '1.2.840.113549.1.1.10', '2.999.1']) expect(readOid(parseDer(oid(o)))).toBe(o);
    for (const d of ['2024-02-29T12:34:56Z', '2050-01-01T00:00:00Z', '1999-12-31T23:59:59Z'])
      expect(readTime(parseDer(time(new Date(d)))).toISOString()).toBe(new Date(d).toISOString());
  });

  it('builds an RSA-PSS root, an ECDSA leaf and a CRL that the x509 verifier accepts', async () => {
    const rsa = (await crypto.subtle.generateKey(
      { name: 'RSA-PSS', modulusLength: 2048, publicExponent: Uint8Array.of(1, 0, 1), hash: 'SHA-384' }, true, ['sign', 'verify'],
    )) as CryptoKeyPair;
    const ec = (await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-384' }, true, ['sign', 'verify'])) as CryptoKeyPair;
    const rootName = name([['2.5.4.3', 'sim root']]);
    const nb = new Date('2024-01-01Z');
    const na = new Date('2034-01-01Z');
    const rootDer = await certificate({
      serial: 1, signatureAlgorithm: ALG.rsaPssSha384, issuer: rootName, subject: rootName, notBefore: nb, notAfter: na,
      spki: new Uint8Array(await crypto.subtle.exportKey('spki', rsa.publicKey)),
      extensions: [{ oid: '2.5.29.19', critical: true, value: basicConstraints(true) }, { oid: '2.5.29.15', critical: true, value: keyUsage([5, 6]) }],
    }, webCryptoSigner(rsa.privateKey));
    const leafDer = await certificate({
      serial: 0, signatureAlgorithm: ALG.rsaPssSha384, issuer: rootName, subject: name([['2.5.4.3', 'sim leaf']]), notBefore: nb, notAfter: na,
      spki: new Uint8Array(await crypto.subtle.exportKey('spki', ec.publicKey)),
    }, webCryptoSigner(rsa.privateKey));
    const root = parseCertificate(rootDer);
    const leaf = parseCertificate(leafDer);
    expect(isCA(root)).toBe(true);
    expect(isCA(leaf)).toBe(false);
    expect(hex(leaf.serialNumber)).toBe('00');
    const v = await verifyChain([leaf], { now: new Date('2025-01-01Z'), roots: [root], algorithms: ['rsa-pss-sha384'] });
    expect(v.path.length).toBe(2);

    const list = parseCrl(await crl({
      signatureAlgorithm: ALG.rsaPssSha384, issuer: rootName, thisUpdate: nb, nextUpdate: na, revoked: [{ serial: 0, date: nb }],
    }, webCryptoSigner(rsa.privateKey)));
    await verifyCrl(list, root, new Date('2025-01-01Z'), ['rsa-pss-sha384']);
    expect(() => assertNotRevoked(leaf, list)).toThrow(expect.objectContaining({ code: 'CERT_REVOKED' }));
    expect(() => assertNotRevoked(root, list)).not.toThrow();

    const ecLeaf = parseCertificate(await certificate({
      serial: 7, signatureAlgorithm: ALG.ecdsaSha384, issuer: name([['2.5.4.3', 'sim leaf']]), subject: name([['2.5.4.3', 'x']]),
      notBefore: nb, notAfter: na, spki: new Uint8Array(await crypto.subtle.exportKey('spki', ec.publicKey)),
    }, webCryptoSigner(ec.privateKey)));
    expect(ecLeaf.signatureAlgorithm.oid).toBe('1.2.840.10045.4.3.3');
  });
});
