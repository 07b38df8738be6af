/**
 * The order book (docs/design.md §6 "The enclave keeps an order book of verified, unexpired offers"): offers whose two
 * signatures verified and whose worker key equals the key bound in that worker's verified evidence, indexed by
 * model so selection scans only the requested models. Expired offers leave by themselves: selection skips them
 * and each model's list is compacted once `now` passes its earliest expiry. Offer ids are namespaced by the worker
 * that signs them: the book keys each offer by (workerId, offerId), so no worker can take, replace or cancel
 * another's offer by reusing its id. Replace = same (workerId, offerId) with a higher sequence; cancel = a signed
 * cancel whose sequence is >= the offer's (and later arrivals at or below it are refused).
 * Cancel tombstones are scoped to the worker that signed them (one worker cannot block another's offer ids), kept
 * after the worker leaves (a replayed registration must not bring a cancelled offer back), and bounded: per worker,
 * and in total, where tombstones of workers no longer registered are evicted first.
 *
 * Money: offer prices are bigint micro-units; the book keeps each quoted price (offer price plus the operator's
 * routing fee, rounded up) also as a safe-integer Number for the selection hot path, checked at insertion.
 */
import { hasPriceTerms, type PriceTerms } from '../../protocol/offer-terms.ts';
import { equalBytes, hex } from '../../attestation/bytes.ts';
import { configError, protocolError, rejected } from '../../attestation/errors.ts';
import { hash } from 'node:crypto';
import { leafHash, merkleRoot } from '../../protocol/best-execution.ts';
import { MerkleTree } from '../../protocol/merkle-tree.ts';
import { decodeDeterministic } from '../../protocol/market-cbor.ts';
import { type ModelIdentity, parameterMask, sameIdentity } from '../../protocol/model-identity.ts';
import { checkWindow, decodeOffer, type Offer, type VerifiedOffer, verifySignedCancel, verifySignedOffer } from '../../protocol/offer.ts';
import { buildColumns, type ModelColumns } from './columns.ts';
import { DEFAULT_STATS_CONFIG, Lease, LiveStats, type StatsConfig } from './stats.ts';

/** What the registry knows about a worker after verifying its CPU + GPU evidence. */
export interface WorkerInfo {
  readonly workerId: string;
  /** Raw Ed25519 offer-signing key bound in the worker's evidence. */
  readonly workerKey: Uint8Array;
  /** SHA-256 of the verified evidence bundle (cited in receipts). */
  readonly evidenceDigest: Uint8Array;
  /** Unix ms until which the verification stands (the evidence freshness window). */
  readonly verifiedUntil: number;
  /** True when the worker's evidence was simulated. */
  readonly sim: boolean;
  /** Optional: the operator hotkey the worker registered under (e.g. from the metagraph); offers must carry it. */
  readonly hotkey?: string;
  /**
   * The model identities the worker's verified evidence states (its REPORT_DATA-bound model manifest). An offer
   * that declares an identity is taken only when it equals this map's entry for its model.
   */
  readonly identities?: ReadonlyMap<string, ModelIdentity>;
  /** The GPUs of the worker's verified evidence (their model: the device certificate issuer's CN). */
  readonly gpus?: readonly { readonly hwmodel: string | undefined }[];
}

/** The book's live view of one worker: entries point at it, so selection reads worker state without a lookup. */
export interface WorkerSlot {
  info: WorkerInfo | undefined;
}

