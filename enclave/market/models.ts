/**
 * The model cards of GET /v1/models and /v1/models/{id} (OpenAI's model object, with the fields OpenRouter's models
 * list adds for routing choices): for each model with a live offer from a currently verified worker, the range of
 * its offered prices per 1M input and output tokens in currency units, per currency: offers price in settlement
 * units (protocol/offer-terms.ts: micro-USD for USD, rao for TAO, micro-units otherwise), shown as exact decimal
 * strings of the currency, never floats ("0.1" USD for 100000 micro-USD, "0.1" TAO for 100000000 rao), as the
 * status page shows them; and how many attested workers offer it. `context_length` is the largest context
 * length among the model's live offers that state an attested model identity (protocol/model-identity.ts), and
 * null when none does, rather than a guess. `quantizations` lists the attested quantizations offered.
 */
import { microsToDecimal, type Offer } from '../../protocol/offer.ts';
import { unitsToDecimal } from '../../protocol/offer-terms.ts';
import type { OrderBook } from './book.ts';

export { microsToDecimal };

export interface PriceRange {
  readonly min: string;
  readonly max: string;
}

export interface ModelCard {
  readonly id: string;
  readonly object: 'model';
  readonly created: 0;
  readonly owned_by: 'gm';
  readonly context_length: number | null;
  /** Attested quantizations among the live offers, sorted (empty when no offer states an identity). */
  readonly quantizations: readonly string[];
  /** Attested workers with a live offer for the model. */
  readonly workers: number;
  /** One entry per currency offered, prices per 1M tokens in that currency's unit. */
  readonly pricing: readonly { readonly currency: string; readonly input_per_1m: PriceRange; readonly output_per_1m: PriceRange }[];
}

type Pricing = ModelCard['pricing'];

/** Per currency, the lowest and highest offered prices (settlement units per 1M tokens). */
export type PriceRanges = Map<string, { inMin: bigint; inMax: bigint; outMin: bigint; outMax: bigint }>;

/** Widens the currency's ranges to take in the offer's prices. */
export function widenPrices(ranges: PriceRanges, o: Offer): void {
  const r = ranges.get(o.currency);
  if (!r) ranges.set(o.currency, { inMin: o.pricePerMInput, inMax: o.pricePerMInput, outMin: o.pricePerMOutput, outMax: o.pricePerMOutput });
  else {
    r.inMin = o.pricePerMInput < r.inMin ? o.pricePerMInput : r.inMin;
    r.inMax = o.pricePerMInput > r.inMax ? o.pricePerMInput : r.inMax;
    r.outMin = o.pricePerMOutput < r.outMin ? o.pricePerMOutput : r.outMin;
    r.outMax = o.pricePerMOutput > r.outMax ? o.pricePerMOutput : r.outMax;
  }
}

/** The card's `pricing`: one entry per currency, sorted, each amount in that currency's units. */
export function pricingOf(ranges: PriceRanges): Pricing {
  return [...ranges.entries()].sort(([a], [b]) => (a < b ? -1 : 1)).map(([currency, r]) => {
    const d = (x: bigint): string => unitsToDecimal(x, currency);
    return { currency, input_per_1m: { min: d(r.inMin), max: d(r.inMax) }, output_per_1m: { min: d(r.outMin), max: d(r.outMax) } };
  });
}

export function modelCards(book: OrderBook, now: number): ModelCard[] {
  const by = new Map<string, { workers: Set<string>; ctx: number | null; quants: Set<string>; cur: PriceRanges }>();
  for (const e of book.offers(now)) {
    const w = e.slot.info;
    if (!w || w.verifiedUntil <= now) continue;
    const o = e.offer;
    let m = by.get(o.model);
    if (!m) by.set(o.model, (m = { workers: new Set(), ctx: null, quants: new Set(), cur: new Map() }));
    m.workers.add(o.workerId);
    if (o.identity) {
      m.ctx = Math.max(m.ctx ?? 0, o.identity.contextLength);
      m.quants.add(o.identity.quantization);
    }
    widenPrices(m.cur, o);
  }
  return [...by.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([id, m]) => ({
    id, object: 'model', created: 0, owned_by: 'gm', context_length: m.ctx, quantizations: [...m.quants].sort(), workers: m.workers.size,
    pricing: pricingOf(m.cur),
  }));
}
