/**
 * `gm trust import DIR` · `gm trust fetch [--base-url URL]` · `gm trust list` (docs/design.md §3 "Trust anchors").
 *
 * The trust directory (GM_TRUST_DIR, else ~/.config/gm/trust) holds the vendors' public anchor certificates laid
 * out as `<vendor>/<file>`. Every file is checked against the pins compiled into attestation/trust.ts before it is
 * written; a file that fails its pin is refused and nothing of it is written.
 *
 * fetch sources: AMD KDS (https://kdsintf.amd.com, `/vcek/v1/{Milan,Genoa,Turin}/cert_chain` and
 * `/vlek/v1/.../cert_chain`, PEM: ASK or ASVK, then ARK) and Intel's certificate host
 * (https://certificates.trustedservices.intel.com/Intel_SGX_Provisioning_Certification_RootCA.pem). NVIDIA ships
 * its device identity and RIM roots inside its verifier packages, not at a stable URL of its own, so they must be
 * imported (e.g. from an nvtrust checkout), unless --base-url names a mirror that serves every file.
 */
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { GmError } from '../attestation/errors.ts';
import { ANCHOR_FILES, type AnchorFile, checkAnchorFile, trustDirFrom } from '../attestation/trust.ts';
import type { Io } from './io.ts';
import type { JsonFlag } from './commands.ts';

const VENDOR_BASE: Record<AnchorFile['source']['vendor'], string | undefined> = {
  amd: 'https://kdsintf.amd.com',
  intel: 'https://certificates.trustedservices.intel.com',
  nvidia: undefined,
};

const trustDir = (io: Io) => trustDirFrom(io.env, io.env.HOME ?? homedir());

async function readIfPresent(path: string): Promise<Uint8Array | undefined> {
  try {
    return new Uint8Array(await readFile(path));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
}

/** Writes via a temporary file and rename, so a reader never sees half a certificate. */
async function writeAnchor(dir: string, file: AnchorFile, bytes: Uint8Array): Promise<void> {
  const dest = join(dir, file.path);
  await mkdir(dirname(dest), { recursive: true });
  const tmp = `${dest}.tmp-${process.pid}`;
  await writeFile(tmp, bytes);
  await rename(tmp, dest);
}

/** Checks `bytes` against the pins of `file`; prints why when refused. */
async function pinned(io: Io, file: AnchorFile, bytes: Uint8Array, from: string): Promise<boolean> {
  try {
    await checkAnchorFile(file, bytes);
    return true;
  } catch (e) {
    if (!(e instanceof GmError)) throw e;
    io.err(`REFUSED ${file.path} from ${from}: ${e.code}: ${e.message}\n`);
    return false;
  }
}

/** Per-file lines as text, or (--json) one object at the end with every file's status. */
function output(io: Io, json: boolean) {
  const files: Record<string, string>[] = [];
  return {
    file(text: string, row: Record<string, string>): void {
      if (json) files.push(row);
      else io.out(text);
    },
    done(summary: Record<string, unknown>, text: string): void {
      io.out(json ? `${JSON.stringify({ ...summary, files }, null, 2)}\n` : text);
    },
  };
}

/** `gm trust import DIR` */
export async function importDir(io: Io, src: string, f: JsonFlag = {}): Promise<number> {
  const dest = trustDir(io);
  const out = output(io, f.json === true);
  let imported = 0;
  let refused = 0;
  for (const file of ANCHOR_FILES) {
    // Accept the trust-directory layout (<vendor>/<file>) or all files side by side.
    const candidates = [join(src, file.path), join(src, file.path.split('/').pop()!)];
    let bytes: Uint8Array | undefined;
    let from = '';
    for (const c of candidates) {
      bytes = await readIfPresent(c);
      from = c;
      if (bytes) break;
    }
    if (!bytes) {
      out.file(`absent   ${file.path}\n`, { path: file.path, status: 'absent' });
      continue;
    }
    if (!(await pinned(io, file, bytes, from))) {
      out.file('', { path: file.path, status: 'refused', from });
      refused++;
      continue;
    }
    await writeAnchor(dest, file, bytes);
    imported++;
    out.file(`imported ${file.path} (${file.pins.map((p) => p.name).join(', ')})\n`, { path: file.path, status: 'imported', from });
  }
  out.done({ trustDir: dest, imported, refused }, `${imported} file(s) imported into ${dest}; ${refused} refused\n`);
  if (refused > 0) return 1;
  if (imported === 0) {
    io.err(`gm trust import: no pinned anchor file found in ${src}\n`);
    return 2;
  }
  return 0;
}

/** `gm trust fetch [--base-url URL]` */
export async function fetchAll(io: Io, f: { readonly 'base-url'?: string; readonly json?: boolean } = {}): Promise<number> {
  const baseUrl = f['base-url'];
  const dest = trustDir(io);
  const out = output(io, f.json === true);
  let fetched = 0;
  let failed = 0;
  for (const file of ANCHOR_FILES) {
    const base = baseUrl ?? VENDOR_BASE[file.source.vendor];
    if (!base) {
      out.file(`skipped  ${file.path}: ${file.source.vendor} has no download URL; use \`gm trust import DIR\`\n`, { path: file.path, status: 'skipped' });
      continue;
    }
    const url = new URL(file.source.path.replace(/^\//, ''), base.endsWith('/') ? base : `${base}/`).href;
    let bytes: Uint8Array;
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(20_000), redirect: 'error' });
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      bytes = new Uint8Array(await res.arrayBuffer());
    } catch (e) {
      io.err(`FAILED  ${file.path} from ${url}: ${(e as Error).message}\n`);
      out.file('', { path: file.path, status: 'failed', from: url });
      failed++;
      continue;
    }
    if (!(await pinned(io, file, bytes, url))) {
      out.file('', { path: file.path, status: 'refused', from: url });
      failed++;
      continue;
    }
    await writeAnchor(dest, file, bytes);
    fetched++;
    out.file(`fetched  ${file.path} from ${url}\n`, { path: file.path, status: 'fetched', from: url });
  }
  out.done({ trustDir: dest, fetched, failed }, `${fetched} file(s) written to ${dest}; ${failed} failed or refused\n`);
  return failed > 0 ? 1 : 0;
}

/** `gm trust list` */
export async function list(io: Io, f: JsonFlag = {}): Promise<number> {
  const dir = trustDir(io);
  const out = output(io, f.json === true);
  if (!f.json) io.out(`trust directory: ${dir}\n`);
  let bad = 0;
  for (const file of ANCHOR_FILES) {
    const bytes = await readIfPresent(join(dir, file.path));
    let status = 'missing';
    if (bytes) {
      try {
        await checkAnchorFile(file, bytes);
        status = 'ok';
      } catch (e) {
        if (!(e instanceof GmError)) throw e;
        status = `PIN MISMATCH (${e.message})`;
        bad++;
      }
    }
    out.file(`${status === 'ok' ? 'ok     ' : status === 'missing' ? 'missing' : 'BAD    '}  ${file.path.padEnd(28)} ${file.pins.map((p) => `${p.name} ${p.sha256.slice(0, 16)}…`).join(', ')}${status.startsWith('PIN') ? `  ${status}` : ''}\n`, { path: file.path, status: status === 'ok' || status === 'missing' ? status : 'pin-mismatch', pins: file.pins.map((p) => `${p.name} ${p.sha256}`).join(', ') });
  }
  out.done({ trustDir: dir, bad }, '');
  return bad > 0 ? 1 : 0;
}
