/**
 * configfs-tsm provider (Linux Documentation/ABI/testing/configfs-tsm-report; docs/design.md §3 "Real TEE providers"):
 * one report entry per request under /sys/kernel/config/tsm/report, write the 64-byte REPORT_DATA to `inblob`,
 * read `outblob` (SEV-SNP ATTESTATION_REPORT or TDX quote), `auxblob` (SEV-SNP certificate table, optional) and
 * `provider` (`sev_guest` or `tdx_guest`).
 *
 * `generation` counts writes to the entry's attributes. The ABI says a reader detects a concurrent writer by
 * checking that the generation after reading `outblob` is exactly one more than before its own write; when it is
 * not, someone else changed the inputs under us and the report may not carry our REPORT_DATA, so we retry.
 */
import { randomBytes } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import { join } from 'node:path';
import type { BundlePlatform } from '../../attestation/bundle.ts';
import { configError, unavailable } from '../../attestation/errors.ts';
import { parseSnpCertTable } from './snp-certs.ts';
import type { CpuEvidence, TeeProvider } from './provider.ts';

export const DEFAULT_TSM_ROOT = '/sys/kernel/config/tsm/report';

/** The file operations used (node:fs/promises satisfies it; tests wrap it to simulate the kernel). */
export interface TsmFs {
  mkdir(path: string): Promise<unknown>;
  rmdir(path: string): Promise<unknown>;
  writeFile(path: string, data: Uint8Array): Promise<unknown>;
  readFile(path: string): Promise<Uint8Array>;
  access(path: string): Promise<unknown>;
}

export const nodeTsmFs: TsmFs = {
  mkdir: (p) => fsp.mkdir(p),
  rmdir: (p) => fsp.rmdir(p),
  writeFile: (p, d) => fsp.writeFile(p, d),
  readFile: async (p) => new Uint8Array(await fsp.readFile(p)),
  access: (p) => fsp.access(p),
};

export interface ConfigfsOptions {
  readonly root?: string;
  readonly fs?: TsmFs;
  /** Attempts when the generation changes under us. */
  readonly maxAttempts?: number;
}

const PROVIDERS: Record<string, Extract<BundlePlatform, 'sev-snp' | 'tdx'>> = { sev_guest: 'sev-snp', tdx_guest: 'tdx' };

/** True when a configfs-tsm report directory is present (used by `--tee auto`). */
export async function configfsAvailable(root = DEFAULT_TSM_ROOT, fs: TsmFs = nodeTsmFs): Promise<boolean> {
  try {
    await fs.access(root);
    return true;
  } catch {
    return false;
  }
}

const text = (b: Uint8Array) => new TextDecoder().decode(b).trim();

function generationOf(b: Uint8Array): number {
  const s = text(b);
  if (!/^\d+$/.test(s)) throw unavailable('TEE_CONFIGFS_BAD_GENERATION', `configfs-tsm generation is not a number: ${JSON.stringify(s.slice(0, 20))}`);
  return Number(s);
}

/** Asks the kernel for one report bound to `reportData`; returns the platform as the provider attribute names it. */
export async function configfsReport(reportData: Uint8Array, o: ConfigfsOptions = {}): Promise<CpuEvidence> {
  if (reportData.length !== 64) throw configError('TEE_REPORT_DATA_SIZE', `REPORT_DATA must be 64 bytes (got ${reportData.length})`);
  const root = o.root ?? DEFAULT_TSM_ROOT;
  const fs = o.fs ?? nodeTsmFs;
  const attempts = o.maxAttempts ?? 3;
  // A private entry per request: other agents use their own, so conflicts are rare; the generation check catches them.
  const entry = join(root, `gm-${process.pid}-${Buffer.from(randomBytes(6)).toString('hex')}`);
  try {
    await fs.mkdir(entry);
  } catch (e) {
    throw unavailable('TEE_CONFIGFS_UNAVAILABLE', `cannot create configfs-tsm report entry under ${root}`, { cause: e });
  }
  try {
    for (let attempt = 1; attempt <= attempts; attempt++) {
      const before = generationOf(await fs.readFile(join(entry, 'generation')));
      await fs.writeFile(join(entry, 'inblob'), reportData);
      const outblob = await fs.readFile(join(entry, 'outblob'));
      let auxblob: Uint8Array | undefined;
      try {
        auxblob = await fs.readFile(join(entry, 'auxblob'));
      } catch (e) {
        // auxblob is optional in the ABI (TDX has none; SNP without host-provided certificates has none).
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT' && (e as NodeJS.ErrnoException).code !== 'ENXIO') throw e;
      }
      const provider = text(await fs.readFile(join(entry, 'provider')));
      const after = generationOf(await fs.readFile(join(entry, 'generation')));
      if (after !== before + 1) continue; // someone else wrote an attribute between our write and our read
      const platform = PROVIDERS[provider];
      if (!platform) throw configError('TEE_PROVIDER_UNKNOWN', `configfs-tsm provider "${provider}" is not supported (sev_guest, tdx_guest)`);
      if (outblob.length === 0) throw unavailable('TEE_CONFIGFS_EMPTY', 'configfs-tsm returned an empty outblob');
      const certs = platform === 'sev-snp' && auxblob && auxblob.length > 0 ? parseSnpCertTable(auxblob) : [];
      return { platform, evidence: outblob, certs, collateral: {} };
    }
    throw unavailable('TEE_CONFIGFS_CONTENDED', `configfs-tsm generation changed under us ${attempts} times; another writer shares the entry`);
  } finally {
    await fs.rmdir(entry).catch(() => undefined);
  }
}

export function configfsProvider(o: ConfigfsOptions = {}): TeeProvider {
  return {
    kind: 'configfs',
    sim: false,
    cpuEvidence: (reportData) => configfsReport(reportData, o),
  };
}
