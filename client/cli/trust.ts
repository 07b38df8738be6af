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
import { GmError } from '../../attestation/errors.ts';
import { ANCHOR_FILES, type AnchorFile, checkAnchorFile, trustDirFrom } from '../../attestation/trust.ts';
import type { Io } from './io.ts';
import { parseArgs } from './verify-snp.ts';

const VENDOR_BASE: Record<AnchorFile['source']['vendor'], string | undefined> = {
  amd: 'https://kdsintf.amd.com',
  intel: 'https://certificates.trustedservices.intel.com',
  nvidia: undefined,
};

const USAGE = 'usage: gm trust import DIR | gm trust fetch [--base-url URL] | gm trust list\n';

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

async function importDir(io: Io, src: string): Promise<number> {
  const dest = trustDir(io);
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
      io.out(`absent   ${file.path}\n`);
      continue;
    }
    if (!(await pinned(io, file, bytes, from))) {
      refused++;
      continue;
    }
    await writeAnchor(dest, file, bytes);
    imported++;
    io.out(`imported ${file.path} (${file.pins.map((p) => p.name).join(', ')})\n`);
  }
  io.out(`${imported} file(s) imported into ${dest}; ${refused} refused\n`);
  if (refused > 0) return 1;
  if (imported === 0) {
    io.err(`gm trust import: no pinned anchor file found in ${src}\n`);
    return 2;
  }
  return 0;
}

async function fetchAll(io: Io, baseUrl: string | undefined): Promise<number> {
  const dest = trustDir(io);
  let fetched = 0;
  let failed = 0;
  for (const file of ANCHOR_FILES) {
    const base = baseUrl ?? VENDOR_BASE[file.source.vendor];
    if (!base) {
      io.out(`skipped  ${file.path}: ${file.source.vendor} has no download URL; use \`gm trust import DIR\`\n`);
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
      failed++;
      continue;
    }
    if (!(await pinned(io, file, bytes, url))) {
      failed++;
      continue;
    }
    await writeAnchor(dest, file, bytes);
    fetched++;
    io.out(`fetched  ${file.path} from ${url}\n`);
  }
  io.out(`${fetched} file(s) written to ${dest}; ${failed} failed or refused\n`);
  return failed > 0 ? 1 : 0;
}

async function list(io: Io): Promise<number> {
  const dir = trustDir(io);
  io.out(`trust directory: ${dir}\n`);
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
    io.out(`${status === 'ok' ? 'ok     ' : status === 'missing' ? 'missing' : 'BAD    '}  ${file.path.padEnd(28)} ${file.pins.map((p) => `${p.name} ${p.sha256.slice(0, 16)}…`).join(', ')}${status.startsWith('PIN') ? `  ${status}` : ''}\n`);
  }
  return bad > 0 ? 1 : 0;
}

export async function run(argv: string[], io: Io): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === 'import') {
    if (rest.length !== 1 || rest[0]!.startsWith('--')) {
      io.err(`gm trust import: one DIR expected\n${USAGE}`);
      return 2;
    }
    return importDir(io, rest[0]!);
  }
  if (sub === 'fetch') {
    const args = parseArgs(rest, ['--base-url'], []);
    if (typeof args === 'string') {
      io.err(`gm trust fetch: ${args}\n${USAGE}`);
      return 2;
    }
    const base = args.values['--base-url'];
    if (base !== undefined && !/^https?:\/\//.test(base)) {
      io.err(`gm trust fetch: --base-url must be an http(s) URL\n${USAGE}`);
      return 2;
    }
    return fetchAll(io, base);
  }
  if (sub === 'list' && rest.length === 0) return list(io);
  io.err(USAGE);
  return 2;
}
