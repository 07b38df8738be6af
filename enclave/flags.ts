/**
 * Checks of flag values for the services' run() (the flags themselves are parsed by the `gm` command line,
 * cli/commands.ts): errors name the flag.
 */
import { configError } from '../attestation/errors.ts';

export function intFlag(v: string | undefined, name: string, def: number, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  if (v === undefined) return def;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < min || n > max) throw configError('USAGE', `--${name} must be an integer in [${min}, ${max}] (got ${v})`);
  return n;
}

/** An http(s) base URL flag (no query or fragment), without trailing slashes; undefined when not given. */
export function urlFlag(v: string | undefined, name: string): string | undefined {
  if (v === undefined) return undefined;
  let u: URL;
  try {
    u = new URL(v);
  } catch (e) {
    throw configError('USAGE', `--${name} must be an http(s) URL (got ${v})`, { cause: e });
  }
  if ((u.protocol !== 'http:' && u.protocol !== 'https:') || u.search || u.hash || u.username || u.password) throw configError('USAGE', `--${name} must be an http(s) URL without query, fragment or credentials (got ${v})`);
  return u.href.replace(/\/+$/, '');
}
