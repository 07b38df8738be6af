/**
 * The enclave's worker policy as data (docs/design.md §3 "Policy is data"): a JSON file
 *   { "snp": { ...SEV-SNP policy (attestation/sevsnp parseSnpPolicy)... },
 *     "gpu": { ...GPU policy (attestation/nvidia gpuPolicyFrom)... },     // optional: DEFAULT_WORKER_GPU_POLICY
 *     "freshnessSeconds": 600 }
 * Measurements must be listed explicitly for real hardware; `--tee sim` stacks default to the sim measurement.
 * Without a `gpu` section workers meet DEFAULT_WORKER_GPU_POLICY; with a collateral source (`--collateral`) that
 * default also requires the RIM match and OCSP (`withCollateralDefaults`).
 */
import { type BundlePolicy, DEFAULT_WORKER_GPU_POLICY } from '../attestation/bundle-verify.ts';
import type { GpuPolicy } from '../attestation/nvidia/index.ts';
import { hex } from '../attestation/bytes.ts';
import { PolicyReader } from '../attestation/policy.ts';
import { gpuPolicyFrom } from '../attestation/nvidia/index.ts';
import { DEFAULT_POLICY, parseSnpPolicy } from '../attestation/sevsnp/index.ts';
import { SIM_MEASUREMENT } from './tee/sim.ts';

export interface WorkerPolicyDoc {
  readonly policy: BundlePolicy;
  readonly freshnessMs: number;
}

export function parseWorkerPolicy(text: string, where = 'worker policy'): WorkerPolicyDoc {
  const r = PolicyReader.parse(text, where);
  const snp = r.raw('snp');
  const gpu = r.raw('gpu', 'optional');
  const freshness = r.integer('freshnessSeconds', 10, 24 * 3600, 'optional') ?? 600;
  r.done();
  return { policy: { 'sev-snp': parseSnpPolicy(snp, `${where}.snp`), ...(gpu !== undefined ? { gpu: gpuPolicyFrom(gpu, `${where}.gpu`) } : {}) }, freshnessMs: freshness * 1000 };
}

/** The policy a sim stack uses when none is given: exactly the sim measurement, debug forbidden. */
export function simWorkerPolicyDoc(freshnessMs = 600_000): WorkerPolicyDoc {
  return { policy: { 'sev-snp': { ...DEFAULT_POLICY, measurements: [SIM_MEASUREMENT] } }, freshnessMs };
}

export const SIM_MEASUREMENT_HEX = hex(SIM_MEASUREMENT);

/** The GPU policy for workers when a collateral source supplies RIMs and OCSP and the policy file names none. */
export const COLLATERAL_WORKER_GPU_POLICY: GpuPolicy = Object.freeze({ ...DEFAULT_WORKER_GPU_POLICY, rimMatchRequired: true, ocsp: 'required' as const });

/**
 * With a collateral source configured, a policy without a `gpu` section requires the RIM match and OCSP (the source
 * is there to supply them); an explicit `gpu` section is kept as written.
 */
export function withCollateralDefaults(doc: WorkerPolicyDoc): WorkerPolicyDoc {
  return doc.policy.gpu ? doc : { ...doc, policy: { ...doc.policy, gpu: COLLATERAL_WORKER_GPU_POLICY } };
}

/**
 * SHA-256 of the effective worker policy (what verification applies, collateral defaults included), bound in the
 * enclave's evidence as `settings.workerPolicy` (docs/protocol.md §12.3). The policy is serialized as canonical JSON:
 * object keys sorted, byte strings as lowercase hex, bigints as decimal strings, undefined fields left out.
 */
export async function workerPolicyDigest(doc: WorkerPolicyDoc): Promise<Uint8Array> {
  const text = canonicalJson({ policy: doc.policy, freshnessMs: doc.freshnessMs });
  return new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(text)));
}

/** Deterministic JSON of policy data; anything that is not data (a function, a class instance) is refused. */
export function canonicalJson(v: unknown): string {
  if (v === null || typeof v === 'boolean' || typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) throw new TypeError('policy numbers must be finite');
    return JSON.stringify(v);
  }
  if (typeof v === 'bigint') return JSON.stringify(v.toString());
  if (v instanceof Uint8Array) return JSON.stringify(hex(v));
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  if (typeof v === 'object' && Object.getPrototypeOf(v) === Object.prototype) {
    const o = v as Record<string, unknown>;
    const keys = Object.keys(o).filter((k) => o[k] !== undefined).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`).join(',')}}`;
  }
  throw new TypeError(`policy value of type ${typeof v} is not data`);
}
