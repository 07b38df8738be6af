/**
 * GPU evidence policy (layer 3 of 3), written as data (docs/design.md §3): CC mode on, debug and developer tools
 * forbidden, minimum driver and VBIOS versions, allowed architectures, RIM match, OCSP required or skip allowed,
 * maximum evidence age, expected nonce. Every field is required (an omitted field must not silently skip a check),
 * except `expectedNonce`, which a caller may also pass as an option. All violations are reported together.
 *
 * Example:
 * { "ccModeRequired": true, "allowDebug": false, "allowDevtools": false, "minDriverVersion": "550.54.14",
 *   "minVbiosVersion": "96.00.5e.00.00", "allowedArchitectures": ["HOPPER", "BLACKWELL"], "rimMatchRequired": true,
 *   "ocsp": "required", "maxEvidenceAgeSeconds": 300 }
 */
import { hex } from '../bytes.ts';
import { configError } from '../errors.ts';
import { PolicyReader } from '../policy.ts';
import type { Checks } from '../report.ts';
import type { GpuClaims } from './claims.ts';

export interface GpuPolicy {
  readonly ccModeRequired: boolean;
  readonly allowDebug: boolean;
  readonly allowDevtools: boolean;
  readonly minDriverVersion: string;
  readonly minVbiosVersion: string;
  readonly allowedArchitectures: readonly string[];
  readonly rimMatchRequired: boolean;
  readonly ocsp: 'required' | 'allow-skip';
  readonly maxEvidenceAgeSeconds: number;
  readonly expectedNonce: Uint8Array | undefined;
}

const VERSION = /^[0-9a-fA-F]+(\.[0-9a-fA-F]+)*$/;

/** Reads a policy document (JSON text or parsed object). Throws POLICY_* configuration errors. */
export function gpuPolicyFrom(doc: unknown, where = 'GPU policy'): GpuPolicy {
  const r = typeof doc === 'string' ? PolicyReader.parse(doc, where) : new PolicyReader(doc, where);
  const version = (name: string) => {
    const v = r.string(name);
    if (!VERSION.test(v)) throw configError('POLICY_INVALID', `${where}: field "${name}" must be a dotted version like 550.90.07`);
    return v;
  };
  const p: GpuPolicy = {
    ccModeRequired: r.boolean('ccModeRequired'),
    allowDebug: r.boolean('allowDebug'),
    allowDevtools: r.boolean('allowDevtools'),
    minDriverVersion: version('minDriverVersion'),
    minVbiosVersion: version('minVbiosVersion'),
    allowedArchitectures: r.strings('allowedArchitectures').map((a) => a.toUpperCase()),
    rimMatchRequired: r.boolean('rimMatchRequired'),
    ocsp: ocspMode(r.string('ocsp'), where),
    maxEvidenceAgeSeconds: r.integer('maxEvidenceAgeSeconds', 1),
    expectedNonce: r.hex('expectedNonce', 32, 'optional'),
  };
  r.done();
  return p;
}

function ocspMode(v: string, where: string): 'required' | 'allow-skip' {
  if (v !== 'required' && v !== 'allow-skip') throw configError('POLICY_INVALID', `${where}: field "ocsp" must be "required" or "allow-skip"`);
  return v;
}

/**
 * Compares dotted versions numerically part by part (driver versions are decimal, VBIOS parts hex as NVIDIA prints
 * them). A missing trailing part counts as 0.
 */
export function compareVersions(a: string, b: string, radix: 10 | 16): number {
  const pa = a.split('.').map((x) => parseInt(x, radix));
  const pb = b.split('.').map((x) => parseInt(x, radix));
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d < 0 ? -1 : 1;
  }
  return 0;
}

/**
 * Records one row per policy rule on `checks` (ids `<prefix>policy.*`); returns the failures' codes.
 * Never throws for a violation: the caller throws once with every violation in the report.
 */
