/**
 * The repository's trust/ folder is a complete trust directory for `gm trust import trust`: every file the pin table
 * (attestation/trust.ts ANCHOR_FILES) names is there and matches its pins, nothing else is, and trust/README.md
 * prints the same fingerprints as the code pins, file by file.
 */
import { readdirSync, readFileSync } from 'node:fs';
import * as fsp from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { ANCHOR_FILES, loadTrustStore } from '../attestation/trust.ts';

const trustDir = resolve(dirname(fileURLToPath(import.meta.url)), '..', 'trust');

describe('trust/', () => {
  it('holds every pinned file, each matching its pins, and no other certificate file', async () => {
    const store = await loadTrustStore(trustDir, fsp);
    expect(store.missing).toEqual([]);
    // One entry per anchor: an ARK appears in both its VCEK and its VLEK chain file.
    expect(store.entries.length).toBe(new Set(ANCHOR_FILES.flatMap((f) => f.pins.map((p) => `${p.role}/${p.product ?? ''}`))).size);
    const pems = readdirSync(trustDir, { recursive: true, encoding: 'utf8' }).filter((p) => p.endsWith('.pem')).map((p) => p.split('\\').join('/')).sort();
    expect(pems).toEqual(ANCHOR_FILES.map((f) => f.path).sort());
  });

  it('README.md lists each file with exactly the fingerprints the code pins', () => {
    const rows = new Map<string, string>();
    for (const line of readFileSync(join(trustDir, 'README.md'), 'utf8').split('\n')) {
      const m = /^\| ([a-z]+\/[a-z0-9_]+\.pem) \|/.exec(line);
      if (m) rows.set(m[1] as string, line);
    }
    expect([...rows.keys()].sort()).toEqual(ANCHOR_FILES.map((f) => f.path).sort());
    for (const f of ANCHOR_FILES) {
      const printed = (rows.get(f.path) ?? '').match(/\b[0-9A-F]{64}\b/g) ?? [];
      // A file's ARK is printed once per product ("ARK as above"), so compare the set of fingerprints per file.
      const pinned = new Set(f.pins.map((p) => p.sha256));
      for (const fp of printed) expect(pinned.has(fp), `${f.path}: README prints ${fp}, which is not pinned`).toBe(true);
      const arkElsewhere = /ARK as above/.test(rows.get(f.path) ?? '');
      for (const p of f.pins) {
        if (arkElsewhere && p.role === 'amd-ark') continue;
        expect(printed, `${f.path}: ${p.name} pin missing from README`).toContain(p.sha256);
      }
    }
  });
});
