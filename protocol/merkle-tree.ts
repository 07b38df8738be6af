/**
 * The RFC 6962 §2.1 Merkle Tree Hash (the best-execution commitment's root, protocol/best-execution.ts merkleRoot)
 * kept up to date while leaves are inserted and removed at any position, so the root after a change costs the
 * hashes the change forces and no others.
 *
 * In MTH every left child is a complete subtree over an aligned block of 2^h leaves (the split k is the largest power
 * of two below n, and each right part recurses on a length below k), so the tree caches, per height h >= 1, the hash
 * of every complete aligned block [j·2^h, (j+1)·2^h). Inserting or removing leaf p shifts every later leaf, so exactly
 * the blocks that reach p or beyond change: a change at p costs about n − p node hashes (at most n − 1, the full
 * rebuild's count less the leaf hashes, which callers keep), and several changes before the next root() cost the
 * lowest position's. The root itself is then the right spine: at most log2(n) further hashes.
 * Runtime-agnostic (Uint8Array; the hash comes from the caller).
 */
import { sha256 } from '@noble/hashes/sha2.js';
import type { Sha256 } from './best-execution.ts';

export class MerkleTree {
  readonly #h: Sha256;
  /** Leaf hashes (RFC 6962 leaf(d) = SHA-256(0x00 || d)), in order. */
  readonly #leaves: Uint8Array[];
  /** #levels[h - 1][j]: MTH of the complete block of leaves [j·2^h, (j+1)·2^h). */
  readonly #levels: Uint8Array[][] = [];
  /** Leaves from this index on changed since the levels were last brought up to date. */
  #dirtyFrom = 0;
  #root: Uint8Array | undefined;
  /** 0x01 || left || right, reused for every node hash (the hash copies what it reads). */
  readonly #node = new Uint8Array(65);

  constructor(leaves: readonly Uint8Array[] = [], h: Sha256 = sha256) {
    this.#h = h;
    this.#leaves = [...leaves];
    this.#node[0] = 1;
  }

  get size(): number {
    return this.#leaves.length;
  }

  /** The leaf hashes in order (a live view: do not modify). */
  get leaves(): readonly Uint8Array[] {
    return this.#leaves;
  }

  insert(index: number, leaf: Uint8Array): void {
    if (!Number.isSafeInteger(index) || index < 0 || index > this.#leaves.length || leaf.length !== 32) throw new RangeError('merkle insert out of range');
    this.#leaves.splice(index, 0, leaf);
    this.#touch(index);
  }

  remove(index: number): void {
    if (!Number.isSafeInteger(index) || index < 0 || index >= this.#leaves.length) throw new RangeError('merkle remove out of range');
    this.#leaves.splice(index, 1);
    this.#touch(index);
  }

  /** MTH over the leaves; the empty tree is SHA-256(""). */
  root(): Uint8Array {
    if (this.#root) return this.#root;
    const n = this.#leaves.length;
    if (n === 0) return (this.#root = this.#h(new Uint8Array(0)));
    this.#update();
    // The right spine: rec(lo) = block(lo, k) when [lo, n) is one complete block, else node(block(lo, k), rec(lo + k)).
    const spine: Uint8Array[] = [];
    let lo = 0;
    for (;;) {
      const size = n - lo;
      let k = 1;
      let h = 0;
      while (k * 2 <= size) {
        k *= 2;
        h++;
      }
      if (k === size) {
        spine.push(this.#block(h, lo >> h));
        break;
      }
      // k is now the largest power of two <= size, and size is not one: it is the split.
      spine.push(this.#block(h, lo >> h));
      lo += k;
    }
    let acc = spine[spine.length - 1]!;
    for (let i = spine.length - 2; i >= 0; i--) acc = this.#pair(spine[i]!, acc);
    return (this.#root = acc);
  }

  #touch(index: number): void {
    if (index < this.#dirtyFrom) this.#dirtyFrom = index;
    this.#root = undefined;
  }

  #block(h: number, j: number): Uint8Array {
    return h === 0 ? this.#leaves[j]! : this.#levels[h - 1]![j]!;
  }

  #pair(left: Uint8Array, right: Uint8Array): Uint8Array {
    const b = this.#node;
    b.set(left, 1);
    b.set(right, 33);
    return this.#h(b);
  }

  /** Recomputes the complete blocks that reach #dirtyFrom or beyond, level by level, and drops those past the end. */
  #update(): void {
    const n = this.#leaves.length;
    const from = this.#dirtyFrom;
    for (let h = 1; 2 ** h <= n; h++) {
      const level = (this.#levels[h - 1] ??= []);
      const count = Math.floor(n / 2 ** h);
      // A block is still valid when it ends at or before the first changed leaf.
      const keep = Math.min(level.length, Math.floor(from / 2 ** h), count);
      level.length = keep;
      for (let j = keep; j < count; j++) level.push(this.#pair(this.#block(h - 1, 2 * j), this.#block(h - 1, 2 * j + 1)));
    }
    let top = 0;
    while (2 ** (top + 1) <= n) top++;
    this.#levels.length = top;
    this.#dirtyFrom = n;
  }
}
