/**
 * A compact set of 128-bit fingerprints of encapsulated keys, for the replay guard (replay.ts). Flat storage: one
 * Uint32Array, four words per slot, open addressing with linear probing, doubled when three quarters full. An entry
 * costs 16 to 43 bytes and no heap object, so a full collection at millions of entries is not a pause (a Set of
 * strings cost ~690 heap bytes an entry), and the memory in use is known exactly (`bytes`).
 *
 * A fingerprint is four seeded 32-bit hashes (MurmurHash3's mixing, one seed each, random per set) of the key id and
 * `enc`. A replay always has the same fingerprint; two different encapsulated keys share one with probability 2^-128,
 * and then the later one is refused as a replay (a false refusal, never a replay let through). The seeds are secret
 * so that where an entry lands cannot be steered; `enc` is in any case a fresh KEM output a sender cannot shape.
 */

const EMPTY_SLOTS = 1024;
const MAX_LOAD = 0.75;

const c1 = 0xcc9e2d51;
const c2 = 0x1b873593;

function fmix(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/** One MurmurHash3 x86_32 round of the state: `k` is a block already mixed (it does not depend on the seed). */
function round(h: number, k: number): number {
  h ^= k;
  h = (h << 13) | (h >>> 19);
  return (Math.imul(h, 5) + 0xe6546b64) | 0;
}

/** A block of `enc` mixed as MurmurHash3 mixes it before it enters the state. */
function mixBlock(k: number): number {
  k = Math.imul(k, c1);
  k = (k << 15) | (k >>> 17);
  return Math.imul(k, c2);
}

/** The four seeds of one set's fingerprints. */
export type Seeds = readonly [number, number, number, number];

export function randomSeeds(): Seeds {
  const s = crypto.getRandomValues(new Uint32Array(4));
  return [s[0]!, s[1]!, s[2]!, s[3]!];
}

/** The fingerprint of `enc` under `keyId` (word 0 is never 0: an all-zero slot is empty). */
export function fingerprint(seeds: Seeds, keyId: number, enc: Uint8Array): Uint32Array {
  // Four MurmurHash3 x86_32 hashes of `enc`, each seeded with its seed xor the key id, in one pass: a block is
  // mixed once and enters the four states (an X-Wing `enc` is 1120 bytes).
  let h0 = seeds[0] ^ keyId;
  let h1 = seeds[1] ^ keyId;
  let h2 = seeds[2] ^ keyId;
  let h3 = seeds[3] ^ keyId;
  const n = enc.length;
  const whole = n & ~3;
  for (let i = 0; i < whole; i += 4) {
    const k = mixBlock(enc[i]! | (enc[i + 1]! << 8) | (enc[i + 2]! << 16) | (enc[i + 3]! << 24));
    h0 = round(h0, k);
    h1 = round(h1, k);
    h2 = round(h2, k);
    h3 = round(h3, k);
  }
  if (n > whole) {
    let t = 0;
    for (let i = n - 1; i >= whole; i--) t = (t << 8) | enc[i]!;
    const k = mixBlock(t);
    h0 ^= k;
    h1 ^= k;
    h2 ^= k;
    h3 ^= k;
  }
  return Uint32Array.of(fmix(h0 ^ n) | 1, fmix(h1 ^ n), fmix(h2 ^ n), fmix(h3 ^ n));
}

export class FingerprintSet {
  /** Bytes a new, empty set holds. */
  static readonly INITIAL_BYTES = EMPTY_SLOTS * 16;
  #slots: Uint32Array;
  #mask: number;
  #size = 0;

  constructor() {
    this.#slots = new Uint32Array(EMPTY_SLOTS * 4);
    this.#mask = EMPTY_SLOTS - 1;
  }

  get size(): number {
    return this.#size;
  }

  /** Bytes of storage held. */
  get bytes(): number {
    return this.#slots.byteLength;
  }

  /** Extra bytes the next `add` would allocate (0 unless it must grow). */
  get growthBytes(): number {
    return this.#size + 1 > (this.#mask + 1) * MAX_LOAD ? this.#slots.byteLength : 0;
  }

  has(f: Uint32Array): boolean {
    return this.#find(this.#slots, this.#mask, f) < 0;
  }

  /** Adds `f`; returns false when it was already present. */
  add(f: Uint32Array): boolean {
    if (this.growthBytes > 0) this.#grow();
    const i = this.#find(this.#slots, this.#mask, f);
    if (i < 0) return false;
    this.#slots.set(f, i * 4);
    this.#size++;
    return true;
  }

  /** The free slot where `f` belongs, or -1 when `f` is present. */
  #find(slots: Uint32Array, mask: number, f: Uint32Array): number {
    const f0 = f[0]!;
    const f1 = f[1]!;
    const f2 = f[2]!;
    const f3 = f[3]!;
    // Word 1 picks the slot (word 0 had its low bit forced); the words are independent hashes.
    for (let i = f1 & mask; ; i = (i + 1) & mask) {
      const o = i * 4;
      const s0 = slots[o]!;
      if (s0 === 0) return i;
      if (s0 === f0 && slots[o + 1] === f1 && slots[o + 2] === f2 && slots[o + 3] === f3) return -1;
    }
  }

  #grow(): void {
    const old = this.#slots;
    const slots = new Uint32Array(old.length * 2);
    const mask = slots.length / 4 - 1;
    for (let o = 0; o < old.length; o += 4) {
      if (old[o] === 0) continue;
      const f = old.subarray(o, o + 4);
      slots.set(f, this.#find(slots, mask, f) * 4);
    }
    this.#slots = slots;
    this.#mask = mask;
  }
}
