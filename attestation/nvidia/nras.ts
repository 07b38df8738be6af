/**
 * NVIDIA Remote Attestation Service (NRAS) results: an EAT (RFC 9711 Entity Attestation Token) as JWTs
 * (RFC 7519). NRAS v3 answers `[["JWT", <overall token>], { "GPU-0": <detached token>, ... }]`; the overall token's
 * `submods` binds each detached token by digest (`["DIGEST", ["SHA256", hex]]`). Tokens are ES384 (the allowlist
 * is checked before any key is used) and verified with jose against a JWKS the caller passes in (NRAS publishes
 * it at /.well-known/jwks.json; gm never fetches it here). Claims are mapped onto the same `GpuClaims` as local
 * verification, so one policy (`validate.ts`) applies to both.
 */
import { type JSONWebKeySet, createLocalJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';
import { hex, sha256 } from '../bytes.ts';
import { GmError, protocolError, rejected } from '../errors.ts';
import { Checks } from '../report.ts';
import type { GpuClaims } from './claims.ts';
import type { GpuEvidenceResult, GpuResult } from './index.ts';
import { type GpuPolicy, validateGpuClaims } from './validate.ts';

export const NRAS_ALGORITHMS = ['ES384'] as const;

export interface NrasVerifyOptions {
  readonly now: Date;
  /** NRAS's JWKS (from a cache or configuration). */
  readonly jwks: JSONWebKeySet;
  readonly expectedNonce: Uint8Array | null;
  /** Expected `iss` (e.g. https://nras.attestation.nvidia.com); required so a token of another service is refused. */
  readonly issuer: string;
  readonly policy: GpuPolicy | null;
}

type Claims = Record<string, unknown>;

function parseResponse(input: string | unknown): { overall: string; detached: [string, string][] } {
  let doc = input;
  if (typeof input === 'string') {
    try {
      doc = JSON.parse(input);
    } catch (e) {
      throw protocolError('NRAS_INVALID', 'NRAS response is not JSON', { cause: e });
    }
  }
  if (!Array.isArray(doc) || doc.length !== 2) throw protocolError('NRAS_INVALID', 'NRAS response must be [["JWT", token], { submod: token }]');
  const [head, subs] = doc as [unknown, unknown];
  if (!Array.isArray(head) || head.length !== 2 || head[0] !== 'JWT' || typeof head[1] !== 'string') throw protocolError('NRAS_INVALID', 'NRAS response lacks the ["JWT", token] entry');
  if (typeof subs !== 'object' || subs === null || Array.isArray(subs)) throw protocolError('NRAS_INVALID', 'NRAS response lacks the detached submodule tokens');
  const detached = Object.entries(subs as Record<string, unknown>).map(([k, v]) => {
    if (typeof v !== 'string') throw protocolError('NRAS_INVALID', `NRAS submodule ${k} is not a token`);
    return [k, v] as [string, string];
  });
  if (detached.length === 0) throw protocolError('NRAS_INVALID', 'NRAS response has no GPU tokens');
  return { overall: head[1], detached };
}

const JOSE_CODE: Record<string, string> = {
  ERR_JWS_SIGNATURE_VERIFICATION_FAILED: 'NRAS_SIGNATURE',
  ERR_JWKS_NO_MATCHING_KEY: 'NRAS_KEY_UNKNOWN',
  ERR_JWKS_MULTIPLE_MATCHING_KEYS: 'NRAS_KEY_UNKNOWN',
  ERR_JOSE_ALG_NOT_ALLOWED: 'NRAS_ALGORITHM',
  ERR_JWT_EXPIRED: 'NRAS_EXPIRED',
  ERR_JWT_CLAIM_VALIDATION_FAILED: 'NRAS_CLAIMS',
  ERR_JWS_INVALID: 'NRAS_INVALID',
  ERR_JWT_INVALID: 'NRAS_INVALID',
};

async function verifyToken(token: string, what: string, options: NrasVerifyOptions): Promise<Claims> {
  let alg: string | undefined;
  try {
    alg = decodeProtectedHeader(token).alg;
  } catch (e) {
    throw protocolError('NRAS_INVALID', `${what}: not a JWS`, { cause: e });
  }
  if (!NRAS_ALGORITHMS.includes(alg as 'ES384')) throw rejected('NRAS_ALGORITHM', `${what}: algorithm ${alg} is not allowed (only ES384)`);
  try {
    const { payload } = await jwtVerify(token, createLocalJWKSet(options.jwks), {
      algorithms: [...NRAS_ALGORITHMS], currentDate: options.now, issuer: options.issuer, requiredClaims: ['iat', 'exp'],
    });
    return payload as Claims;
  } catch (e) {
    const code = JOSE_CODE[(e as { code?: string }).code ?? ''] ?? 'NRAS_INVALID';
    throw rejected(code, `${what}: ${(e as Error).message}`, { cause: e });
  }
}

/** A claim that NRAS v3 puts either at the top level or inside x-nvidia-attestation-detailed-result. */
function flag(c: Claims, ...names: string[]): boolean | undefined {
  const detailed = (c['x-nvidia-attestation-detailed-result'] ?? {}) as Claims;
  for (const n of names) {
    const v = c[n] ?? detailed[n];
    if (typeof v === 'boolean') return v;
  }
  return undefined;
}
const str = (c: Claims, n: string) => (typeof c[n] === 'string' ? (c[n] as string) : undefined);

/** GH100 → HOPPER, GB100/GB200/GB202 → BLACKWELL, from `hwmodel` (e.g. "GH100 A01 GSP BROM"). */
function archOf(hwmodel: string | undefined): string {
  if (!hwmodel) return 'UNKNOWN';
  if (/^GH1\d\d/.test(hwmodel)) return 'HOPPER';
  if (/^GB[12]\d\d/.test(hwmodel)) return 'BLACKWELL';
  return hwmodel.split(' ')[0]!.toUpperCase();
}

/** Any nested `x-nvidia-cert-ocsp-status` claim says "good" and none says otherwise. */
function ocspGood(c: Claims): boolean {
  const found: string[] = [];
  const walk = (v: unknown) => {
    if (typeof v !== 'object' || v === null) return;
    for (const [k, x] of Object.entries(v)) {
      if (k === 'x-nvidia-cert-ocsp-status' && typeof x === 'string') found.push(x);
      else walk(x);
    }
  };
  walk(c);
  return found.length > 0 && found.every((s) => s === 'good');
}

export function nrasClaims(gpu: number, c: Claims, expectedNonce: Uint8Array | null): GpuClaims {
  const eatNonce = str(c, 'eat_nonce')?.toLowerCase();
  const measres = str(c, 'measres');
  const iat = typeof c.iat === 'number' ? new Date(c.iat * 1000) : undefined;
  return {
    gpu, source: 'nras', arch: archOf(str(c, 'hwmodel')), hwmodel: str(c, 'hwmodel'), ueid: str(c, 'ueid'),
    driverVersion: str(c, 'x-nvidia-gpu-driver-version'), vbiosVersion: str(c, 'x-nvidia-gpu-vbios-version')?.toLowerCase(), fwid: undefined,
    nonce: eatNonce ?? '',
    nonceMatch: expectedNonce ? eatNonce === hex(expectedNonce) && flag(c, 'x-nvidia-gpu-attestation-report-nonce-match', 'x-nvidia-gpu-nonce-match') === true : undefined,
    measurements: {}, measurementsMatch: measres === undefined ? undefined : measres === 'success' || measres === 'comparison-successful', measurementMismatches: [],
    ccMode: undefined, debug: c.dbgstat === undefined ? undefined : c.dbgstat !== 'disabled', secureBoot: typeof c.secboot === 'boolean' ? c.secboot : undefined,
    ocsp: ocspGood(c) ? 'good' : 'skipped', sim: false, issuedAt: iat,
  };
}

/**
 * Verifies an NRAS attestation result: the overall token, each detached GPU token, the submods digests binding
 * them, the overall result, the nonce, NRAS's own report checks; then the policy on the mapped claims.
 */
export async function verifyNrasResult(response: string | unknown, options: NrasVerifyOptions): Promise<GpuEvidenceResult> {
  const { overall, detached } = parseResponse(response);
  const top = new Checks('NRAS attestation result');
  const o = await top.run('nras.overall.signature', 'overall EAT signature (ES384) and time', 'caller JWKS', () => verifyToken(overall, 'NRAS overall token', options), (c) => `iss ${String(c.iss)}`);
  top.runSync('nras.overall.result', 'NRAS overall attestation result is true', 'x-nvidia-overall-att-result', () => {
    if (o['x-nvidia-overall-att-result'] !== true) throw rejected('NRAS_OVERALL_FAILED', 'NRAS reports the overall attestation as failed');
  });
  const submods = (o.submods ?? {}) as Record<string, unknown>;
  const gpus: GpuResult[] = [];
  const rows = [...top.report().checks];
  let firstError: GmError | undefined;
  for (const [i, [name, token]] of detached.entries()) {
    const checks = new Checks(`GPU ${i} (${name}, NRAS)`);
    try {
      const digest = hex(await sha256(new TextEncoder().encode(token)));
      checks.runSync('nras.submod.digest', `the overall token binds ${name}'s token by digest`, 'submods', () => {
        const d = submods[name] as unknown;
        const ok = Array.isArray(d) && d[0] === 'DIGEST' && Array.isArray(d[1]) && d[1][0] === 'SHA256' && typeof d[1][1] === 'string' && d[1][1].toLowerCase() === digest;
        if (!ok) throw rejected('NRAS_SUBMOD_DIGEST', `${name}'s token is not the one the overall token names`);
      });
      const c = await checks.run('nras.gpu.signature', `${name} EAT signature (ES384) and time`, 'caller JWKS', () => verifyToken(token, `NRAS ${name} token`, options));
      if (options.expectedNonce) {
        const n = options.expectedNonce;
        checks.runSync('nras.gpu.nonce', 'eat_nonce equals the expected nonce and NRAS matched it in the report', 'caller nonce', () => {
          if (str(c, 'eat_nonce')?.toLowerCase() !== hex(n) || str(o, 'eat_nonce')?.toLowerCase() !== hex(n))
            throw rejected('NVIDIA_NONCE_MISMATCH', `NRAS eat_nonce ${str(c, 'eat_nonce')} is not the expected ${hex(n)}`);
          if (flag(c, 'x-nvidia-gpu-attestation-report-nonce-match', 'x-nvidia-gpu-nonce-match') !== true) throw rejected('NVIDIA_NONCE_MISMATCH', 'NRAS did not match the nonce in the GPU report');
        });
      } else checks.skip('nras.gpu.nonce', 'eat_nonce equals the expected nonce', 'no expected nonce given: freshness not established');
      checks.runSync('nras.gpu.report', 'NRAS verified the report signature, its chain and the architecture', 'x-nvidia-gpu-* results', () => {
        const failed = ['x-nvidia-gpu-attestation-report-signature-verified', 'x-nvidia-gpu-attestation-report-cert-chain-validated', 'x-nvidia-gpu-arch-check']
          .filter((n) => flag(c, n) !== true);
        if (failed.length > 0) throw rejected('NRAS_GPU_CHECK_FAILED', `NRAS reports failure or absence of ${failed.join(', ')}`);
      });
      const claims = nrasClaims(i, c, options.expectedNonce);
      if (options.policy) {
        const codes = validateGpuClaims(claims, options.policy, options.now, checks);
        if (codes.length > 0) throw rejected(codes[0]!, `policy violations: ${checks.failures.map((f) => f.code).join(', ')}`, { report: checks.report() });
      } else checks.skip('policy', 'GPU policy', 'no policy given: verification only');
      gpus.push({ gpu: i, claims, report: checks.report(), attestation: undefined });
    } catch (e) {
      if (!(e instanceof GmError)) throw e;
      firstError ??= new GmError(e.kind, e.code, `GPU ${i} (${name}) rejected: ${e.message}`, { cause: e });
    }
    rows.push(...checks.report().checks.map((r) => ({ ...r, id: `gpu${i}.${r.id}` })));
  }
  const report = { subject: `NRAS attestation result (${detached.length} GPU${detached.length === 1 ? '' : 's'})`, verified: !firstError, checks: rows };
  if (firstError) {
    firstError.report = report;
    throw firstError;
  }
  return { gpus, report };
}
