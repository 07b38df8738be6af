import { beforeAll, describe, expect, it } from 'vitest';
import { concat } from '../bytes.ts';
import { isGmError } from '../errors.ts';
import { parseOcspResponse, verifyOcspForCert } from './ocsp.ts';
import { type NvidiaSimSigner, buildSimOcsp, createNvidiaSimSigner, createSimOcspResponder } from './sim.ts';

const NOW = new Date('2026-05-01T00:00:00Z');
const HOUR = 3_600_000;
let s: NvidiaSimSigner;
beforeAll(async () => {
  s = await createNvidiaSimSigner({ now: NOW });
});

async function codeOf(f: () => Promise<unknown>): Promise<string | undefined> {
  try {
    await f();
  } catch (e) {
    if (isGmError(e)) return e.code;
    throw e;
  }
  return undefined;
}

const check = async (der: Uint8Array, cert = s.leaf, issuer = s.intermediate, now = NOW) =>
  verifyOcspForCert(parseOcspResponse(der), cert, issuer, { now, roots: [s.root], issuerChain: issuer === s.intermediate ? [s.root] : [] });

describe('OCSP (RFC 6960) for the GPU chain', () => {
  it('a good, current, issuer-signed response passes; the CertID must name the certificate', async () => {
    const der = await buildSimOcsp(s, s.leaf, { thisUpdate: new Date(NOW.getTime() - HOUR), nextUpdate: new Date(NOW.getTime() + HOUR) });
    expect((await check(der)).certStatus).toBe('good');
    expect(await codeOf(() => check(der, s.intermediate, s.root))).toBe('OCSP_NO_STATUS');
  });

  it.each([
    ['revoked', { status: 'revoked' as const }, 'CERT_REVOKED'],
    ['unknown', { status: 'unknown' as const }, 'OCSP_STATUS_UNKNOWN'],
    ['past nextUpdate', { nextUpdate: new Date(NOW.getTime() - 1000) }, 'OCSP_EXPIRED'],
    ['from the future', { thisUpdate: new Date(NOW.getTime() + HOUR) }, 'OCSP_NOT_YET_VALID'],
  ])('%s → %s', async (_w, o, want) => {
    const der = await buildSimOcsp(s, s.leaf, { thisUpdate: new Date(NOW.getTime() - HOUR), nextUpdate: new Date(NOW.getTime() + HOUR), ...o });
    expect(await codeOf(() => check(der))).toBe(want);
  });

  it('a response signed by another key is refused before its status is believed', async () => {
    const der = await buildSimOcsp(s, s.leaf, { status: 'good', thisUpdate: new Date(NOW.getTime() - HOUR), signWith: s.rootKey });
    expect(await codeOf(() => check(der))).toBe('OCSP_SIGNATURE');
  });

  it('a delegated responder issued by the issuer with id-kp-OCSPSigning is accepted; without it, refused', async () => {
    const times = { thisUpdate: new Date(NOW.getTime() - HOUR), nextUpdate: new Date(NOW.getTime() + HOUR) };
    const good = await buildSimOcsp(s, s.leaf, { ...times, responder: await createSimOcspResponder(s, NOW) });
    expect((await check(good)).certStatus).toBe('good');
    const noEku = await buildSimOcsp(s, s.leaf, { ...times, responder: await createSimOcspResponder(s, NOW, false) });
    expect(await codeOf(() => check(noEku))).toBe('OCSP_RESPONDER_UNAUTHORIZED');
  });

  it('structure: non-successful status, truncation and trailing bytes', async () => {
    expect(await codeOf(async () => parseOcspResponse(Uint8Array.of(0x30, 0x03, 0x0a, 0x01, 0x06)))).toBe('OCSP_STATUS');
    const der = await buildSimOcsp(s, s.leaf, { thisUpdate: NOW });
    expect(await codeOf(async () => parseOcspResponse(der.subarray(0, der.length - 1)))).toBe('OCSP_INVALID');
    expect(await codeOf(async () => parseOcspResponse(concat(der, Uint8Array.of(0))))).toBe('OCSP_INVALID');
  });
});
