/**
 * TEE providers (docs/design.md §3 "Simulated TEE", "Real TEE providers"): produce CPU evidence bound to a 64-byte
 * REPORT_DATA. The enclave and the worker use the same providers; the worker adds GPU evidence (worker/gpu.ts).
 */
import type { BundleCollateral, BundlePlatform } from '../../attestation/bundle.ts';

export interface CpuEvidence {
  readonly platform: BundlePlatform;
  /** SEV-SNP ATTESTATION_REPORT or TDX quote. */
  readonly evidence: Uint8Array;
  /** DER, leaf first. */
  readonly certs: readonly Uint8Array[];
  readonly collateral: BundleCollateral;
}

export interface TeeProvider {
  readonly kind: 'configfs' | 'sim';
  /** True when evidence is simulated: logs, headers and receipts must say so. */
  readonly sim: boolean;
  cpuEvidence(reportData: Uint8Array): Promise<CpuEvidence>;
}

export type TeeChoice = 'auto' | 'configfs' | 'sim';
