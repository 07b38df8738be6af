/**
 * Replay guards for encapsulated requests (RFC 9458 §6.5; docs/protocol.md §5.3 and §13): a gateway accepts each
 * encapsulated key `enc` at most once while a request carrying it could still be accepted. Entries are compact
 * 128-bit fingerprints in flat storage (fingerprints.ts), bounded by count and by bytes.
 *
 * ReplayCache, for requests that carry no request time: the window is the key configuration's lifetime, measured
 * from the first request the cache sees for that key id; once it has passed, the cache refuses that key
 * (OHTTP_KEY_EXPIRED, so the client re-fetches the configuration) and frees its entries. The gateway therefore
 * rotates key configurations at least every `windowMs`.
 *
 * RecentReplayCache, for requests whose encrypted content binds the time they were sent (the gateway refuses those
 * outside a short window): an entry need only be kept until its request time leaves the window, so it is filed by
 * that expiry and whole buckets are dropped as time passes; a flood fills it for at most one window.
 *
 * Soundness, both: an entry is never dropped while a request carrying it could still be accepted. When full (count or
 * bytes), new requests are refused with the retryable REPLAY_CACHE_FULL (kind `unavailable`, HTTP 503) rather than
 * forgetting entries inside their window.
 */
import { protocolError, unavailable } from '../attestation/errors.ts';
import { fingerprint, FingerprintSet, randomSeeds, type Seeds } from './fingerprints.ts';

export interface ReplayCacheOptions {
  /** Maximum number of remembered encapsulated keys across all key ids. */
  readonly maxEntries: number;
  /** Maximum bytes of fingerprint storage (default: 64 bytes an entry, plus 1 MiB for empty tables). */
  readonly maxBytes?: number;
  /** Lifetime of a key configuration in milliseconds (the replay window). */
  readonly windowMs: number;
  /** Clock, for tests; defaults to Date.now. */
  readonly now?: () => number;
}

interface KeyWindow {
  readonly start: number;
  /** Undefined once the window has passed (the key id stays marked expired until `retire`). */
  seen: FingerprintSet | undefined;
}

const full = () => unavailable('REPLAY_CACHE_FULL', 'replay cache full; retry later');
const replayed = () => protocolError('OHTTP_REPLAY', 'encapsulated request replayed');

function positive(n: number, what: string): void {
  if (!Number.isSafeInteger(n) || n < 1) throw new RangeError(`${what} must be a positive integer`);
}

export class ReplayCache {
  readonly #max: number;
  readonly #maxBytes: number;
  readonly #window: number;
  readonly #now: () => number;
  readonly #seeds: Seeds = randomSeeds();
  readonly #keys = new Map<number, KeyWindow>();

