/**
 * `--tee auto|configfs|sim`: auto uses configfs-tsm when the kernel offers it and otherwise refuses to
 * start. It never falls back to sim: a production enclave that silently produced fake evidence would be caught only
 * by verifiers, and only if they are configured right.
 */
import { configError } from '../../attestation/errors.ts';
import { configfsAvailable, configfsProvider, DEFAULT_TSM_ROOT, type TsmFs } from './configfs.ts';
import type { TeeChoice, TeeProvider } from './provider.ts';
import { simProvider, type SimPlatform } from './sim.ts';

export interface SelectTeeOptions {
  readonly tee: TeeChoice;
  readonly configfsRoot?: string;
  readonly fs?: TsmFs;
  readonly simPlatform?: SimPlatform;
}

export async function selectTee(o: SelectTeeOptions): Promise<TeeProvider> {
  const root = o.configfsRoot ?? DEFAULT_TSM_ROOT;
  const fsOpt = o.fs ? { fs: o.fs } : {};
  switch (o.tee) {
    case 'sim':
      return simProvider({ platform: o.simPlatform ?? 'sim-sev-snp' });
    case 'configfs':
      if (!(await configfsAvailable(root, o.fs))) throw configError('TEE_UNAVAILABLE', `--tee configfs: ${root} is not present (no configfs-tsm in this kernel, or not a confidential VM)`);
      return configfsProvider({ root, ...fsOpt });
    case 'auto':
      if (await configfsAvailable(root, o.fs)) return configfsProvider({ root, ...fsOpt });
      throw configError('TEE_UNAVAILABLE', `--tee auto: no TEE found (${root} is absent); refusing to start. Use --tee sim for a simulated, untrusted test enclave`);
    default:
      throw configError('USAGE', `--tee must be auto, configfs or sim (got ${String(o.tee)})`);
  }
}

export function parseTeeChoice(v: string | undefined): TeeChoice {
  const t = v ?? 'auto';
  if (t !== 'auto' && t !== 'configfs' && t !== 'sim') throw configError('USAGE', `--tee must be auto, configfs or sim (got ${t})`);
  return t;
}
