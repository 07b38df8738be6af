/**
 * The stream hash chain (docs/protocol.md §15): the enclave hashes every chunk of plaintext it streams to the client,
 * in order, one link per chunk, and signs the final link and the number of chunks in the receipt; the client computes
 * the same chain over what it received after decryption and refuses a receipt that does not match. A chunk dropped,
 * added, reordered or altered anywhere between the enclave and the application changes the final link.
 *
 *   link_0 = SHA-256("gm-stream-v1")
 *   link_i = SHA-256(link_{i-1} || chunk_i)            (link is 32 bytes, so each step's input splits one way only)
 *
 * A chunk is one server-sent event exactly as the enclave emits it: the event's lines and its blank-line terminator
 * ("\n\n"), UTF-8; the `gm.receipt` event and `data: [DONE]` that follow the chain are not in it. Receipt field
 * `stream`: {chunks: uint, head: bytes 32}. Runtime-agnostic: the hash is injectable (the enclave passes node:crypto's).
 */
import { sha256 } from '@noble/hashes/sha2.js';
import { equalBytes } from '../attestation/bytes.ts';
import { rejected } from '../attestation/errors.ts';

export type Sha256 = (data: Uint8Array) => Uint8Array;

export const STREAM_CHAIN_START: Uint8Array = sha256(new TextEncoder().encode('gm-stream-v1'));

export interface StreamCommitment {
  readonly chunks: number;
  readonly head: Uint8Array;
}

export class StreamChain {
  #head: Uint8Array = STREAM_CHAIN_START;
  #chunks = 0;
  /** One buffer reused for link || chunk, grown when a chunk is larger than any before. */
  #buf = new Uint8Array(32 + 4096);
  readonly #hash: Sha256;

  constructor(hash: Sha256 = sha256) {
    this.#hash = hash;
  }

  add(chunk: Uint8Array): void {
    const n = 32 + chunk.length;
    if (n > this.#buf.length) this.#buf = new Uint8Array(Math.max(n, this.#buf.length * 2));
    this.#buf.set(this.#head, 0);
    this.#buf.set(chunk, 32);
    const h = this.#hash(this.#buf.subarray(0, n));
    this.#head = new Uint8Array(h.buffer, h.byteOffset, 32);
    this.#chunks++;
  }

  get commitment(): StreamCommitment {
    return { chunks: this.#chunks, head: this.#head };
  }
}

/** The client's check: the receipt's stream commitment equals the chain over what arrived (RECEIPT_STREAM_MISMATCH). */
export function checkStreamCommitment(signed: StreamCommitment | undefined, received: StreamCommitment): void {
  if (!signed) throw rejected('RECEIPT_STREAM_MISSING', 'the receipt of a streamed answer commits to no stream hash chain');
  if (signed.chunks !== received.chunks || !equalBytes(signed.head, received.head)) {
    throw rejected('RECEIPT_STREAM_MISMATCH', `the answer received (${received.chunks} chunks) is not the one the enclave signed (${signed.chunks} chunks): a chunk was dropped, added, reordered or altered`);
  }
}
