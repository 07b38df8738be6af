/**
 * The operator's model pools (`gm enclave --pools FILE`, or GM_POOLS naming the file), as the Chutes model router
 * has them: named lists of up to 20 model ids in priority order. A request for `"<pool>"` fails over down the list,
 * `"<pool>:latency"` takes the lowest measured time to first token, `"<pool>:throughput"` the highest tokens per
 * second (enclave/market/constraints.ts). A pool named `default` is what `"model": "default"` means when the request
 * brings no `models` list of its own.
 *
 * The file is a JSON object `{ "<name>": ["model", ...], ... }`. Policy is data: every violation is reported together,
 * nothing unknown is ignored.
 */
import { configError } from '../../attestation/errors.ts';

export const MAX_POOL_MODELS = 20;
const MAX_POOLS = 256;
const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export type Pools = Readonly<Record<string, readonly string[]>>;

export function parsePools(doc: unknown, source = 'pools'): Pools {
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw configError('POOLS_INVALID', `${source}: must be a JSON object of pool name → list of model ids`);
  const problems: string[] = [];
  const out: Record<string, readonly string[]> = {};
  const entries = Object.entries(doc as Record<string, unknown>);
  if (entries.length > MAX_POOLS) problems.push(`at most ${MAX_POOLS} pools (got ${entries.length})`);
  for (const [name, list] of entries) {
    // A pool name may not end like a variant or contain ':' (it would be read as "<pool>:<variant>").
    if (!NAME.test(name)) problems.push(`pool name ${JSON.stringify(name.slice(0, 80))} must be 1..64 of [A-Za-z0-9._-], starting with a letter or digit`);
    if (!Array.isArray(list) || list.length === 0 || list.length > MAX_POOL_MODELS) {
      problems.push(`pool ${JSON.stringify(name.slice(0, 80))} must list 1..${MAX_POOL_MODELS} model ids`);
      continue;
    }
    const bad = list.filter((m) => typeof m !== 'string' || m.length === 0 || m.length > 256);
    if (bad.length > 0) problems.push(`pool ${JSON.stringify(name.slice(0, 80))}: model ids must be non-empty strings of at most 256 characters`);
    if (new Set(list).size !== list.length) problems.push(`pool ${JSON.stringify(name.slice(0, 80))} names a model twice`);
    out[name] = list as string[];
  }
  if (problems.length > 0) throw configError('POOLS_INVALID', `${source}: ${problems.join('; ')}`);
  return out;
}
