/**
 * Per-source limits at the relay (docs/operator-host.md "Limits per source"): the host shim is the only place that
 * sees clients' addresses (the enclave sees the relay as its one peer), so it is where one source is kept from
 * using up what every client shares: sockets (a slow body holds one), gateway slots and the enclave's replay window.
 *
 * A source is an IPv4 address, or an IPv6 /64 (one subscriber usually holds a whole /64, so a finer key would let
 * one host take 2^64 sources). Nothing here is logged or exported per source.
 */
import { isIPv4, isIPv6 } from 'node:net';

/** The key a client address is limited under: IPv4 (IPv4-mapped IPv6 included) as is, IPv6 by its /64 prefix. */
export function sourceOf(address: string | undefined): string {
  if (!address) return 'unknown';
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return mapped[1]!;
  if (isIPv4(address)) return address;
  if (!isIPv6(address)) return 'unknown';
  return `${expand6(address).slice(0, 4).join(':')}::/64`;
}

/** The eight 16-bit groups of an IPv6 address (zone id dropped), as lower-case hex without leading zeros. */
function expand6(a: string): string[] {
  const bare = a.split('%')[0]!.toLowerCase();
  const [head, tail] = bare.includes('::') ? bare.split('::') as [string, string] : [bare, undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  return groups.map((g) => (g.includes('.') ? g : String(parseInt(g || '0', 16).toString(16))));
}

/** Counts open sockets per source; `admit` refuses one more than `max` from the same source. */
export class ConnectionCap {
  readonly max: number;
  readonly #open = new Map<string, number>();
  constructor(max: number) {
    if (!Number.isSafeInteger(max) || max < 1) throw new RangeError('the per-source connection cap must be a positive integer');
    this.max = max;
  }
  /** Number of sources with an open socket. */
  get sources(): number {
    return this.#open.size;
  }
  /** Takes a socket slot for `source`; returns its release, or undefined when the source is at its cap. */
  admit(source: string): (() => void) | undefined {
    const n = this.#open.get(source) ?? 0;
    if (n >= this.max) return undefined;
    this.#open.set(source, n + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const m = (this.#open.get(source) ?? 1) - 1;
      if (m <= 0) this.#open.delete(source);
      else this.#open.set(source, m);
    };
  }
}

export interface RateLimitOptions {
  /** Sustained requests per second per source. */
  readonly perSecond: number;
  /** Bucket size: requests a source may send at once after being idle. */
  readonly burst: number;
  /** Most sources tracked; the least recently seen is forgotten first (it then starts with a full bucket). */
  readonly maxSources?: number;
  readonly now?: () => number;
}

/** A token bucket per source: `take` answers whether one more request from `source` may pass now. */
export class RateLimiter {
  readonly #rate: number;
  readonly #burst: number;
  readonly #maxSources: number;
  readonly #now: () => number;
  /** Insertion order is recency order (re-inserted on every take), so the first key is the least recent. */
  readonly #buckets = new Map<string, { tokens: number; at: number }>();

  constructor(o: RateLimitOptions) {
    if (!(o.perSecond > 0) || !(o.burst >= 1)) throw new RangeError('rate limit needs perSecond > 0 and burst >= 1');
    this.#rate = o.perSecond / 1000;
    this.#burst = o.burst;
    this.#maxSources = o.maxSources ?? 100_000;
    this.#now = o.now ?? Date.now;
  }

  /** Seconds until `source` has a token again (0 when it has one now). */
  retryAfter(source: string): number {
    const b = this.#buckets.get(source);
    if (!b) return 0;
    const tokens = Math.min(this.#burst, b.tokens + (this.#now() - b.at) * this.#rate);
    return tokens >= 1 ? 0 : Math.ceil((1 - tokens) / this.#rate / 1000);
  }

  take(source: string): boolean {
    const now = this.#now();
    const b = this.#buckets.get(source);
    let tokens = b ? Math.min(this.#burst, b.tokens + (now - b.at) * this.#rate) : this.#burst;
    const ok = tokens >= 1;
    if (ok) tokens -= 1;
    this.#buckets.delete(source);
    this.#buckets.set(source, { tokens, at: now });
    if (this.#buckets.size > this.#maxSources) this.#buckets.delete(this.#buckets.keys().next().value!);
    return ok;
  }
}
