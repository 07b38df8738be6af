/**
 * Replay guard for encapsulated requests (RFC 9458 §6.5; docs/design.md §5): a gateway accepts each encapsulated key
 * `enc` at most once per key configuration.
 *
 * Soundness: an entry is never dropped while its key configuration is still accepted. The window is the key
 * configuration's lifetime, measured from the first request the cache sees for that key id; once a key's window has
 * passed, the cache refuses that key (OHTTP_KEY_EXPIRED, so the client re-fetches the configuration) and frees its
 * entries. The gateway therefore rotates key configurations at least every `windowMs`.
 * Memory: at most `maxEntries` encapsulated keys in total. When full, new requests are refused with the retryable
 * REPLAY_CACHE_FULL (kind `unavailable`, HTTP 503) rather than forgetting entries inside the window.
 */
import { protocolError, unavailable } from '../attestation/errors.ts';

export interface ReplayCacheOptions {
  /** Maximum number of remembered encapsulated keys across all key ids. */
  readonly maxEntries: number;
  /** Lifetime of a key configuration in milliseconds (the replay window). */
  readonly windowMs: number;
  /** Clock, for tests; defaults to Date.now. */
  readonly now?: () => number;
}

interface KeyWindow {
  readonly start: number;
  readonly seen: Set<string>;
}

function keyOf(enc: Uint8Array): string {
  let s = '';
  for (const x of enc) s += String.fromCharCode(x);
  return s;
}

export class ReplayCache {
  readonly #max: number;
  readonly #window: number;
  readonly #now: () => number;
  readonly #keys = new Map<number, KeyWindow>();
  #size = 0;

  constructor(o: ReplayCacheOptions) {
    if (!Number.isSafeInteger(o.maxEntries) || o.maxEntries < 1) throw new RangeError('maxEntries must be a positive integer');
    if (!(o.windowMs > 0)) throw new RangeError('windowMs must be positive');
    this.#max = o.maxEntries;
    this.#window = o.windowMs;
    this.#now = o.now ?? Date.now;
  }

  /** Number of remembered encapsulated keys. */
  get size(): number {
    return this.#size;
  }

  /** Records `enc` for `keyId`, or throws OHTTP_REPLAY (seen before), OHTTP_KEY_EXPIRED or REPLAY_CACHE_FULL. */
  check(keyId: number, enc: Uint8Array): void {
    const now = this.#now();
    this.#expire(now);
    let w = this.#keys.get(keyId);
    if (w && now - w.start >= this.#window) {
      throw protocolError('OHTTP_KEY_EXPIRED', `key configuration ${keyId} is past its replay window`);
    }
    const k = keyOf(enc);
    if (w?.seen.has(k)) throw protocolError('OHTTP_REPLAY', 'encapsulated request replayed');
    if (this.#size >= this.#max) throw unavailable('REPLAY_CACHE_FULL', 'replay cache full; retry later');
    if (!w) {
      w = { start: now, seen: new Set() };
      this.#keys.set(keyId, w);
    }
    w.seen.add(k);
    this.#size++;
  }

  /** Frees the entries of a retired key configuration (the gateway no longer accepts it). */
  retire(keyId: number): void {
    const w = this.#keys.get(keyId);
    if (!w) return;
    this.#size -= w.seen.size;
    this.#keys.delete(keyId);
  }

  /**
   * Frees entries of windows that have passed. The key id stays marked as expired (an empty set) until `retire`,
   * so an old key can never be accepted again by this cache.
   */
  #expire(now: number): void {
    for (const w of this.#keys.values()) {
      if (w.seen.size > 0 && now - w.start >= this.#window) {
        this.#size -= w.seen.size;
        w.seen.clear();
      }
    }
  }
}
