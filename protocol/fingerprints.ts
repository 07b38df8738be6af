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

function lane(seed: number, keyId: number, enc: Uint8Array): number {
  let h = seed ^ keyId;
  const n = enc.length;
  const whole = n & ~3;
  for (let i = 0; i < whole; i += 4) {
    let k = enc[i]! | (enc[i + 1]! << 8) | (enc[i + 2]! << 16) | (enc[i + 3]! << 24);
    k = Math.imul(k, c1);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, c2);
    h ^= k;
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  let k = 0;
  for (let i = n - 1; i >= whole; i--) k = (k << 8) | enc[i]!;
  if (n > whole) {
    k = Math.imul(k, c1);
    k = (k << 15) | (k >>> 17);
    h ^= Math.imul(k, c2);
  }
  return fmix(h ^ n);
}

/** The four seeds of one set's fingerprints. */
export type Seeds = readonly [number, number, number, number];

export function randomSeeds(): Seeds {
  const s = crypto.getRandomValues(new Uint32Array(4));
  return [s[0]!, s[1]!, s[2]!, s[3]!];
}

/** The fingerprint of `enc` under `keyId` (word 0 is never 0: an all-zero slot is empty). */
export function fingerprint(seeds: Seeds, keyId: number, enc: Uint8Array): Uint32Array {
  const [a, b, c, d] = seeds;
  return Uint32Array.of(lane(a, keyId, enc) | 1, lane(b, keyId, enc), lane(c, keyId, enc), lane(d, keyId, enc));
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
