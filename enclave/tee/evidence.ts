/**
 * Builds evidence bundles (docs/design.md §4) from a TEE provider: REPORT_DATA = protocol/binding.ts `reportData` over
 * the role, the nonce, the OHTTP key configs and the signing key; for workers, GPU evidence whose nonce is
 * `gpuNonceFor(REPORT_DATA)`, so the GPU report is bound to this CPU report (docs/protocol.md §7).
 */
import { type EnclaveSettings, encodeEnclaveSettings, type EvidenceBundle, type GpuEvidence } from '../../attestation/bundle.ts';
import { BOOT_NONCE, gpuNonceFor, reportData, type BindingRole } from '../../protocol/binding.ts';
import type { TeeProvider } from './provider.ts';

/** Produces GPU evidence for a nonce (worker/gpu.ts: NVIDIA sim, or the operator's collector command). */
export type GpuEvidenceSource = (nonce: Uint8Array) => Promise<readonly GpuEvidence[]>;

export interface BundleInput {
  readonly tee: TeeProvider;
  readonly role: BindingRole;
  readonly keyConfigs: Uint8Array;
  readonly signingKey: Uint8Array;
  readonly nonce?: Uint8Array;
  readonly gpu?: GpuEvidenceSource;
  /** Enclave only: its trust-relevant settings, carried in the bundle and bound in REPORT_DATA. */
  readonly settings?: EnclaveSettings;
  /** Worker only: its model manifest (protocol/model-identity.ts), carried in the bundle and bound in REPORT_DATA. */
  readonly models?: Uint8Array;
  readonly now?: () => number;
}

export async function makeBundle(i: BundleInput): Promise<EvidenceBundle> {
  const nonce = i.nonce ?? BOOT_NONCE;
  const rd = await reportData({ role: i.role, nonce, keyConfigs: i.keyConfigs, signingKey: i.signingKey, ...(i.settings ? { settings: encodeEnclaveSettings(i.settings) } : {}), ...(i.models ? { models: i.models } : {}) });
  const issuedAt = (i.now ?? Date.now)();
  const [cpu, gpu] = await Promise.all([i.tee.cpuEvidence(rd), i.gpu ? gpuNonceFor(rd).then((n) => i.gpu!(n)) : Promise.resolve(undefined)]);
  const keys = i.role === 'enclave' ? { ohttp: i.keyConfigs, receipt: i.signingKey } : { ohttp: i.keyConfigs, signing: i.signingKey };
  return {
    v: 1,
    platform: cpu.platform,
    evidence: cpu.evidence,
    certs: cpu.certs,
    collateral: cpu.collateral,
    ...(gpu && gpu.length > 0 ? { gpu } : {}),
    keys,
    ...(i.settings ? { settings: i.settings } : {}),
    ...(i.models ? { models: i.models } : {}),
    nonce,
    issuedAt,
  };
}
