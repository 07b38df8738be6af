/**
 * Flag parsing for the client-side commands (`--name value`, `--name=value`, boolean `--flag`, positionals).
 * Unknown flags are usage errors, so a typo never silently drops a check such as `--policy`.
 * Flags may also come from the environment with the same name (docs/design.md §7): `--check-interval` ↔ GM_CHECK_INTERVAL.
 */
import { configError } from '../../attestation/errors.ts';

export interface ArgSpec {
  readonly values: readonly string[];
  readonly booleans: readonly string[];
}

export interface Args {
  readonly values: Readonly<Record<string, string>>;
  readonly flags: ReadonlySet<string>;
  readonly positionals: readonly string[];
}

export function parseArgs(argv: readonly string[], spec: ArgSpec, env: Readonly<Record<string, string | undefined>> = {}): Args {
  const values: Record<string, string> = {};
  const flags = new Set<string>();
  const positionals: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (!a.startsWith('--')) {
      positionals.push(a);
      continue;
    }
    const eq = a.indexOf('=');
    const name = a.slice(2, eq === -1 ? undefined : eq);
    if (spec.booleans.includes(name)) {
      if (eq !== -1) throw configError('USAGE', `--${name} takes no value`);
      flags.add(name);
    } else if (spec.values.includes(name)) {
      const v = eq === -1 ? argv[++i] : a.slice(eq + 1);
      if (v === undefined) throw configError('USAGE', `--${name} needs a value`);
      values[name] = v;
    } else {
      throw configError('USAGE', `unknown option --${name}`);
    }
  }
  for (const name of spec.values) {
    const e = env[`GM_${name.toUpperCase().replace(/-/g, '_')}`];
    if (values[name] === undefined && e !== undefined && e !== '') values[name] = e;
  }
  return { values, flags, positionals };
}
