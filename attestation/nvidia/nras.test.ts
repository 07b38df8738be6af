import { type JWK, SignJWT, exportJWK, generateKeyPair } from 'jose';
import { beforeAll, describe, expect, it } from 'vitest';
import { hex, sha256 } from '../bytes.ts';
import { isGmError } from '../errors.ts';
import { gpuPolicyFrom } from './validate.ts';
import { verifyNrasResult } from './nras.ts';

/** A local fake NRAS: its own ES384 key, JWKS, and tokens shaped like NRAS v3 results. */
const NOW = new Date('2026-02-01T00:00:00Z');
const ISS = 'https://nras.attestation.nvidia.com';
const NONCE = new Uint8Array(32).fill(0x93);
const iat = Math.floor(NOW.getTime() / 1000) - 30;

let key: CryptoKey;
let otherKey: CryptoKey;
let es256Key: CryptoKey;
let jwks: { keys: JWK[] };

beforeAll(async () => {
  const k = await generateKeyPair('ES384');
  key = k.privateKey;
  otherKey = (await generateKeyPair('ES384')).privateKey;
  const k256 = await generateKeyPair('ES256');
  es256Key = k256.privateKey;
  jwks = { keys: [{ ...(await exportJWK(k.publicKey)), kid: 'nras-1', alg: 'ES384' }, { ...(await exportJWK(k256.publicKey)), kid: 'nras-256', alg: 'ES256' }] };
});

interface Fake {
  gpuClaims?: Record<string, unknown>;
  overallClaims?: Record<string, unknown>;
  gpuKey?: CryptoKey;
  gpuAlg?: string;
  gpuKid?: string;
  exp?: number;
  swapDigest?: boolean;
}

async function nrasResponse(f: Fake = {}): Promise<string> {
  const gpu = await new SignJWT({
    sub: 'NVIDIA-GPU-ATTESTATION', eat_nonce: hex(NONCE).toUpperCase(), hwmodel: 'GH100 A01 GSP BROM', ueid: '4791594553', oemid: '5703',
    secboot: true, dbgstat: 'disabled', measres: 'comparison-successful', 'x-nvidia-gpu-driver-version': '550.90.07', 'x-nvidia-gpu-vbios-version': '96.00.9F.00.01',
    'x-nvidia-attestation-detailed-result': {
      'x-nvidia-gpu-attestation-report-signature-verified': true, 'x-nvidia-gpu-attestation-report-cert-chain-validated': true, 'x-nvidia-gpu-arch-check': true,
      'x-nvidia-gpu-attestation-report-nonce-match': true, 'x-nvidia-gpu-measurements-match': true,
      'x-nvidia-gpu-attestation-report-cert-chain': { 'x-nvidia-cert-status': 'valid', 'x-nvidia-cert-ocsp-status': 'good' },
    },
    ...f.gpuClaims,
  }).setProtectedHeader({ alg: f.gpuAlg ?? 'ES384', kid: f.gpuKid ?? 'nras-1' }).setIssuer(ISS).setIssuedAt(iat).setExpirationTime(f.exp ?? iat + 3600)
    .sign(f.gpuKey ?? key);
  const digest = hex(await sha256(new TextEncoder().encode(f.swapDigest ? `${gpu}x` : gpu)));
  const overall = await new SignJWT({ eat_nonce: hex(NONCE), 'x-nvidia-overall-att-result': true, submods: { 'GPU-0': ['DIGEST', ['SHA256', digest]] }, ...f.overallClaims })
    .setProtectedHeader({ alg: 'ES384', kid: 'nras-1' }).setIssuer(ISS).setIssuedAt(iat).setExpirationTime(iat + 3600).sign(key);
  return JSON.stringify([['JWT', overall], { 'GPU-0': gpu }]);
}

const opts = (over: Record<string, unknown> = {}) => ({ now: NOW, jwks, expectedNonce: NONCE, issuer: ISS, policy: null, ...over });

