/**
 * test/vectors/MANIFEST.sha256 pins every vendored vector file (PROVENANCE.md says where each comes from): a file that
 * is missing, changed, or present but unlisted fails here, so a vector cannot drift from its recorded provenance.
 */
import { createHash } from 'node:crypto';
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, sep } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { hasVectors, VECTORS_DIR } from './vectors.ts';

const MANIFEST = 'MANIFEST.sha256';

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => relative(dir, join(e.parentPath, e.name)).split(sep).join('/'))
    .filter((p) => p !== MANIFEST)
    .sort();
}

/** Every discrepancy between a vectors folder and its manifest, one line each (empty when they agree). */
function manifestProblems(dir: string): string[] {
  const problems: string[] = [];
  const listed = new Map<string, string>();
  for (const [i, line] of readFileSync(join(dir, MANIFEST), 'utf8').split('\n').entries()) {
    if (line === '') continue;
    const m = /^([0-9a-f]{64}) {2}\.\/(\S(?:.*\S)?)$/.exec(line);
    if (!m) { problems.push(`line ${i + 1}: not "<sha256>  ./<path>"`); continue; }
    const digest = m[1] as string;
    const path = m[2] as string;
    if (listed.has(path)) problems.push(`${path}: listed twice`);
    listed.set(path, digest);
  }
  const present = new Set(filesUnder(dir));
  for (const [path, digest] of listed) {
    if (!present.has(path)) { problems.push(`${path}: listed but missing`); continue; }
    const actual = createHash('sha256').update(readFileSync(join(dir, path))).digest('hex');
    if (actual !== digest) problems.push(`${path}: sha256 ${actual}, manifest says ${digest}`);
  }
  for (const path of present) if (!listed.has(path)) problems.push(`${path}: not in ${MANIFEST}`);
  return problems;
}

describe.skipIf(!hasVectors)('vendored vectors match MANIFEST.sha256', () => {
  const scratch = mkdtempSync(join(tmpdir(), 'gm-manifest-'));
  afterAll(() => rmSync(scratch, { recursive: true, force: true }));

  it('every file is listed once, present, and has its recorded digest', () => {
    const fix = 'record each new file in test/vectors/PROVENANCE.md, then: cd test/vectors && find . -type f ! -name MANIFEST.sha256 | LC_ALL=C sort | xargs sha256sum > MANIFEST.sha256';
    expect(manifestProblems(VECTORS_DIR), fix).toEqual([]);
    // the folders the tests read are all covered
    const listed = filesUnder(VECTORS_DIR);
    for (const top of ['sev-snp/', 'tdx/', 'nvidia/', 'protocol/', 'measure/', 'LICENSES/']) expect(listed.some((p) => p.startsWith(top))).toBe(true);
    expect(listed).toContain('PROVENANCE.md');
  });

  it('a changed byte, a removed file and an unlisted file are each reported', () => {
    const copy = join(scratch, 'v');
    cpSync(VECTORS_DIR, copy, { recursive: true });
    const flipped = join(copy, 'tdx/dcap-qvl/tdx_quote');
    const bytes = readFileSync(flipped);
    bytes[100] = (bytes[100] ?? 0) ^ 1;
    writeFileSync(flipped, bytes);
    rmSync(join(copy, 'protocol/ohttp/rfc9458-appendixA.json'));
    writeFileSync(join(copy, 'sev-snp/extra.bin'), new Uint8Array([1]));
    const problems = manifestProblems(copy);
    expect(problems).toHaveLength(3);
    expect(problems.some((p) => p.startsWith('tdx/dcap-qvl/tdx_quote: sha256 '))).toBe(true);
    expect(problems).toContain('protocol/ohttp/rfc9458-appendixA.json: listed but missing');
    expect(problems).toContain(`sev-snp/extra.bin: not in ${MANIFEST}`);
  });
});