export interface BookEntry {
  readonly verified: VerifiedOffer;
  readonly slot: WorkerSlot;
  readonly offer: Offer;
  readonly stats: LiveStats;
  /** Quoted prices (offer price + fee, micro-units per million tokens) as exact safe integers. */
  readonly quotedIn: number;
  readonly quotedOut: number;
  /**
   * The lowest output price per 1M tokens the offer's discount schedule reaches (quotedOut less its largest
   * discount, rounded down; quotedOut without discounts): no request pays less per output token, so it bounds the
   * threshold scan and the output cap from below.
   */
  readonly outFloor: number;
  /** The offer digest as a Latin-1 string: compares in the digest's byte order (the considered set's order). */
  readonly digestKey: string;
  /** The offer's price terms (minimum charge, discounts), or undefined when it has none: priced as before. */
  readonly priceTerms: PriceTerms | undefined;
  /** Quoted minimum charge (minCharge + fee, rounded up), 0n without one. */
  readonly quotedMin: bigint;
  /** validUntil in unix ms. */
  readonly untilMs: number;
  readonly fromMs: number;
  /** FNV-1a of offerId + workerId: the deterministic tie-break seed. */
  readonly seed: number;
  /** Bit of the offer's payment terms kind (TERMS_BIT), for a mask test in selection. */
  readonly termsBit: number;
  /** The offer's attested quantization and weights digest (hex), or undefined when it declares no identity. */
  readonly quantization: string | undefined;
  readonly weightsHex: string | undefined;
  /** Bitmask of the parameters the offer declares (protocol/model-identity.ts parameterMask). */
  readonly paramMask: number;
  /**
   * validFrom and validUntil in unix seconds: small integers V8 keeps inline, where the millisecond copies are boxed
   * doubles (a pointer chase per read in the selection scans).
   */
  readonly fromS: number;
  readonly untilS: number;
  /** Copies of the offer's currency and capacity: selection reads them without touching the offer object. */
  readonly currency: string;
  readonly capacity: number;
  /** Position in its model's considered set (sorted by offer digest), set when the model's tree is built. */
  leafIndex: number;
  /** Selection's per-request visit stamp (the threshold scan meets an entry from two lists). */
  mark: number;
}

/** One bit per payment terms kind, so a request's accepted set is a mask. */
export const TERMS_BIT = { prepaid: 1, postpaid: 2, 'per-request': 4 } as const;

export interface OrderBookOptions {
  /** Operator routing fee in basis points of the worker cost (0..10000). */
  readonly feeBasisPoints?: number;
  readonly stats?: StatsConfig;
  /** Cancel tombstones kept per worker (default 1024) and in total (default 100000). */
  readonly maxTombstonesPerWorker?: number;
  readonly maxTombstones?: number;
}

/** What a signed cancel did: the offer it names, its sequence, and whether a live version left the book. */
export interface CancelOutcome {
  readonly offerId: string;
  readonly sequence: number;
  readonly removed: boolean;
}

/** offer price + fee, rounded up, as the client sees it for max_price and sorting. */
export function quotedPrice(pricePerM: bigint, feeBasisPoints: number): bigint {
  return pricePerM + (pricePerM * BigInt(feeBasisPoints) + 9_999n) / 10_000n;
}

