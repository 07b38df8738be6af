/**
 * Realistic inputs for the host status page: a sim SEV-SNP gate report with passing, failing and skipped checks, workers
 * with 96-hex measurements and verified GPU claims, and signed offers with long ids, so layout tests see the widest
 * values the page has to hold.
 */
import type { GateStatus } from '../../host/gate.ts';
import type { Listings } from '../../host/status-page.ts';

export const NOW = new Date('2026-12-03T12:00:00.000Z');

const CHECKS = [
  ['snp.report.signature', 'pass', 'VCEK ECDSA P-384 signature over the attestation report', 'VCEK from the collateral cache', 'valid'],
  ['snp.chain.ark', 'pass', 'ARK self-signature and pinned fingerprint', 'pinned AMD Milan ARK', 'fingerprint matches'],
  ['snp.policy.measurement', 'pass', 'MEASUREMENT equals an allowed value', 'policy.snp.measurements', '5a'.repeat(48)],
  ['bundle.report-data', 'pass', 'REPORT_DATA binds the nonce and the OHTTP key configuration', 'SHA-512(nonce || key config)', 'bound'],
  ['snp.tcb.minimum', 'fail', 'reported TCB at or above the policy minimum', 'policy.snp.minimumTcb', 'SNP firmware 8 below minimum 22'],
  ['snp.revocation', 'skip', 'VCEK certificate not revoked', 'AMD CRL', 'revocation checking disabled by policy'],
] as const;

export function simStatus(over: Partial<GateStatus> = {}): GateStatus {
  return {
    state: 'open',
    checkedAt: '2026-12-03T11:59:20.000Z',
    report: { subject: 'enclave', verified: true, checks: CHECKS.map(([id, status, what, against, detail]) => ({ id, status, what, against, detail, ...(status === 'fail' ? { code: 'SNP_TCB_TOO_OLD' } : {}) })) },
    summary: { platform: 'sim-sev-snp', measurement: '5a'.repeat(48), 'evidence issued': '2026-12-03T11:59:19.000Z', 'OHTTP key id': '1', sim: 'SIMULATED TEE: not backed by hardware' },
    error: undefined,
    ...over,
  };
}

export function listings(): Listings {
  const gpu = (n: number, ccMode: string) => Array.from({ length: n }, () => ({ model: 'GH100 A01 GSP BROM', driver: '550.54.15', ccMode }));
  return {
    workers: [
      { id: 'worker-frankfurt-h100-01', platform: 'sim-tdx', measurement: 'b7'.repeat(48), gpus: 8, gpuClaims: gpu(8, 'on'), state: 'verified', verifiedAt: '2026-12-03T11:57:00.000Z' },
      { id: 'worker-helsinki-h200-07', platform: 'sim-sev-snp', measurement: 'c3'.repeat(48), gpus: 2, gpuClaims: [...gpu(1, 'on'), ...gpu(1, 'devtools')], state: 'verified', verifiedAt: '2026-12-03T09:00:00.000Z' },
      { id: 'worker-cpu-only', platform: 'sim-sev-snp', measurement: 'd4'.repeat(48), state: 'expired', verifiedAt: '2026-12-01T12:00:00.000Z' },
    ],
    offers: [
      { id: 'offer-01JEXAMPLE7Q3M0Y8ZC2K4TB6W9', worker: 'worker-frankfurt-h100-01', model: 'meta-llama/Llama-3.3-70B-Instruct', priceIn: '0.1 USD (quoted 0.105 with the routing fee)', priceOut: '0.4 USD (quoted 0.42 with the routing fee)', terms: 'per-token', expires: '2026-12-03T13:00:00.000Z', signature: 'verified', digest: 'e1'.repeat(32) },
      { id: 'offer-tampered', worker: 'worker-helsinki-h200-07', model: 'Qwen/Qwen2.5-72B-Instruct', signature: 'REJECTED OFFER_VIEW_MISMATCH' },
      { id: 'offer-unchecked', worker: 'worker-cpu-only', model: 'dev-echo' },
    ],
    workerStates: { verified: 2, expired: 1 },
    models: ['meta-llama/Llama-3.3-70B-Instruct', 'Qwen/Qwen2.5-72B-Instruct'],
  };
}
