/**
 * `npm run bench`: runs every bench/*.bench.ts (or those named on the command line) in one process, one after the
 * other so they do not compete for the two cores, and prints each figure with its floor and ratio.
 */
import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { type BenchRow, printRows } from './harness.ts';

const here = dirname(fileURLToPath(import.meta.url));
const only = process.argv.slice(2);
const files = readdirSync(here).filter((f) => f.endsWith('.bench.ts') && (only.length === 0 || only.some((o) => f.includes(o)))).sort();
let misses = 0;
for (const f of files) {
  const mod = (await import(pathToFileURL(join(here, f)).href)) as { title: string; run(): Promise<BenchRow[]> };
  const rows = await mod.run();
  printRows(mod.title, rows);
  misses += rows.filter((r) => !r.ok).length;
}
console.log(`\n${files.length} benchmark file(s); ${misses} figure(s) outside target`);
