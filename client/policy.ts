/**
 * The client's enclave policy as data (docs/design.md §3 "validate", CONTRIBUTING.md, convention 3): one JSON document with a section per
 * CPU platform the client accepts, each read strictly by that platform's own reader. A platform without a section
 * is refused, so an SEV-SNP policy never silently admits a TDX enclave. `measurements` is required in each section.
 *
 * ```json
 * { "sev-snp": { "measurements": ["<96 hex>"], "allowDebug": false, "minTcb": { ... } },
 *   "tdx": { "mrTd": ["<96 hex>"], "rtmr0": [...], "allowedTcbStatuses": ["UpToDate"] },
 *   "maxEvidenceAgeSeconds": 300, "requirePostQuantum": true, "allowSimWorkers": false }
 * ```
 *
 * `allowSimWorkers: false` refuses an enclave unless its evidence attests that it admits no workers with simulated
 * evidence (its bound settings, docs/protocol.md §12.3). When the policy does not say, hardware evidence requires the
 * same and sim evidence does not (a sim enclave is a test stack whose workers are sim too).
 *
 * `requirePostQuantum` (default false) refuses an enclave whose attested key configurations include no hybrid
 * post-quantum KEM (X-Wing, docs/protocol.md §5.1); without it the client still prefers X-Wing whenever it is listed.
 */
import type { EnclaveSettings } from '../attestation/bundle.ts';
import type { BundlePolicy } from '../attestation/bundle-verify.ts';
import { configError } from '../attestation/errors.ts';
import { parseSnpPolicy, type SnpPolicy } from '../attestation/sevsnp/index.ts';
import { tdxPolicyFromJson, type TdxPolicy } from '../attestation/tdx/index.ts';

export interface ClientPolicy extends BundlePolicy {
  readonly 'sev-snp'?: SnpPolicy;
  readonly tdx?: TdxPolicy;
  /** Freshness of the enclave's evidence; a fresh nonce makes it seconds old, so the default is tight. */
  readonly maxAgeMs: number;
  /** Refuse an enclave that attests no post-quantum key configuration (absent means false). */
  readonly requirePostQuantum?: boolean;
  /** false: the enclave must attest it admits no sim workers. Absent: required for hardware evidence only. */
  readonly allowSimWorkers?: boolean;
}

const DEFAULT_MAX_AGE_MS = 5 * 60_000;

/**
 * The measurement the `sim` TEE provider reports (48 bytes of 0x5a, enclave/tee/sim.ts SIM_MEASUREMENT). Used only
 * with allowSim and no explicit policy; a test checks that the two agree.
 */
export const SIM_MEASUREMENT_HEX = '5a'.repeat(48);

export function simPolicyDoc(): Record<string, unknown> {
  return { 'sev-snp': { measurements: [SIM_MEASUREMENT_HEX], allowDebug: false } };
}

export function parseClientPolicy(doc: unknown, where = 'client policy'): ClientPolicy {
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw configError('POLICY_INVALID', `${where} must be a JSON object`);
  const o = doc as Record<string, unknown>;
  for (const k of Object.keys(o)) if (!['sev-snp', 'tdx', 'maxEvidenceAgeSeconds', 'requirePostQuantum', 'allowSimWorkers'].includes(k)) throw configError('POLICY_INVALID', `${where}: unknown field "${k}"`);
  if (o['sev-snp'] === undefined && o.tdx === undefined) throw configError('POLICY_MISSING_FIELD', `${where}: needs a "sev-snp" or "tdx" section (the platforms the client accepts)`);
  const age = o.maxEvidenceAgeSeconds;
  if (age !== undefined && (typeof age !== 'number' || !Number.isSafeInteger(age) || age <= 0)) throw configError('POLICY_INVALID', `${where}: field "maxEvidenceAgeSeconds" must be a positive integer`);
  const pq = o.requirePostQuantum;
  if (pq !== undefined && typeof pq !== 'boolean') throw configError('POLICY_INVALID', `${where}: field "requirePostQuantum" must be true or false`);
  const simWorkers = o.allowSimWorkers;
  if (simWorkers !== undefined && typeof simWorkers !== 'boolean') throw configError('POLICY_INVALID', `${where}: field "allowSimWorkers" must be true or false`);
  const snp = o['sev-snp'] === undefined ? undefined : parseSnpPolicy(o['sev-snp'], `${where} "sev-snp"`);
  if (snp && snp.measurements === 'any') throw configError('POLICY_INVALID', `${where}: "sev-snp".measurements must list the allowed measurements (the client pins its enclave)`);
  const tdx = o.tdx === undefined ? undefined : tdxPolicyFromJson(o.tdx, `${where} "tdx"`);
  if (tdx && !tdx.mrTd?.length) throw configError('POLICY_MISSING_FIELD', `${where}: "tdx".mrTd must list the allowed MRTDs`);
  return { ...(snp ? { 'sev-snp': snp } : {}), ...(tdx ? { tdx } : {}), maxAgeMs: typeof age === 'number' ? age * 1000 : DEFAULT_MAX_AGE_MS, requirePostQuantum: pq === true, ...(simWorkers !== undefined ? { allowSimWorkers: simWorkers } : {}) };
}

/**
 * What the policy finds wrong with an enclave's attested settings (all of it, not only the first): `undefined`
 * settings are an enclave that binds none. `evidenceSim`: the enclave's own evidence is simulated.
 */
export function settingsViolations(p: ClientPolicy, evidenceSim: boolean, s: EnclaveSettings | undefined): { code: string; message: string }[] {
  const out: { code: string; message: string }[] = [];
  const noSimWorkers = p.allowSimWorkers === false || (p.allowSimWorkers === undefined && !evidenceSim);
  if (noSimWorkers && !s) out.push({ code: 'ENCLAVE_SETTINGS_MISSING', message: 'the enclave binds no settings in its evidence, so nothing says it refuses sim workers' });
  if (noSimWorkers && s?.allowSimWorkers) out.push({ code: 'ENCLAVE_ALLOWS_SIM_WORKERS', message: 'the enclave attests that it admits workers with simulated evidence (--allow-sim-workers)' });
  return out;
}

/** Which platform sections a policy has, for the "platform not allowed" check. */
export function policyAllows(p: ClientPolicy, platform: string): boolean {
  const base = platform.replace(/^sim-/, '');
  return base === 'sev-snp' ? p['sev-snp'] !== undefined : base === 'tdx' ? p.tdx !== undefined : false;
}
