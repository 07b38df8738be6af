/**
 * Minimal `--name value` / `--flag` parser for the server CLIs. Every flag may also come from the environment as
 * GM_<NAME> (docs/design.md §7: flags and environment variables with the same names); unknown flags are usage errors.
 */
import { configError } from '../attestation/errors.ts';

export type FlagSpec = Record<string, 'string' | 'boolean' | 'list'>;
export type Flags<S extends FlagSpec> = { [K in keyof S]?: S[K] extends 'boolean' ? boolean : S[K] extends 'list' ? string[] : string };

export function parseFlags<S extends FlagSpec>(argv: readonly string[], spec: S, env: Readonly<Record<string, string | undefined>> = {}): Flags<S> {
  const out: Record<string, unknown> = {};
  for (const [k, t] of Object.entries(spec)) {
    const e = env[`GM_${k.toUpperCase().replace(/-/g, '_')}`];
    if (e !== undefined && e !== '') out[k] = t === 'boolean' ? e === '1' || e === 'true' : t === 'list' ? e.split(',') : e;
  }
  const seen = new Set<string>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith('--')) throw configError('USAGE', `unexpected argument ${a}`);
    const [name, inline] = a.slice(2).split(/=(.*)/s, 2) as [string, string | undefined];
    const t = spec[name];
    if (!t) throw configError('USAGE', `unknown flag --${name}`);
    if (t === 'boolean') {
      out[name] = inline === undefined ? true : inline === 'true' || inline === '1';
      continue;
    }
    const v = inline ?? argv[++i];
    if (v === undefined) throw configError('USAGE', `--${name} needs a value`);
    if (t === 'list') {
      out[name] = seen.has(name) ? [...(out[name] as string[]), v] : [v];
      seen.add(name);
    } else out[name] = v;
  }
  return out as Flags<S>;
}

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
