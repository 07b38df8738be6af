/**
 * A model's offers as bitsets over the best-execution tree's leaf order, for the eligibility bitmap the receipt
 * commits to (protocol/best-execution.ts). The bitmap covers every considered offer on every request, so it is
 * computed a 32-bit word of offers at a time: the constraints that depend only on an offer's signed fields (payment
 * kind, currency, quantization, weights, parameters) are one bitset per value, built once per change to the model's
 * offers and combined per request with a few hundred word operations; the others clear bits only where they exclude
 * something, walking short lists:
 *   price cap   the offers over it, from the expensive end of the price-sorted lists (offers with price terms are
 *               judged by protocol/offer-terms.ts withinPriceCap);
 *   worker      per (worker, model): all of its offers when the worker is unverified, tripped or demoted, those at
 *               capacity when its in-flight count reaches their capacity;
 *   validity    only when `now` is outside the window every offer shares (the book compacts expired offers away).
 * The set this computes is the set select.ts `visit` admits; a property test holds the two to each other.
 */
import { withinPriceCap } from '../../protocol/offer-terms.ts';
import type { BookEntry, WorkerSlot } from './book.ts';
import type { LiveStats } from './stats.ts';
import { withinPriceCapNumber } from './terms-number.ts';

/** One (worker, model): its offers share the worker's slot and the live stats. */
interface Group {
  readonly slot: WorkerSlot;
  readonly stats: LiveStats;
  readonly entries: readonly BookEntry[];
  /** The smallest capacity among the entries: below it in-flight excludes none of them. */
  readonly minCapacity: number;
}

export interface ModelColumns {
  /** The offers in leaf order (entries[i].leafIndex === i). */
  readonly entries: readonly BookEntry[];
  /** 32-bit words per bitset. */
  readonly words: number;
  /** Offers of each payment kind, indexed by log2 of TERMS_BIT. */
  readonly terms: readonly Uint32Array[];
  readonly currency: ReadonlyMap<string, Uint32Array>;
  /** Offers stating each quantization / weights digest (hex); offers stating none are in neither map. */
  readonly quant: ReadonlyMap<string, Uint32Array>;
  readonly weight: ReadonlyMap<string, Uint32Array>;
  /** Offers declaring each parameter bit (protocol/model-identity.ts parameterMask). */
  readonly param: ReadonlyMap<number, Uint32Array>;
  readonly groups: readonly Group[];
  /** Offers with price terms: a price cap judges them by withinPriceCap, not by the sorted lists. */
  readonly termed: readonly BookEntry[];
  /** Ascending quoted input price, and ascending outFloor (the book's sortedFor lists). */
  readonly byIn: readonly BookEntry[];
  readonly byOut: readonly BookEntry[];
  /** Every offer is valid in [maxFromS, minUntilS) (seconds). */
  readonly maxFromS: number;
  readonly minUntilS: number;
}

const setBit = (w: Uint32Array, i: number): void => {
  w[i >>> 5]! |= 1 << (i & 31);
};
const clearBit = (w: Uint32Array, i: number): void => {
  w[i >>> 5]! &= ~(1 << (i & 31));
};

