/**
 * A model's offers as columns (typed arrays in the best-execution tree's leaf order), for the eligibility bitmap the
 * receipt commits to (protocol/best-execution.ts). The bitmap needs every considered offer checked on every request,
 * so its pass reads flat arrays instead of one object graph per offer: at 10,000 offers the difference is the
 * difference between cache-resident columns and thousands of cache misses. Built with the tree, once per change to
 * the model's offers; the live state (worker verification, in-flight, health, inflation) is read per request from
 * the few distinct worker slots and stats objects the columns index.
 */
import type { BookEntry, WorkerSlot } from './book.ts';
import type { LiveStats } from './stats.ts';

export interface ModelColumns {
  readonly entries: readonly BookEntry[];
  readonly fromS: Float64Array;
  readonly untilS: Float64Array;
  readonly quotedIn: Float64Array;
  readonly quotedOut: Float64Array;
  readonly terms: Uint8Array;
  readonly params: Int32Array;
  readonly capacity: Float64Array;
  /** Index into `currencies`, `quantizations` (0: none stated) and `weights` (0: none stated). */
  readonly currency: Uint16Array;
  readonly currencies: readonly string[];
  readonly quant: Uint16Array;
  readonly quantizations: readonly (string | undefined)[];
  readonly weight: Uint16Array;
  readonly weights: readonly (string | undefined)[];
  readonly slot: Int32Array;
  readonly slots: readonly WorkerSlot[];
  readonly stat: Int32Array;
  readonly stats: readonly LiveStats[];
}

function interner<T>(first?: T): { ids: T[]; id(v: T): number } {
  const ids: T[] = first === undefined ? [] : [first];
  const map = new Map<T, number>(ids.map((v, i) => [v, i]));
  return {
    ids,
    id(v) {
      let i = map.get(v);
      if (i === undefined) {
        i = ids.length;
        ids.push(v);
        map.set(v, i);
      }
      return i;
    },
  };
}

/** Columns over `sorted` (the entries in leaf order). */
export function buildColumns(sorted: readonly BookEntry[]): ModelColumns {
  const n = sorted.length;
  const cur = interner<string>();
  const qu = interner<string | undefined>(undefined);
  const we = interner<string | undefined>(undefined);
  const sl = interner<WorkerSlot>();
  const st = interner<LiveStats>();
  const c = {
    entries: sorted, fromS: new Float64Array(n), untilS: new Float64Array(n), quotedIn: new Float64Array(n), quotedOut: new Float64Array(n), terms: new Uint8Array(n),
    params: new Int32Array(n), capacity: new Float64Array(n), currency: new Uint16Array(n), quant: new Uint16Array(n), weight: new Uint16Array(n), slot: new Int32Array(n), stat: new Int32Array(n),
  };
  for (let i = 0; i < n; i++) {
    const e = sorted[i]!;
    c.fromS[i] = e.fromS;
    c.untilS[i] = e.untilS;
    c.quotedIn[i] = e.quotedIn;
    c.quotedOut[i] = e.quotedOut;
    c.terms[i] = e.termsBit;
    c.params[i] = e.paramMask;
    c.capacity[i] = e.capacity;
    c.currency[i] = cur.id(e.currency);
    c.quant[i] = qu.id(e.quantization);
    c.weight[i] = we.id(e.weightsHex);
    c.slot[i] = sl.id(e.slot);
    c.stat[i] = st.id(e.stats);
  }
  return { ...c, currencies: cur.ids, quantizations: qu.ids, weights: we.ids, slots: sl.ids, stats: st.ids };
}

/** What a request asks of an offer, as the selection parsed it (see select.ts `visit`, which ranks by the same). */
export interface EligibilityRule {
  readonly nowMs: number;
  readonly nowS: number;
  readonly maxIn: number;
  readonly maxOut: number;
  readonly termsMask: number;
  readonly needParams: number;
  /** Currencies the offer must be in (undefined: any). */
  readonly currencies: readonly string[] | undefined;
  readonly quantizations: ReadonlySet<string> | undefined;
  readonly weights: ReadonlySet<string> | undefined;
  /** Provider checks on the offer's workerId and hotkey (only/ignore/order without fallbacks), when any. */
  readonly provider: ((e: BookEntry) => boolean) | undefined;
}

/** Sets bit base + i for every eligible offer i of the columns; returns how many. */
export function markEligible(c: ModelColumns, r: EligibilityRule, bits: Uint8Array, base: number): number {
  const n = c.entries.length;
  const slotOk = new Uint8Array(c.slots.length);
  for (let i = 0; i < c.slots.length; i++) {
    const w = c.slots[i]!.info;
    slotOk[i] = w !== undefined && w.verifiedUntil > r.nowMs ? 1 : 0;
  }
  const inFlight = new Float64Array(c.stats.length);
  for (let i = 0; i < c.stats.length; i++) {
    const s = c.stats[i]!;
    // An unhealthy or demoted (worker, model) counts as full: nothing of it is eligible.
    inFlight[i] = (s.samples !== 0 && s.unhealthy(r.nowMs)) || s.inflatedUntil > r.nowMs ? Infinity : s.inFlight;
  }
  const curOk = new Uint8Array(c.currencies.length);
  for (let i = 0; i < c.currencies.length; i++) curOk[i] = r.currencies === undefined || r.currencies.every((x) => x === c.currencies[i]) ? 1 : 0;
  const qOk = new Uint8Array(c.quantizations.length);
  for (let i = 0; i < c.quantizations.length; i++) {
    const q = c.quantizations[i];
    qOk[i] = r.quantizations === undefined || (q !== undefined && r.quantizations.has(q)) ? 1 : 0;
  }
  const wOk = new Uint8Array(c.weights.length);
  for (let i = 0; i < c.weights.length; i++) {
    const w = c.weights[i];
    wOk[i] = r.weights === undefined || (w !== undefined && r.weights.has(w)) ? 1 : 0;
  }
  const { fromS, untilS, quotedIn, quotedOut, terms, params, capacity, currency, quant, weight, slot, stat } = c;
  const { nowS, maxIn, maxOut, termsMask, needParams, provider } = r;
  let count = 0;
  for (let i = 0; i < n; i++) {
    if (nowS < fromS[i]! || nowS >= untilS[i]! || quotedIn[i]! > maxIn || quotedOut[i]! > maxOut || (terms[i]! & termsMask) === 0 || (params[i]! & needParams) !== needParams) continue;
    if (curOk[currency[i]!] === 0 || slotOk[slot[i]!] === 0 || inFlight[stat[i]!]! >= capacity[i]! || qOk[quant[i]!] === 0 || wOk[weight[i]!] === 0) continue;
    if (provider !== undefined && !provider(c.entries[i]!)) continue;
    const b = base + i;
    bits[b >> 3]! |= 1 << (b & 7);
    count++;
  }
  return count;
}