  constructor(o: ReplayCacheOptions) {
    positive(o.maxEntries, 'maxEntries');
    if (!(o.windowMs > 0)) throw new RangeError('windowMs must be positive');
    this.#max = o.maxEntries;
    this.#maxBytes = o.maxBytes ?? o.maxEntries * 64 + (1 << 20);
    positive(this.#maxBytes, 'maxBytes');
    this.#window = o.windowMs;
    this.#now = o.now ?? Date.now;
  }

  /** Number of remembered encapsulated keys. */
  get size(): number {
    this.#expire(this.#now());
    let n = 0;
    for (const w of this.#keys.values()) n += w.seen?.size ?? 0;
    return n;
  }

  /** Bytes of fingerprint storage held. */
  get bytes(): number {
    let n = 0;
    for (const w of this.#keys.values()) n += w.seen?.bytes ?? 0;
    return n;
  }

  /** Records `enc` for `keyId`, or throws OHTTP_REPLAY (seen before), OHTTP_KEY_EXPIRED or REPLAY_CACHE_FULL. */
  check(keyId: number, enc: Uint8Array): void {
    const now = this.#now();
    this.#expire(now);
    let w = this.#keys.get(keyId);
    if (w && !w.seen) throw protocolError('OHTTP_KEY_EXPIRED', `key configuration ${keyId} is past its replay window`);
    if (!w) {
      if (this.bytes + FingerprintSet.INITIAL_BYTES > this.#maxBytes) throw full();
      w = { start: now, seen: new FingerprintSet() };
      this.#keys.set(keyId, w);
    }
    const set = w.seen!;
    const f = fingerprint(this.#seeds, keyId, enc);
    if (set.has(f)) throw replayed();
    if (this.size >= this.#max || this.bytes + set.growthBytes > this.#maxBytes) throw full();
    set.add(f);
  }

  /** Frees the entries of a retired key configuration (the gateway no longer accepts it). */
  retire(keyId: number): void {
    this.#keys.delete(keyId);
  }

  /** Frees entries of windows that have passed; the key id stays marked expired until `retire`. */
  #expire(now: number): void {
    for (const w of this.#keys.values()) if (w.seen && now - w.start >= this.#window) w.seen = undefined;
  }
}

export interface RecentReplayCacheOptions {
  /** Maximum number of remembered encapsulated keys. */
  readonly maxEntries: number;
  /** Maximum bytes of fingerprint storage (default: 64 bytes an entry, plus 1 MiB for empty tables). */
  readonly maxBytes?: number;
  /** Width of an expiry bucket in milliseconds (default 5 s): entries are freed a bucket at a time. */
  readonly bucketMs?: number;
  readonly now?: () => number;
}

export class RecentReplayCache {
  readonly #max: number;
  readonly #maxBytes: number;
  readonly #bucket: number;
  readonly #now: () => number;
  readonly #seeds: Seeds = randomSeeds();
  /** Bucket index (floor(expiry / bucketMs)) → the fingerprints expiring in it. */
  readonly #buckets = new Map<number, FingerprintSet>();
  #size = 0;
  #bytes = 0;

  constructor(o: RecentReplayCacheOptions) {
    positive(o.maxEntries, 'maxEntries');
    this.#max = o.maxEntries;
    this.#maxBytes = o.maxBytes ?? o.maxEntries * 64 + (1 << 20);
    positive(this.#maxBytes, 'maxBytes');
    this.#bucket = o.bucketMs ?? 5_000;
    positive(this.#bucket, 'bucketMs');
    this.#now = o.now ?? Date.now;
  }

  /** Number of remembered encapsulated keys (expired buckets are dropped first). */
  get size(): number {
    this.#expire(this.#now());
    return this.#size;
  }

  get bytes(): number {
    this.#expire(this.#now());
    return this.#bytes;
  }

  /**
   * Records `enc` for `keyId` until `expiresAt` (ms; the moment its request time leaves the acceptance window, after
   * which the gateway refuses the request on its time alone), or throws OHTTP_REPLAY or REPLAY_CACHE_FULL.
   */
  check(keyId: number, enc: Uint8Array, expiresAt: number): void {
    const now = this.#now();
    this.#expire(now);
    if (!(expiresAt >= now)) throw new RangeError('expiresAt is in the past: the request time check must come first');
    const b = Math.floor(expiresAt / this.#bucket);
    let set = this.#buckets.get(b);
    const f = fingerprint(this.#seeds, keyId, enc); // one seed set for every bucket: a replay matches wherever it is
    for (const s of this.#buckets.values()) if (s.has(f)) throw replayed();
    const grow = set ? set.growthBytes : FingerprintSet.INITIAL_BYTES;
    if (this.#size >= this.#max || this.#bytes + grow > this.#maxBytes) throw full();
    if (!set) {
      set = new FingerprintSet();
      this.#buckets.set(b, set);
      this.#bytes += set.bytes;
    }
    const before = set.bytes;
    set.add(f);
    this.#bytes += set.bytes - before;
    this.#size++;
  }

  /** Drops every bucket whose entries have all expired (its end is at or before now). */
  #expire(now: number): void {
    for (const [b, s] of this.#buckets) {
      if ((b + 1) * this.#bucket <= now) {
        this.#size -= s.size;
        this.#bytes -= s.bytes;
        this.#buckets.delete(b);
      }
    }
  }
}