export function validateGpuClaims(claims: GpuClaims, policy: GpuPolicy, now: Date, checks: Checks, prefix = ''): string[] {
  const codes: string[] = [];
  const rule = (id: string, what: string, against: string, ok: boolean, code: string, detail: string, pass?: string) => {
    if (ok) checks.pass(`${prefix}policy.${id}`, what, against, pass);
    else {
      checks.fail(`${prefix}policy.${id}`, what, against, code, detail);
      codes.push(code);
    }
  };
  if (policy.ccModeRequired)
    rule('cc-mode', 'GPU confidential-computing mode is on (DevTools is a CC mode, judged by the next rule)', 'policy.ccModeRequired', claims.ccMode === 'on' || claims.ccMode === 'devtools',
      'NVIDIA_CC_MODE_OFF', claims.ccMode === undefined ? 'the evidence does not state the CC mode (the SPDM report has no CC-mode field; the worker must declare its NVML reading)' : `CC mode is ${claims.ccMode}`, `CC mode ${claims.ccMode}`);
  rule('devtools', 'developer tools mode is off', 'policy.allowDevtools', policy.allowDevtools || claims.ccMode !== 'devtools', 'NVIDIA_DEVTOOLS_ON', 'the GPU runs in CC DevTools mode', `CC mode ${claims.ccMode ?? 'not stated'}`);
  // Local SPDM evidence states no debug status (NRAS's dbgstat does): that is a visible skip, never a pass.
  if (claims.debug === undefined && !policy.allowDebug)
    checks.skip(`${prefix}policy.debug`, 'GPU debug is off', 'the evidence states no debug status (the SPDM report has none; NRAS reports dbgstat): firmware and debug settings rest on the RIM match', 'policy.allowDebug');
  else rule('debug', 'GPU debug is off', 'policy.allowDebug', policy.allowDebug || claims.debug !== true, 'NVIDIA_DEBUG_ON', 'the evidence reports debug enabled (dbgstat)', claims.debug === undefined ? 'allowed by policy' : 'disabled');
  rule('driver-version', 'driver version at least the minimum', `policy.minDriverVersion ${policy.minDriverVersion}`,
    claims.driverVersion !== undefined && VERSION.test(claims.driverVersion) && compareVersions(claims.driverVersion, policy.minDriverVersion, 10) >= 0,
    'NVIDIA_DRIVER_TOO_OLD', `driver version ${claims.driverVersion ?? '(absent)'} is below ${policy.minDriverVersion}`, claims.driverVersion);
  rule('vbios-version', 'VBIOS version at least the minimum', `policy.minVbiosVersion ${policy.minVbiosVersion}`,
    claims.vbiosVersion !== undefined && VERSION.test(claims.vbiosVersion) && compareVersions(claims.vbiosVersion, policy.minVbiosVersion, 16) >= 0,
    'NVIDIA_VBIOS_TOO_OLD', `VBIOS version ${claims.vbiosVersion ?? '(absent)'} is below ${policy.minVbiosVersion}`, claims.vbiosVersion);
  rule('architecture', 'GPU architecture allowed', `policy.allowedArchitectures ${policy.allowedArchitectures.join(',')}`,
    policy.allowedArchitectures.includes(claims.arch.toUpperCase()), 'NVIDIA_ARCH_NOT_ALLOWED', `architecture ${claims.arch} is not allowed`, claims.arch);
  if (policy.rimMatchRequired) {
    // RIMs asked from a collateral source that could not supply them: a distinct code, the caller may try again.
    const unavailable = claims.measurementsMatch === undefined && claims.rimUnavailable !== undefined;
    rule('rim-match', 'measurements match the reference (RIM)', 'policy.rimMatchRequired', claims.measurementsMatch === true, unavailable ? 'NVIDIA_RIM_UNAVAILABLE' : 'NVIDIA_RIM_MISMATCH',
      unavailable ? `the RIMs could not be obtained: ${claims.rimUnavailable}`
        : claims.measurementsMatch === undefined ? 'no RIM comparison was made (supply the driver and VBIOS RIMs)' : `mismatched indices ${claims.measurementMismatches.join(', ')}`, 'all active indices match');
  }
  const ocspLater = claims.ocsp !== 'good' && claims.ocspUnavailable !== undefined;
  rule('ocsp', 'certificate chain revocation status', `policy.ocsp ${policy.ocsp}`, claims.ocsp === 'good' || policy.ocsp === 'allow-skip',
    ocspLater ? 'NVIDIA_OCSP_UNAVAILABLE' : 'NVIDIA_OCSP_REQUIRED',
    ocspLater ? `the OCSP responses could not be obtained: ${claims.ocspUnavailable}` : 'no OCSP responses were supplied and the policy requires them', claims.ocsp);
  const age = claims.issuedAt ? (now.getTime() - claims.issuedAt.getTime()) / 1000 : undefined;
  rule('evidence-age', 'evidence is recent enough', `policy.maxEvidenceAgeSeconds ${policy.maxEvidenceAgeSeconds}`,
    age !== undefined && age >= -60 && age <= policy.maxEvidenceAgeSeconds, 'NVIDIA_EVIDENCE_STALE',
    age === undefined ? 'the evidence has no issue or collection time' : `evidence is ${Math.round(age)} s old`, `${Math.round(age ?? 0)} s`);
  if (policy.expectedNonce)
    rule('nonce', 'report answers the policy nonce', 'policy.expectedNonce', claims.nonce === hex(policy.expectedNonce), 'NVIDIA_NONCE_MISMATCH',
      `report nonce ${claims.nonce} is not the policy's`, claims.nonce);
  return codes;
}
