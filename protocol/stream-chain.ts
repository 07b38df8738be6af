/**
 * The stream commitment (docs/protocol.md §15): the enclave hashes every chunk of plaintext it streams to the client,
 * in order, and signs the digest and the number of chunks in the receipt; the client computes the same digest over
 * what it received after decryption and refuses a receipt that does not match. A chunk dropped, added, reordered,
 * altered, split or merged anywhere between the enclave and the application changes the digest.
 *
 *   head = SHA-256("gm-stream-v2" || u32(len(chunk_1)) || chunk_1 || ... || u32(len(chunk_n)) || chunk_n)
 *
 * One SHA-256 (FIPS 180-4) run incrementally over length-framed chunks: the framing is prefix-free, so two different
 * chunk sequences never give the same input, and a chunk costs one hash update (its bytes and four more) instead of a
 * whole hash over a 32-byte link and the chunk. A chunk is one server-sent event exactly as the enclave emits it: the
 * event's lines and its blank-line terminator ("\n\n"), UTF-8; the `gm.receipt` event and `data: [DONE]` that follow
 * are not in it. Receipt field `stream`: {chunks: uint, head: bytes 32}. Runtime-agnostic: the hash is injectable
 * (the enclave passes node:crypto's createHash; the default is @noble/hashes, which runs in browsers).
 */
import { sha256 } from '@noble/hashes/sha2.js';
import { equalBytes } from '../attestation/bytes.ts';
import { rejected } from '../attestation/errors.ts';

/** An incremental SHA-256 whose state can be copied: node:crypto's Hash has this shape. */
export interface IncrementalSha256 {
  update(data: Uint8Array): unknown;
  digest(): Uint8Array;
  copy(): IncrementalSha256;
}

/** The domain label that starts the hashed input (the version of this construction). */
export const STREAM_LABEL: Uint8Array = new TextEncoder().encode('gm-stream-v2');
/** Largest chunk the u32 length frame can carry. */
export const MAX_STREAM_CHUNK = 0xffffffff;

/** @noble/hashes' SHA-256 in the IncrementalSha256 shape (browsers have no incremental WebCrypto hash). */
class NobleSha256 implements IncrementalSha256 {
  readonly #h: ReturnType<typeof sha256.create>;
  constructor(h = sha256.create()) {
    this.#h = h;
  }
  update(data: Uint8Array): void {
    this.#h.update(data);
  }
  digest(): Uint8Array {
    return this.#h.digest();
  }
  copy(): NobleSha256 {
    return new NobleSha256(this.#h.clone());
  }
}

export const nobleSha256 = (): IncrementalSha256 => new NobleSha256();

export interface StreamCommitment {
  readonly chunks: number;
  readonly head: Uint8Array;
}

/** Bytes of framed chunks staged before they reach the hash (one update per stage instead of one per chunk). */
const STAGE_SIZE = 4096;

export class StreamChain {
  readonly #h: IncrementalSha256;
  #chunks = 0;
  /**
   * Framed chunks (u32(len) || chunk) are copied here and handed to the hash a stage at a time: one update per few
   * dozen small chunks costs far less than one per chunk (a native call each on node:crypto, and on noble a pass
   * through its block buffer). Same bytes in the same order, so the digest is the same.
   */
  readonly #stage = new Uint8Array(STAGE_SIZE);
  #pos = 0;

  constructor(create: () => IncrementalSha256 = nobleSha256) {
    this.#h = create();
    this.#h.update(STREAM_LABEL);
  }

  add(chunk: Uint8Array): void {
    const n = chunk.length;
    if (n > MAX_STREAM_CHUNK) throw rejected('RECEIPT_STREAM_CHUNK_TOO_LARGE', 'a streamed chunk exceeds the u32 length frame');
    if (this.#pos + 4 + n > STAGE_SIZE) this.#flush();
    const s = this.#stage;
    const o = this.#pos;
    s[o] = n >>> 24;
    s[o + 1] = (n >>> 16) & 0xff;
    s[o + 2] = (n >>> 8) & 0xff;
    s[o + 3] = n & 0xff;
    if (4 + n > STAGE_SIZE) {
      // A chunk larger than the stage goes to the hash directly, behind its frame.
      this.#h.update(s.subarray(0, 4));
      this.#h.update(chunk);
    } else {
      s.set(chunk, o + 4);
      this.#pos = o + 4 + n;
    }
    this.#chunks++;
  }

  #flush(): void {
    if (this.#pos > 0) this.#h.update(this.#stage.subarray(0, this.#pos));
    this.#pos = 0;
  }

  /** The commitment over the chunks added so far; the chain can keep growing after it is read. */
  get commitment(): StreamCommitment {
    this.#flush();
    const d = this.#h.copy().digest();
    return { chunks: this.#chunks, head: new Uint8Array(d.buffer, d.byteOffset, 32) };
  }
}

/** The client's check: the receipt's stream commitment equals the one over what arrived (RECEIPT_STREAM_MISMATCH). */
export function checkStreamCommitment(signed: StreamCommitment | undefined, received: StreamCommitment): void {
  if (!signed) throw rejected('RECEIPT_STREAM_MISSING', 'the receipt of a streamed answer commits to no stream hash');
  if (signed.chunks !== received.chunks || !equalBytes(signed.head, received.head)) {
    throw rejected('RECEIPT_STREAM_MISMATCH', `the answer received (${received.chunks} chunks) is not the one the enclave signed (${signed.chunks} chunks): a chunk was dropped, added, reordered or altered`);
  }
}
