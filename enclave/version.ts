/** gm's version, as package.json states it (the CLI's --version and the gm_build_info metric). */
import { readFileSync } from 'node:fs';

let cached: string | undefined;

/** The version in the package.json above this file (sources: ../, built files: ../../); 'unknown' without one. */
export function packageVersion(): string {
  if (cached !== undefined) return cached;
  cached = 'unknown';
  for (const rel of ['../package.json', '../../package.json']) {
    try {
      const p = JSON.parse(readFileSync(new URL(rel, import.meta.url), 'utf8')) as { name?: unknown; version?: unknown };
      if (typeof p.version === 'string' && typeof p.name === 'string' && /(^|\/)gm$/.test(p.name)) {
        cached = p.version;
        break;
      }
    } catch {
      /* not there: try the next level */
    }
  }
  return cached;
}
