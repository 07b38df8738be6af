/**
 * The `sim` TEE provider (docs/design.md §3 "Simulated TEE"): a fake AMD vendor chain generated at start (in memory,
 * never persisted) signs SEV-SNP reports in the real ABI layout. Its evidence verifies only for callers that pass
 * `allowSim`; the platform is `sim-sev-snp` in every bundle so nothing downstream can mistake it for hardware.
 */
import type { BundlePlatform } from '../../attestation/bundle.ts';
import { configError } from '../../attestation/errors.ts';
import { createSimAmd, type SimAmd, type SimReportFields } from '../../attestation/sevsnp/sim.ts';
import { createSimTdx } from '../../attestation/tdx/sim.ts';
import type { CpuEvidence, TeeProvider } from './provider.ts';

export type SimPlatform = Extract<BundlePlatform, 'sim-sev-snp' | 'sim-tdx'>;

/** A fixed, recognisable sim MEASUREMENT (48 bytes of 0x5a): policies for sim stacks allow exactly this. */
export const SIM_MEASUREMENT = new Uint8Array(48).fill(0x5a);

export interface SimProviderOptions {
  readonly platform?: SimPlatform;
  /** Report fields to set (tests: a disallowed measurement, debug policy, ...). REPORT_DATA is always ours. */
  readonly report?: Omit<SimReportFields, 'reportData'>;
  /** Share one fake vendor between providers (tests; saves key generation). */
  readonly amd?: SimAmd;
}

export interface SimTeeProvider extends TeeProvider {
  /** The fake AMD (SEV-SNP sims only). */
  readonly amd?: Promise<SimAmd>;
}

/** A fixed sim MRTD (48 bytes of 0x5b) for `sim-tdx`. */
export const SIM_MRTD = new Uint8Array(48).fill(0x5b);

/** `sim-tdx`: TDX quote v4 signed by a fake Intel PCK chain, with its collateral (attestation/tdx/sim.ts). */
function simTdxProvider(): SimTeeProvider {
  const tdx = createSimTdx({ now: new Date() }); // collateral issued now, so it is inside its validity window
  tdx.catch(() => undefined);
  return {
    kind: 'sim',
    sim: true,
    async cpuEvidence(reportData: Uint8Array): Promise<CpuEvidence> {
      if (reportData.length !== 64) throw configError('TEE_REPORT_DATA_SIZE', `REPORT_DATA must be 64 bytes (got ${reportData.length})`);
      const e = await (await tdx).evidence(reportData, { mrTd: SIM_MRTD });
      return { platform: 'sim-tdx', evidence: e.evidence, certs: e.certs, collateral: e.collateral };
    },
  };
}

export function simProvider(o: SimProviderOptions = {}): SimTeeProvider {
  const platform = o.platform ?? 'sim-sev-snp';
  if (platform === 'sim-tdx') return simTdxProvider();
  const amd = o.amd ? Promise.resolve(o.amd) : createSimAmd({ product: 'Genoa' });
  amd.catch(() => undefined); // surfaced on first use
  return {
    kind: 'sim',
    sim: true,
    amd,
    async cpuEvidence(reportData: Uint8Array): Promise<CpuEvidence> {
      if (reportData.length !== 64) throw configError('TEE_REPORT_DATA_SIZE', `REPORT_DATA must be 64 bytes (got ${reportData.length})`);
      const a = await amd;
      const evidence = await a.vcek.signReport({ measurement: SIM_MEASUREMENT, ...o.report, reportData });
      return { platform, evidence, certs: [a.vcek.der, a.askDer, a.arkDer], collateral: {} };
    },
  };
}