async function codeOf(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
  } catch (e) {
    if (isGmError(e)) return e.code;
    throw e;
  }
  return undefined;
}

describe('NRAS EAT (local fake NRAS)', () => {
  it('verifies and maps claims onto GpuClaims; the GPU policy applies', async () => {
    const policy = gpuPolicyFrom({ ccModeRequired: false, allowDebug: false, allowDevtools: false, minDriverVersion: '550', minVbiosVersion: '96.00.5e.00.00',
      allowedArchitectures: ['HOPPER'], rimMatchRequired: true, ocsp: 'required', maxEvidenceAgeSeconds: 300 });
    const r = await verifyNrasResult(await nrasResponse(), opts({ policy }));
    expect(r.report.verified).toBe(true);
    expect(r.gpus[0]!.claims).toMatchObject({
      source: 'nras', arch: 'HOPPER', driverVersion: '550.90.07', vbiosVersion: '96.00.9f.00.01', nonceMatch: true, measurementsMatch: true,
      debug: false, secureBoot: true, ocsp: 'good', hwmodel: 'GH100 A01 GSP BROM',
    });
  });

  it.each([
    ['a token signed by another key', { gpuKey: undefined as CryptoKey | undefined, other: true }, 'NRAS_SIGNATURE'],
    ['a wrong algorithm (ES256, even with its key in the JWKS)', { es256: true }, 'NRAS_ALGORITHM'],
    ['an expired token', { exp: iat - 10 }, 'NRAS_EXPIRED'],
    ['a nonce mismatch', { gpuClaims: { eat_nonce: '00'.repeat(32) } }, 'NVIDIA_NONCE_MISMATCH'],
    ['an unknown key id', { gpuKid: 'nras-9' }, 'NRAS_KEY_UNKNOWN'],
    ['a detached token the overall token does not name', { swapDigest: true }, 'NRAS_SUBMOD_DIGEST'],
    ['a failed overall result', { overallClaims: { 'x-nvidia-overall-att-result': false } }, 'NRAS_OVERALL_FAILED'],
    ['NRAS reporting a bad report signature', { gpuClaims: { 'x-nvidia-attestation-detailed-result': { 'x-nvidia-gpu-arch-check': true, 'x-nvidia-gpu-attestation-report-nonce-match': true } } }, 'NRAS_GPU_CHECK_FAILED'],
  ] as const)('rejects %s', async (_what, f, want) => {
    const fake: Fake = { ...(f as Fake) };
    if ('other' in f) fake.gpuKey = otherKey;
    if ('es256' in f) Object.assign(fake, { gpuKey: es256Key, gpuAlg: 'ES256', gpuKid: 'nras-256' });
    expect(await codeOf(verifyNrasResult(await nrasResponse(fake), opts()))).toBe(want);
  });

  it('debug enabled is a policy violation', async () => {
    const policy = gpuPolicyFrom({ ccModeRequired: false, allowDebug: false, allowDevtools: false, minDriverVersion: '1', minVbiosVersion: '1',
      allowedArchitectures: ['HOPPER'], rimMatchRequired: false, ocsp: 'allow-skip', maxEvidenceAgeSeconds: 300 });
    const e = await verifyNrasResult(await nrasResponse({ gpuClaims: { dbgstat: 'enabled' } }), opts({ policy })).catch((x: unknown) => x);
    expect(isGmError(e, 'NVIDIA_DEBUG_ON')).toBe(true);
    expect((e as Error).message).toMatch(/^GPU 0 \(GPU-0\) rejected/);
  });

  it('refuses a token from another issuer and malformed responses', async () => {
    expect(await codeOf(verifyNrasResult(await nrasResponse(), opts({ issuer: 'https://example.com' })))).toBe('NRAS_CLAIMS');
    expect(await codeOf(verifyNrasResult('[]', opts()))).toBe('NRAS_INVALID');
    expect(await codeOf(verifyNrasResult(JSON.stringify([['JWT', 'a.b.c'], {}]), opts()))).toBe('NRAS_INVALID');
  });
});