/** Columns over `sorted` (the entries in leaf order, leafIndex set) and the model's two price-sorted lists. */
export function buildColumns(sorted: readonly BookEntry[], byIn: readonly BookEntry[], byOut: readonly BookEntry[]): ModelColumns {
  const words = (sorted.length + 31) >>> 5;
  const terms = [new Uint32Array(words), new Uint32Array(words), new Uint32Array(words)];
  const currency = new Map<string, Uint32Array>();
  const quant = new Map<string, Uint32Array>();
  const weight = new Map<string, Uint32Array>();
  const param = new Map<number, Uint32Array>();
  const groups = new Map<LiveStats, { slot: WorkerSlot; stats: LiveStats; entries: BookEntry[]; minCapacity: number }>();
  const termed: BookEntry[] = [];
  const of = <K>(m: Map<K, Uint32Array>, k: K): Uint32Array => {
    let w = m.get(k);
    if (!w) m.set(k, (w = new Uint32Array(words)));
    return w;
  };
  let maxFromS = -Infinity;
  let minUntilS = Infinity;
  for (let i = 0; i < sorted.length; i++) {
    const e = sorted[i]!;
    setBit(terms[31 - Math.clz32(e.termsBit)]!, i);
    setBit(of(currency, e.currency), i);
    if (e.quantization !== undefined) setBit(of(quant, e.quantization), i);
    if (e.weightsHex !== undefined) setBit(of(weight, e.weightsHex), i);
    for (let m = e.paramMask; m !== 0; m &= m - 1) setBit(of(param, m & -m), i);
    let g = groups.get(e.stats);
    if (!g) groups.set(e.stats, (g = { slot: e.slot, stats: e.stats, entries: [], minCapacity: Infinity }));
    g.entries.push(e);
    if (e.capacity < g.minCapacity) g.minCapacity = e.capacity;
    if (e.priceTerms !== undefined) termed.push(e);
    if (e.fromS > maxFromS) maxFromS = e.fromS;
    if (e.untilS < minUntilS) minUntilS = e.untilS;
  }
  return { entries: sorted, words, terms, currency, quant, weight, param, groups: [...groups.values()], termed, byIn, byOut, maxFromS, minUntilS };
}

/** What a request asks of an offer, as the selection parsed it (see select.ts `visit`, which ranks by the same). */
export interface EligibilityRule {
  readonly nowMs: number;
  readonly nowS: number;
  /** Quoted caps as Numbers (Infinity: none) and as bigints, with the token figures the cap is judged at. */
  readonly maxIn: number;
  readonly maxOut: number;
  readonly cap: { readonly maxIn?: bigint; readonly maxOut?: bigint };
  readonly expIn: number;
  readonly expOut: number;
  /** True when the Number forms of the price terms functions are exact for this book and request (terms-number.ts). */
  readonly termsExact: boolean;
  readonly termsMask: number;
  readonly needParams: number;
  /** Currencies the offer must be in (undefined: any). */
  readonly currencies: readonly string[] | undefined;
  readonly quantizations: ReadonlySet<string> | undefined;
  readonly weights: ReadonlySet<string> | undefined;
  /** Provider checks on the offer's workerId and hotkey (only/ignore/order without fallbacks), when any. */
  readonly provider: ((e: BookEntry) => boolean) | undefined;
}

/** OR of the bitsets named by `keys` in `m` (an absent key contributes nothing). */
function unionOf<K>(m: ReadonlyMap<K, Uint32Array>, keys: Iterable<K>, words: number): Uint32Array {
  const out = new Uint32Array(words);
  for (const k of keys) {
    const w = m.get(k);
    if (w) for (let i = 0; i < words; i++) out[i]! |= w[i]!;
  }
  return out;
}

function andWith(acc: Uint32Array, w: Uint32Array | undefined): void {
  if (!w) {
    acc.fill(0);
    return;
  }
  for (let i = 0; i < acc.length; i++) acc[i]! &= w[i]!;
}

/** Is the offer within the request's price cap (the max_price rule after terms)? */
export function withinCap(e: BookEntry, r: EligibilityRule): boolean {
  if (e.priceTerms === undefined) return e.quotedIn <= r.maxIn && e.quotedOut <= r.maxOut;
  return r.termsExact
    ? withinPriceCapNumber(e.quotedIn, e.quotedOut, Number(e.quotedMin), e.priceTerms, r.maxIn, r.maxOut, r.expIn, r.expOut)
    : withinPriceCap(BigInt(e.quotedIn), BigInt(e.quotedOut), e.quotedMin, e.priceTerms, r.cap, r.expIn, r.expOut);
}

