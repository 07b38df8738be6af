/**
 * The operator's model pools (pools.ts) as entries of GET /v1/models and GET /v1/models/{pool}: a client that lists
 * models sees the names it may send as `model`. A pool entry is an OpenAI model object like the others, marked by a
 * `gm_pool` member (absent on plain models) that holds its models in priority order and the routing modes its name
 * takes as a suffix. Its `workers` and `pricing` (per currency, in that currency's units, as models.ts formats them) span every model of the pool with a live offer from a currently
 * verified worker, so they say what a request to the pool may be routed to and what it may cost; `quantizations` is
 * the attested ones among those offers, and `context_length` the context every live model of the pool takes (the
 * smallest of their attested context lengths; null when one of them states none).
 */
import type { OrderBook } from './book.ts';
import { type ModelCard, type PriceRanges, pricingOf, widenPrices } from './models.ts';
import type { Pools } from './pools.ts';

/** The suffixes a pool name takes (constraints.ts): failover order is the bare name. */
export const POOL_MODES = ['latency', 'throughput', 'floor', 'nitro'] as const;

/** A model card over the pool's live models (workers: those with a live offer for any of them), plus the pool. */
export interface PoolCard extends ModelCard {
  readonly gm_pool: {
    /** The pool's models in priority order, as the operator configured them. */
    readonly models: readonly string[];
    /** Those with a live offer now. */
    readonly available: readonly string[];
    /** `"<pool>:<mode>"` picks by measured latency, throughput, price (`floor`) or speed (`nitro`). */
    readonly modes: readonly string[];
  };
}

export function poolCards(book: OrderBook, pools: Pools, now: number): PoolCard[] {
  return Object.keys(pools).sort().map((id) => {
    const members = new Set(pools[id]);
    const workers = new Set<string>();
    const live = new Set<string>();
    const quants = new Set<string>();
    // Per live model: the largest attested context length among its offers (as its own card says), null if none states one.
    const ctx = new Map<string, number | null>();
    const cur: PriceRanges = new Map();
    for (const e of book.offers(now)) {
      const w = e.slot.info;
      const o = e.offer;
      if (!w || w.verifiedUntil <= now || !members.has(o.model)) continue;
      workers.add(o.workerId);
      live.add(o.model);
      if (o.identity) quants.add(o.identity.quantization);
      const c = ctx.get(o.model);
      ctx.set(o.model, o.identity ? Math.max(c ?? 0, o.identity.contextLength) : (c ?? null));
      widenPrices(cur, o);
    }
    const lengths = [...ctx.values()];
    const contextLength = lengths.length > 0 && lengths.every((x) => x !== null) ? Math.min(...(lengths as number[])) : null;
    return {
      id, object: 'model', created: 0, owned_by: 'gm', context_length: contextLength, quantizations: [...quants].sort(), workers: workers.size,
      pricing: pricingOf(cur),
      gm_pool: { models: [...pools[id]!], available: pools[id]!.filter((m) => live.has(m)), modes: [...POOL_MODES] },
    };
  });
}

/**
 * Models and pools in one list, sorted by id. A pool named like a model hides the model's entry: a request naming
 * it routes to the pool (constraints.ts resolves pools first).
 */
export function withPools(models: readonly ModelCard[], pools: readonly PoolCard[]): (ModelCard | PoolCard)[] {
  const names = new Set(pools.map((p) => p.id));
  return [...models.filter((m) => !names.has(m.id)), ...pools].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}
