import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

// protocol/ must run in browsers (docs/design.md §2): only protocol/node/ may use Node APIs, and nothing else may import it.
const here = dirname(fileURLToPath(import.meta.url));

describe('protocol/ is runtime-agnostic', () => {
  const files = readdirSync(here).filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts'));

  it('has no node: imports and does not import protocol/node/ outside tests', () => {
    expect(files.length).toBeGreaterThan(5);
    for (const f of files) {
      const src = readFileSync(join(here, f), 'utf8');
      expect(src, f).not.toMatch(/from\s+['"]node:/);
      expect(src, f).not.toMatch(/import\(\s*['"]node:/);
      expect(src, f).not.toMatch(/from\s+['"]\.\/node\//);
      expect(src, f).not.toMatch(/\bBuffer\b|\bprocess\./);
    }
  });
});
