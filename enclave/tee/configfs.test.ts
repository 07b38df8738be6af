import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isGmError } from '../../attestation/errors.ts';
import { configfsReport, nodeTsmFs, type TsmFs } from './configfs.ts';
import { selectTee } from './select.ts';
import { buildSnpCertTable, parseSnpCertTable } from './snp-certs.ts';

/** A fake kernel over a temp directory: mkdir makes the attributes, an inblob write produces outblob. */
function fakeKernel(provider: string, o: { contend?: number; aux?: Uint8Array } = {}): TsmFs & { writes: number } {
  let contend = o.contend ?? 0;
  const k = {
    ...nodeTsmFs,
    writes: 0,
    async mkdir(p: string) {
      await nodeTsmFs.mkdir(p);
      await writeFile(join(p, 'provider'), `${provider}\n`);
      await writeFile(join(p, 'generation'), '0\n');
    },
    async rmdir(p: string) {
      await rm(p, { recursive: true }); // configfs removes attributes with the directory
    },
    async writeFile(p: string, d: Uint8Array) {
      k.writes++;
      await writeFile(p, d);
      const dir = join(p, '..');
      const gen = Number((await readFile(join(dir, 'generation'), 'utf8')).trim());
      await writeFile(join(dir, 'generation'), `${gen + 1}\n`);
      // the "report": a marker plus the REPORT_DATA it was bound to
      await writeFile(join(dir, 'outblob'), Buffer.concat([Buffer.from('REPORT:'), Buffer.from(d)]));
      if (o.aux) await writeFile(join(dir, 'auxblob'), o.aux);
    },
    async readFile(p: string) {
      if (p.endsWith('outblob') && contend > 0) {
        contend--;
        const dir = join(p, '..');
        const gen = Number((await readFile(join(dir, 'generation'), 'utf8')).trim());
        await writeFile(join(dir, 'generation'), `${gen + 1}\n`); // another writer touched the entry
      }
      return nodeTsmFs.readFile(p);
    },
  };
  return k;
}

let root: string;
beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'gm-tsm-'));
});
afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});
const rd = new Uint8Array(64).map((_, i) => i);

describe('configfs-tsm provider', () => {
  it('writes REPORT_DATA to inblob and returns outblob, provider and certificates from auxblob', async () => {
    const aux = buildSnpCertTable({ vcek: Uint8Array.of(1, 1), ask: Uint8Array.of(2), ark: Uint8Array.of(3, 3, 3) });
    const ev = await configfsReport(rd, { root, fs: fakeKernel('sev_guest', { aux }) });
    expect(ev.platform).toBe('sev-snp');
    expect(Buffer.from(ev.evidence).subarray(7)).toEqual(Buffer.from(rd));
    expect(ev.certs).toEqual([Uint8Array.of(1, 1), Uint8Array.of(2), Uint8Array.of(3, 3, 3)]);
    expect(await readdir(root)).toEqual([]); // the entry is removed
  });

  it('serves TDX (no auxblob)', async () => {
    const ev = await configfsReport(rd, { root, fs: fakeKernel('tdx_guest') });
    expect(ev.platform).toBe('tdx');
    expect(ev.certs).toEqual([]);
  });

  it('retries when the generation changes under it, and gives up after maxAttempts', async () => {
    const k = fakeKernel('sev_guest', { contend: 1 });
    await configfsReport(rd, { root, fs: k });
    expect(k.writes).toBe(2);
    const e = await configfsReport(rd, { root, fs: fakeKernel('sev_guest', { contend: 5 }), maxAttempts: 3 }).catch((x) => x);
    expect(isGmError(e, 'TEE_CONFIGFS_CONTENDED')).toBe(true);
  });

  it('refuses unknown providers and a wrong REPORT_DATA size', async () => {
    expect(isGmError(await configfsReport(rd, { root, fs: fakeKernel('arm_cca_guest') }).catch((x) => x), 'TEE_PROVIDER_UNKNOWN')).toBe(true);
    expect(isGmError(await configfsReport(rd.subarray(0, 32), { root, fs: fakeKernel('sev_guest') }).catch((x) => x), 'TEE_REPORT_DATA_SIZE')).toBe(true);
  });

  it('--tee auto uses configfs when present and refuses to start otherwise (never sim)', async () => {
    expect((await selectTee({ tee: 'auto', configfsRoot: root })).kind).toBe('configfs');
    const e = await selectTee({ tee: 'auto', configfsRoot: join(root, 'absent') }).catch((x) => x);
    expect(isGmError(e, 'TEE_UNAVAILABLE')).toBe(true);
    expect(isGmError(await selectTee({ tee: 'configfs', configfsRoot: join(root, 'absent') }).catch((x) => x), 'TEE_UNAVAILABLE')).toBe(true);
  });

  it('rejects certificate tables that point outside themselves or lack a terminator', () => {
    const t = buildSnpCertTable({ vcek: Uint8Array.of(1) });
    const bad = t.slice();
    new DataView(bad.buffer).setUint32(20, 1000, true);
    expect(() => parseSnpCertTable(bad)).toThrow(/outside/);
    const noEnd = t.slice(0, 24);
    new DataView(noEnd.buffer).setUint32(16, 0, true); // entry points at the table itself, no zero entry follows
    expect(() => parseSnpCertTable(noEnd)).toThrow(/terminating/);
  });
});