export function fnv1a(s: string, seed = 0x811c9dc5): number {
  let h = seed >>> 0;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

interface ModelList {
  entries: BookEntry[];
  /**
   * The same entries sorted by quoted input price and by outFloor (ties by offerId, then workerId): built on first
   * demand, then kept sorted through each insertion and removal.
   */
  byIn: BookEntry[] | undefined;
  byOut: BookEntry[] | undefined;
  /** Earliest untilMs in `entries`: compaction is due once now reaches it. */
  nextExpiry: number;
  /** The considered set in digest order with its Merkle tree: built on first demand, then kept up to date. */
  tree: TreeState | undefined;
}

/** A model's considered set as the book maintains it between requests. */
interface TreeState {
  /** Entries sorted by digestKey. */
  readonly sorted: BookEntry[];
  readonly merkle: MerkleTree;
  /** Entries from this index on moved since their leafIndex was last written. */
  dirtyFrom: number;
  /** The published view, until the next change. */
  view: ModelTree | undefined;
}

/** A model's considered set as the best-execution commitment names it. */
export interface ModelTree {
  readonly leaves: readonly Uint8Array[];
  readonly root: Uint8Array;
  /** The same offers, in leaf order, as columns for the eligibility pass (enclave/market/columns.ts). */
  readonly columns: ModelColumns;
}

export class OrderBook {
  readonly feeBasisPoints: number;
  readonly #statsCfg: StatsConfig;
  readonly #byModel = new Map<string, ModelList>();
  /** offerKey(workerId, offerId) → entry, for replace and cancel. */
  readonly #byOffer = new Map<string, BookEntry>();
  /** workerId → offerId → highest cancelled sequence (tombstones, so replays of older versions are refused). */
  readonly #cancelled = new Map<string, Map<string, number>>();
  #tombstones = 0;
  readonly #maxPerWorker: number;
  readonly #maxTotal: number;
  readonly #workers = new Map<string, WorkerSlot>();
  readonly #stats = new Map<string, LiveStats>();
  /** Pool roots by model list, with the tree views they were computed from (poolRoot). */
  readonly #poolRoots = new Map<string, { trees: readonly ModelTree[]; root: Uint8Array }>();
  /** Largest quoted price in the book: bounds the selection arithmetic so it stays exact. */
  maxQuoted = 0;
  /** Largest quoted minimum charge in the book (same purpose, for offers with a minimum). */
  maxQuotedMin = 0n;

  constructor(opts: OrderBookOptions = {}) {
    const fee = opts.feeBasisPoints ?? 0;
    if (!Number.isSafeInteger(fee) || fee < 0 || fee > 10_000) throw configError('MARKET_FEE_INVALID', 'routing fee must be 0..10000 basis points');
    this.feeBasisPoints = fee;
    this.#statsCfg = opts.stats ?? DEFAULT_STATS_CONFIG;
    this.#maxPerWorker = opts.maxTombstonesPerWorker ?? 1024;
    this.#maxTotal = opts.maxTombstones ?? 100_000;
  }

  /** Registers or refreshes a worker after its evidence verified (call again on each re-verification). */
  upsertWorker(info: WorkerInfo): void {
    let slot = this.#workers.get(info.workerId);
    if (!slot) this.#workers.set(info.workerId, (slot = { info: undefined }));
    const old = slot.info;
    slot.info = info;
    // A new evidence-bound key invalidates offers signed by the old one.
    if (old && !equalBytes(old.workerKey, info.workerKey)) this.#dropWhere((e) => e.offer.workerId === info.workerId);
  }

  /** Drops a worker that failed re-verification or disappeared; its offers leave the book. */
  removeWorker(workerId: string): void {
    const slot = this.#workers.get(workerId);
    if (slot) slot.info = undefined;
    this.#dropWhere((e) => e.offer.workerId === workerId);
  }

  worker(workerId: string): WorkerInfo | undefined {
    return this.#workers.get(workerId)?.info;
  }

  /**
   * Verifies a signed offer against its registered worker's evidence-bound key and adds or replaces it.
   * Codes: OFFER_UNKNOWN_WORKER, OFFER_SUPERSEDED, plus every verifySignedOffer code.
   */
  async addSignedOffer(signed: Uint8Array, now: number, workerId?: string): Promise<VerifiedOffer> {
    const claimed = workerId ?? peekWorkerId(signed);
    const w = this.worker(claimed);
    if (!w) throw rejected('OFFER_UNKNOWN_WORKER', `offer from worker "${claimed}" which is not registered and verified`);
    const v = await verifySignedOffer(signed, { workerPublicKey: w.workerKey, now, ...(w.hotkey !== undefined ? { hotkey: w.hotkey } : {}) });
    if (v.offer.workerId !== w.workerId) throw rejected('OFFER_WORKER_KEY_MISMATCH', 'offer names a different worker than the one that posted it');
    this.insert(v, now);
    return v;
  }

  /** Inserts an offer verified by the caller (replaces a lower sequence of the same offerId). */
  insert(v: VerifiedOffer, now: number): BookEntry {
    const o = v.offer;
    checkWindow(o, now);
    const slot = this.#workers.get(o.workerId);
    const w = slot?.info;
    if (!slot || !w || !equalBytes(w.workerKey, o.workerKey)) throw rejected('OFFER_UNKNOWN_WORKER', `offer ${o.offerId} is not bound to a registered worker key`);
    // GPUs an offer states must be the GPUs the evidence shows: how many, and which model.
    if (o.gpus && (w.gpus === undefined || w.gpus.length !== o.gpus.count || !w.gpus.every((g) => g.hwmodel === o.gpus!.model))) {
      throw rejected('OFFER_GPU_MISMATCH', `offer ${o.offerId} states ${o.gpus.count} GPU(s) of another count or model than the worker's verified evidence`);
    }
    // A stated identity is a claim about the weights: only the worker's verified evidence can back it.
    if (o.identity) {
      const attested = w.identities?.get(o.model);
      if (!attested || !sameIdentity(attested, o.identity)) throw rejected('OFFER_IDENTITY_UNATTESTED', `offer ${o.offerId} states a model identity the worker's verified evidence does not cover`);
    }
    const tomb = this.#cancelled.get(o.workerId)?.get(o.offerId);
    if (tomb !== undefined && o.sequence <= tomb) throw rejected('OFFER_SUPERSEDED', `offer ${o.offerId} sequence ${o.sequence} was cancelled`);
    const prev = this.#byOffer.get(offerKey(o.workerId, o.offerId));
    if (prev) {
      if (o.sequence <= prev.offer.sequence) throw rejected('OFFER_SUPERSEDED', `offer ${o.offerId} sequence ${o.sequence} is not above ${prev.offer.sequence}`);
      this.#remove(prev);
    }
    const qIn = quotedPrice(o.pricePerMInput, this.feeBasisPoints);
    const qOut = quotedPrice(o.pricePerMOutput, this.feeBasisPoints);
    if (qIn > BigInt(Number.MAX_SAFE_INTEGER) || qOut > BigInt(Number.MAX_SAFE_INTEGER)) throw protocolError('OFFER_MALFORMED', 'quoted price exceeds 2^53-1 micro-units');
    const key = `${o.workerId}\n${o.model}`;
    let stats = this.#stats.get(key);
    if (!stats) this.#stats.set(key, (stats = new LiveStats(o.ttftMs, o.tokensPerSecond, this.#statsCfg)));
    const top = o.terms.discounts?.at(-1)?.basisPoints ?? 0;
    const d = v.digest;
    const entry: BookEntry = {
      verified: v,
      slot,
      offer: o,
      stats,
      quotedIn: Number(qIn),
      quotedOut: Number(qOut),
      outFloor: Number((qOut * BigInt(10_000 - top)) / 10_000n),
      digestKey: Buffer.from(d.buffer, d.byteOffset, d.length).toString('latin1'),
      priceTerms: hasPriceTerms(o.terms) ? o.terms : undefined,
      quotedMin: o.terms.minCharge !== undefined ? quotedPrice(o.terms.minCharge, this.feeBasisPoints) : 0n,
      untilMs: o.validUntil * 1000,
      fromMs: o.validFrom * 1000,
      seed: fnv1a(`${o.workerId}\n${o.offerId}`),
      termsBit: TERMS_BIT[o.terms.kind],
      quantization: o.identity?.quantization,
      weightsHex: o.identity ? hex(o.identity.weightsDigest) : undefined,
      paramMask: o.identity ? parameterMask(o.identity.parameters) : 0,
      fromS: o.validFrom,
      untilS: o.validUntil,
      currency: o.currency,
      capacity: o.capacity,
      leafIndex: 0,
      mark: 0,
    };
    let list = this.#byModel.get(o.model);
    if (!list) this.#byModel.set(o.model, (list = { entries: [], byIn: undefined, byOut: undefined, nextExpiry: Infinity, tree: undefined }));
    list.entries.push(entry);
    if (list.byIn) list.byIn.splice(upperBound(list.byIn, entry, byInOrder), 0, entry);
    if (list.byOut) list.byOut.splice(upperBound(list.byOut, entry, byOutOrder), 0, entry);
    if (list.tree) treeInsert(list.tree, entry);
    list.nextExpiry = Math.min(list.nextExpiry, entry.untilMs);
    this.#byOffer.set(offerKey(o.workerId, o.offerId), entry);
    this.maxQuoted = Math.max(this.maxQuoted, entry.quotedIn, entry.quotedOut);
    if (entry.quotedMin > this.maxQuotedMin) this.maxQuotedMin = entry.quotedMin;
    return entry;
  }

  /**
   * Verifies a signed cancel against the worker's registered key and removes the offer (if at or below it); later
   * arrivals of that offer id from this worker at or below the cancel's sequence are refused (OFFER_SUPERSEDED).
   * Codes: OFFER_UNKNOWN_WORKER, OFFER_WORKER_KEY_MISMATCH (key or workerId not the registered worker's),
   * OFFER_HOTKEY_MISMATCH (not the hotkey of the offer it cancels), OFFER_CANCEL_LIMIT, plus every
   * verifySignedCancel code (OFFER_MALFORMED, OFFER_SIGNATURE_WORKER, OFFER_SIGNATURE_HOTKEY).
   */
  async cancelSigned(signed: Uint8Array, workerId: string): Promise<boolean> {
    return (await this.cancel(signed, workerId)).removed;
  }

  async cancel(signed: Uint8Array, workerId: string): Promise<CancelOutcome> {
    const w = this.worker(workerId);
    if (!w) throw rejected('OFFER_UNKNOWN_WORKER', `cancel from worker "${workerId}" which is not registered`);
    const c = await verifySignedCancel(signed, { workerPublicKey: w.workerKey, ...(w.hotkey !== undefined ? { hotkey: w.hotkey } : {}) });
    if (c.workerId !== workerId) throw rejected('OFFER_WORKER_KEY_MISMATCH', 'cancel names a different worker');
    // Only this worker's own offer of that id: another worker's offer with the same id is out of its reach.
    const prev = this.#byOffer.get(offerKey(workerId, c.offerId));
    // The offer carries both the worker's and the operator's signatures; its withdrawal needs the same operator.
    if (prev && prev.offer.hotkey !== c.hotkey) throw rejected('OFFER_HOTKEY_MISMATCH', "cancel's hotkey is not the hotkey of the offer it cancels");
    this.#tombstone(workerId, c.offerId, c.sequence);
    if (prev && prev.offer.sequence <= c.sequence) {
      this.#remove(prev);
      return { offerId: c.offerId, sequence: c.sequence, removed: true };
    }
    return { offerId: c.offerId, sequence: c.sequence, removed: false };
  }

  #tombstone(workerId: string, offerId: string, sequence: number): void {
    let mine = this.#cancelled.get(workerId);
    const old = mine?.get(offerId);
    if (old !== undefined) {
      mine!.set(offerId, Math.max(old, sequence));
      return;
    }
    if ((mine?.size ?? 0) >= this.#maxPerWorker) throw rejected('OFFER_CANCEL_LIMIT', `worker ${workerId} holds ${this.#maxPerWorker} cancels already`);
    if (this.#tombstones >= this.#maxTotal) this.#evictTombstones();
    if (this.#tombstones >= this.#maxTotal) throw rejected('OFFER_CANCEL_LIMIT', 'the order book holds its maximum of cancels');
    if (!mine) this.#cancelled.set(workerId, (mine = new Map()));
    mine.set(offerId, sequence);
    this.#tombstones++;
  }

  /** Drops the tombstones of workers that are no longer registered, oldest first, until there is room. */
  #evictTombstones(): void {
    for (const [id, m] of this.#cancelled) {
      if (this.#tombstones < this.#maxTotal) return;
      if (this.#workers.get(id)?.info) continue;
      this.#tombstones -= m.size;
      this.#cancelled.delete(id);
    }
  }

  /** Has any verified worker ever offered this model here (live or not)? Unknown models are a 404, not a 503. */
  knows(model: string): boolean {
    return this.#byModel.has(model);
  }

  /** The live entries for a model at `now` (compacting expired ones first when due). */
  entriesFor(model: string, now: number): readonly BookEntry[] {
    const list = this.#byModel.get(model);
    if (!list) return [];
    if (now >= list.nextExpiry) this.#compact(list, now);
    return list.entries;
  }

  /**
   * The live entries for a model sorted by quoted input price and by outFloor, the lowest output price any request
   * pays (ties by offerId, then workerId), for selection's threshold scan and the price cap. Sorted on first demand,
   * then kept sorted through every change (a binary search and one splice), not per request.
   */
  sortedFor(model: string, now: number): { byIn: readonly BookEntry[]; byOut: readonly BookEntry[] } {
    const entries = this.entriesFor(model, now);
    const list = this.#byModel.get(model);
    if (!list) return { byIn: [], byOut: [] };
    list.byIn ??= [...entries].sort(byInOrder);
    list.byOut ??= [...entries].sort(byOutOrder);
    return { byIn: list.byIn, byOut: list.byOut };
  }

  /**
   * The model's live entries as a Merkle tree over their offer digests, sorted bytewise (protocol/best-execution.ts);
   * each entry's `leafIndex` is its position. Built on first demand, then updated in place: a change rehashes only
   * the tree's blocks from its position on (protocol/merkle-tree.ts), and the columns are rebuilt from the kept order.
   * Selection commits to it.
   */
  treeFor(model: string, now: number): ModelTree {
    const entries = this.entriesFor(model, now);
    const list = this.#byModel.get(model);
    if (!list) return EMPTY_TREE;
    let t = list.tree;
    if (!t) {
      const sorted = [...entries].sort(byDigest);
      list.tree = t = { sorted, merkle: new MerkleTree(sorted.map((e) => leafHash(e.verified.digest, nodeSha256)), nodeSha256), dirtyFrom: 0, view: undefined };
    }
    if (!t.view) {
      const sorted = t.sorted;
      for (let i = t.dirtyFrom; i < sorted.length; i++) sorted[i]!.leafIndex = i;
      t.dirtyFrom = sorted.length;
      const { byIn, byOut } = this.sortedFor(model, now);
      t.view = { leaves: t.merkle.leaves, root: t.merkle.root(), columns: buildColumns(sorted, byIn, byOut) };
    }
    return t.view;
  }

  /**
   * The root over several models' considered sets in the request's model order (a pool), given their current trees:
   * kept per model list until one of the trees changes, so pool requests do not hash every leaf each time.
   */
  poolRoot(models: readonly string[], trees: readonly ModelTree[]): Uint8Array {
    const key = models.join('\n');
    const hit = this.#poolRoots.get(key);
    if (hit && hit.trees.length === trees.length && hit.trees.every((t, i) => t === trees[i])) return hit.root;
    const root = merkleRoot(trees.flatMap((t) => t.leaves), nodeSha256);
    // Bounded: request model lists are client-chosen, so the cache forgets everything past its size.
    if (this.#poolRoots.size >= 256) this.#poolRoots.clear();
    this.#poolRoots.set(key, { trees: [...trees], root });
    return root;
  }

  /** Removes every expired offer; returns how many left. */
  prune(now: number): number {
    let n = 0;
    for (const list of this.#byModel.values()) n += this.#compact(list, now);
    return n;
  }

  /** Live, currently valid offers (for /v1/models, the status page, statements). */
  *offers(now: number): Iterable<BookEntry> {
    for (const [model] of this.#byModel) for (const e of this.entriesFor(model, now)) if (e.fromMs <= now) yield e;
  }

  /** Models with at least one live offer from a currently verified worker. */
  models(now: number): string[] {
    const out = new Set<string>();
    for (const e of this.offers(now)) {
      const w = e.slot.info;
      if (w && w.verifiedUntil > now) out.add(e.offer.model);
    }
    return [...out].sort();
  }

  /** The live entry of `workerId`'s offer `offerId`, if any. */
  byOffer(workerId: string, offerId: string): BookEntry | undefined {
    return this.#byOffer.get(offerKey(workerId, offerId));
  }

  get size(): number {
    return this.#byOffer.size;
  }

  /** Takes a slot on the entry's (worker, model): in-flight +1 until the lease ends. */
  acquire(entry: BookEntry, now: number): Lease {
    return new Lease(entry.stats, now);
  }

  #compact(list: ModelList, now: number): number {
    const before = list.entries.length;
    let next = Infinity;
    const kept: BookEntry[] = [];
    for (const e of list.entries) {
      if (e.untilMs > now) {
        kept.push(e);
        if (e.untilMs < next) next = e.untilMs;
      } else if (this.#byOffer.get(offerKey(e.offer.workerId, e.offer.offerId)) === e) this.#byOffer.delete(offerKey(e.offer.workerId, e.offer.offerId));
    }
    if (kept.length !== list.entries.length) {
      // A few expiries are removed from the kept orders; a mass expiry rebuilds them on next demand.
      if (before - kept.length > 64) list.byIn = list.byOut = list.tree = undefined;
      else for (const e of list.entries) if (e.untilMs <= now) this.#unorder(list, e);
    }
    list.entries = kept;
    list.nextExpiry = next;
    return before - kept.length;
  }

  #remove(entry: BookEntry): void {
    const list = this.#byModel.get(entry.offer.model);
    if (list) {
      const i = list.entries.indexOf(entry);
      if (i >= 0) list.entries.splice(i, 1);
      this.#unorder(list, entry);
    }
    const k = offerKey(entry.offer.workerId, entry.offer.offerId);
    if (this.#byOffer.get(k) === entry) this.#byOffer.delete(k);
  }

  /** Takes an entry out of the model's kept orders (price lists, considered set). */
  #unorder(list: ModelList, entry: BookEntry): void {
    if (list.byIn) removeSorted(list.byIn, entry, byInOrder);
    if (list.byOut) removeSorted(list.byOut, entry, byOutOrder);
    const t = list.tree;
    if (t) {
      const i = removeSorted(t.sorted, entry, byDigest);
      if (i >= 0) {
        t.merkle.remove(i);
        if (i < t.dirtyFrom) t.dirtyFrom = i;
        t.view = undefined;
      }
    }
  }

  #dropWhere(pred: (e: BookEntry) => boolean): void {
    for (const e of [...this.#byOffer.values()]) if (pred(e)) this.#remove(e);
  }
}

const nodeSha256 = (b: Uint8Array): Uint8Array => {
  const d = hash('sha256', b, 'buffer');
  return new Uint8Array(d.buffer, d.byteOffset, d.length);
};

const EMPTY_TREE: ModelTree = { leaves: [], root: new MerkleTree([], nodeSha256).root(), columns: buildColumns([], [], []) };

/** Ties between equal prices: offerId, then workerId (offer ids are per worker), so each order is total. */
function tie(a: BookEntry, b: BookEntry): number {
  const x = a.offer;
  const y = b.offer;
  return x.offerId < y.offerId ? -1 : x.offerId > y.offerId ? 1 : x.workerId < y.workerId ? -1 : x.workerId > y.workerId ? 1 : 0;
}
const byInOrder = (a: BookEntry, b: BookEntry): number => a.quotedIn - b.quotedIn || tie(a, b);
const byOutOrder = (a: BookEntry, b: BookEntry): number => a.outFloor - b.outFloor || tie(a, b);
/** Digest order; two live entries never share a digest (it covers workerId, offerId and sequence), tie() is a guard. */
const byDigest = (a: BookEntry, b: BookEntry): number => (a.digestKey < b.digestKey ? -1 : a.digestKey > b.digestKey ? 1 : tie(a, b));

/** The first index whose element orders after `e`. */
function upperBound(xs: readonly BookEntry[], e: BookEntry, cmp: (a: BookEntry, b: BookEntry) => number): number {
  let lo = 0;
  let hi = xs.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (cmp(xs[mid]!, e) <= 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Removes `e` from the sorted list; returns where it was (-1 when absent). */
function removeSorted(xs: BookEntry[], e: BookEntry, cmp: (a: BookEntry, b: BookEntry) => number): number {
  let i = upperBound(xs, e, cmp) - 1;
  while (i >= 0 && xs[i] !== e && cmp(xs[i]!, e) === 0) i--;
  if (i < 0 || xs[i] !== e) return -1;
  xs.splice(i, 1);
  return i;
}

/** Adds an entry to a kept considered set. */
function treeInsert(t: TreeState, e: BookEntry): void {
  const i = upperBound(t.sorted, e, byDigest);
  t.sorted.splice(i, 0, e);
  t.merkle.insert(i, leafHash(e.verified.digest, nodeSha256));
  if (i < t.dirtyFrom) t.dirtyFrom = i;
  t.view = undefined;
}

/** The book's key for an offer: its id within the namespace of the worker that signed it (length-prefixed: injective). */
const offerKey = (workerId: string, offerId: string): string => `${workerId.length}:${workerId}${offerId}`;

/** Reads the workerId out of a signed offer without trusting it (only to find the registered key to verify with). */
function peekWorkerId(signed: Uint8Array): string {
  try {
    const env = decodeDeterministic(signed) as { offer?: unknown };
    if (!(env.offer instanceof Uint8Array)) throw new Error('no offer field');
    return decodeOffer(env.offer).workerId;
  } catch (e) {
    if (e instanceof Error && 'code' in e && e.code === 'OFFER_MALFORMED') throw e;
    throw protocolError('OFFER_MALFORMED', 'signed offer cannot be decoded', { cause: e });
  }
}