/** The eligible offers of the columns as a bitset over leaf order (32-bit words, bit i of word i/32 = leaf i). */
export function eligibleWords(c: ModelColumns, r: EligibilityRule): Uint32Array {
  const words = c.words;
  const acc = new Uint32Array(words);
  for (let b = 0; b < 3; b++) {
    if ((r.termsMask & (1 << b)) === 0) continue;
    const t = c.terms[b]!;
    for (let i = 0; i < words; i++) acc[i]! |= t[i]!;
  }
  if (r.currencies !== undefined) for (const cur of r.currencies) andWith(acc, c.currency.get(cur));
  if (r.quantizations !== undefined) andWith(acc, unionOf(c.quant, r.quantizations, words));
  if (r.weights !== undefined) andWith(acc, unionOf(c.weight, r.weights, words));
  for (let m = r.needParams; m !== 0; m &= m - 1) andWith(acc, c.param.get(m & -m));
  for (const g of c.groups) {
    const w = g.slot.info;
    const s = g.stats;
    if (w === undefined || w.verifiedUntil <= r.nowMs || (s.samples !== 0 && s.unhealthy(r.nowMs)) || s.inflatedUntil > r.nowMs) {
      for (const e of g.entries) clearBit(acc, e.leafIndex);
    } else if (s.inFlight >= g.minCapacity) {
      for (const e of g.entries) if (s.inFlight >= e.capacity) clearBit(acc, e.leafIndex);
    }
  }
  if (r.nowS < c.maxFromS || r.nowS >= c.minUntilS) for (const e of c.entries) if (r.nowS < e.fromS || r.nowS >= e.untilS) clearBit(acc, e.leafIndex);
  if (r.maxIn !== Infinity || r.maxOut !== Infinity) {
    // List prices: input has no terms, and an offer whose discounted floor is over the output cap is over it at any
    // size. Offers with price terms between floor and list, or with a minimum charge, are judged one by one.
    for (let i = c.byIn.length - 1; i >= 0 && c.byIn[i]!.quotedIn > r.maxIn; i--) clearBit(acc, c.byIn[i]!.leafIndex);
    for (let i = c.byOut.length - 1; i >= 0 && c.byOut[i]!.outFloor > r.maxOut; i--) clearBit(acc, c.byOut[i]!.leafIndex);
    for (const e of c.termed) if (!withinCap(e, r)) clearBit(acc, e.leafIndex);
  }
  if (r.provider !== undefined) for (const e of c.entries) if (!r.provider(e)) clearBit(acc, e.leafIndex);
  return acc;
}

/** Population count of a bitset. */
export function popcount(w: Uint32Array): number {
  let n = 0;
  for (let i = 0; i < w.length; i++) {
    let x = w[i]!;
    x -= (x >>> 1) & 0x55555555;
    x = (x & 0x33333333) + ((x >>> 2) & 0x33333333);
    n += (Math.imul((x + (x >>> 4)) & 0x0f0f0f0f, 0x01010101) >>> 24);
  }
  return n;
}

/** Sets bit base + i of the byte bitmap for every bit i of `words` (least significant bit first in each byte). */
export function writeBits(words: Uint32Array, bits: Uint8Array, base: number): void {
  if ((base & 7) === 0) {
    const at = base >>> 3;
    for (let i = 0; i < words.length; i++) {
      const x = words[i]!;
      if (x === 0) continue;
      const o = at + i * 4;
      // The tail word may reach past the bitmap only with zero bits (leaves past the model's count are never set).
      bits[o]! |= x & 0xff;
      if (o + 1 < bits.length) bits[o + 1]! |= (x >>> 8) & 0xff;
      if (o + 2 < bits.length) bits[o + 2]! |= (x >>> 16) & 0xff;
      if (o + 3 < bits.length) bits[o + 3]! |= x >>> 24;
    }
    return;
  }
  for (let i = 0; i < words.length; i++) {
    for (let x = words[i]!; x !== 0; x &= x - 1) {
      const b = base + i * 32 + (31 - Math.clz32(x & -x));
      bits[b >>> 3]! |= 1 << (b & 7);
    }
  }
}
