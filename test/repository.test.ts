/**
 * The repository stands alone: nothing refers to files outside it, every document a comment, a report row or a
 * link names exists, and every `<doc>.md §N` names a section that document has. Runs over the sources, the docs, the
 * scripts and the deployment files (vendored third-party files under test/vectors are data and are left out; their
 * PROVENANCE.md files are in).
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const self = relative(root, fileURLToPath(import.meta.url));
const SKIP_DIRS = new Set(['node_modules', '.tools', '.git', 'dist']);
const TEXT = /\.(ts|js|mjs|md|json|jsonc|sh|html|yaml|yml|conf|env|service|network|postinst)$|^Dockerfile$/;

/** The PROVENANCE.md files under the vendored vectors (gm's own notes; the files beside them are third-party data). */
function provenanceFiles(dir: string): string[] {
  return readdirSync(join(root, dir), { recursive: true, encoding: 'utf8' })
    .map((p) => `${dir}/${p.split(sep).join('/')}`)
    .filter((p) => p.endsWith('/PROVENANCE.md'))
    .sort();
}

function walk(dir: string, out: string[] = []): string[] {
  for (const e of readdirSync(join(root, dir), { withFileTypes: true })) {
    const rel = dir === '' ? e.name : `${dir}/${e.name}`;
    if (e.isDirectory()) {
      if (SKIP_DIRS.has(e.name)) continue;
      if (rel === 'test/vectors') { out.push(...provenanceFiles(rel)); continue; }
      walk(rel, out);
    } else if (TEXT.test(e.name) || rel === '.ci/run' || rel.startsWith('deploy/') || rel.startsWith('bin/')) {
      if (rel !== 'package-lock.json' && rel !== self.split(sep).join('/')) out.push(rel);
    }
  }
  return out;
}

const files = walk('');
const text = new Map(files.map((f) => [f, readFileSync(join(root, f), 'utf8')]));

/** Section numbers a markdown file has: `## 7. Title` gives 7, `### 7.1 Title` gives 7.1. */
function sections(doc: string): Set<string> {
  const found = new Set<string>();
  for (const m of readFileSync(join(root, doc), 'utf8').matchAll(/^#{2,4} (\d+(?:\.\d+)*)\.? /gm)) found.add(m[1] as string);
  return found;
}

describe('the repository refers only to itself', () => {
  it('scans the sources, docs and scripts', () => {
    for (const f of ['README.md', 'CONTRIBUTING.md', 'docs/design.md', 'docs/architecture.md', '.ci/run', 'test/vectors.ts', 'client/attest.ts', 'test/vectors/PROVENANCE.md', 'test/vectors/sev-snp/trustee-azure/PROVENANCE.md']) expect(files).toContain(f);
  });

  it('no file points at a folder beside the checkout', () => {
    const outside = ['../', 'shared/'].join('');
    const hits = files.filter((f) => text.get(f)?.includes(outside));
    expect(hits).toEqual([]);
  });

  it('no file cites a design or style document that is not in the repository', () => {
    const names = [['DESIGN', 'md'], ['STYLE', 'md']].map((p) => p.join('.'));
    const hits = files.flatMap((f) => names.filter((n) => new RegExp(`(^|[^/\\w])${n.replace('.', '\\.')}`).test(text.get(f) ?? '')).map((n) => `${f}: ${n}`));
    expect(hits).toEqual([]);
  });

  it('no file speaks of numbered work items', () => {
    const pattern = new RegExp(['\\bissue', '\\s+#?\\d'].join(''), 'i');
    const hits = files.filter((f) => pattern.test(text.get(f) ?? ''));
    expect(hits).toEqual([]);
  });

  it('every `<doc>.md §N` names a document in the repository and a section it has', () => {
    const docs = new Map<string, string>(); // basename → path
    for (const f of files) if (f.endsWith('.md') && (f.startsWith('docs/') || !f.includes('/') || f === 'test/vectors/PROVENANCE.md')) docs.set(f.split('/').pop() as string, f);
    const bad: string[] = [];
    let checked = 0;
    for (const [f, src] of text) {
      for (const m of src.matchAll(/(?:\b(docs\/)?([A-Za-z-]+\.md)\)?`?,?\s+§(\d+(?:\.\d+)*))/g)) {
        const [, , name, section] = m as unknown as [string, string | undefined, string, string];
        const doc = docs.get(name);
        if (!doc) { bad.push(`${f}: ${name} §${section} (no such document)`); continue; }
        if (!sections(doc).has(section)) bad.push(`${f}: ${doc} has no §${section}`);
        checked++;
      }
    }
    expect(bad).toEqual([]);
    expect(checked).toBeGreaterThan(50);
  });

  it('every test/vectors/ or trust/ path the docs name exists (placeholders such as `<source>` aside)', () => {
    const bad: string[] = [];
    let checked = 0;
    for (const [f, src] of text) {
      if (!f.endsWith('.md') || f.startsWith('test/vectors/')) continue;
      for (const m of src.matchAll(/\b(?:test\/vectors|trust)\/[A-Za-z0-9_./-]*/g)) {
        if (src[(m.index ?? 0) + m[0].length] === '<') continue;
        const path = m[0].replace(/[.,]+$/, '');
        if (!existsSync(join(root, path))) bad.push(`${f}: ${path}`);
        checked++;
      }
    }
    expect(bad).toEqual([]);
    expect(checked).toBeGreaterThan(10);
  });

  it('every relative link in the markdown resolves to a file or folder of the repository', () => {
    const bad: string[] = [];
    for (const [f, src] of text) {
      if (!f.endsWith('.md')) continue;
      for (const m of src.matchAll(/\]\(([^)\s]+)\)/g)) {
        const target = (m[1] as string).split('#')[0] as string;
        if (target === '' || /^[a-z]+:/.test(target)) continue;
        if (!existsSync(resolve(root, dirname(f), target))) bad.push(`${f}: ${m[1]}`);
      }
    }
    expect(bad).toEqual([]);
  });
});
