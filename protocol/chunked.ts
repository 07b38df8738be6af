/**
 * Chunked Oblivious HTTP, draft-ietf-ohai-chunked-ohttp-08: `message/ohttp-chunked-req` (§4, §6.1) and
 * `message/ohttp-chunked-res` (§5, §6.2). Chunks are sealed and opened one at a time, so a streamed answer is readable
 * token by token.
 *
 * Framing: each non-final chunk is `varint(len) || ciphertext` with len >= 1; the final chunk is `varint(0)` followed by
 * a ciphertext that runs to the end of the message. Request chunks are sealed with the HPKE context (its sequence number
 * orders them); response chunks with the OHTTP response key and `aead_nonce XOR counter`. The final chunk alone has
 * AAD "final".
 *
 * Failure codes (docs/protocol.md §6.4), all fail closed; a peer only ever sees the one opaque decryption error:
 * - CHUNKED_DECRYPT_FAILED: a chunk does not authenticate at its position under any nearby counter (a flipped byte),
 *   or is an empty non-final chunk (§6, "equivalent to a decryption error").
 * - CHUNKED_DUPLICATE: the chunk authenticates under an earlier counter (a chunk replayed within the message).
 * - CHUNKED_REORDERED: it authenticates under a later counter and the chunk after it under the expected one.
 * - CHUNKED_DROPPED: it authenticates under a later counter and the next chunk does not fill the gap.
 * - CHUNKED_TRUNCATED: the message ended without a final chunk.
 * - CHUNKED_EXTENDED: bytes follow a genuine final chunk (a strict prefix of the final ciphertext authenticates).
 * - CHUNKED_TOO_MANY_CHUNKS: the message has more chunks than the receiver's budget (bounded CPU: a one-byte chunk
 *   costs an AEAD open like a full one), refused before the chunk over the budget is opened.
 * - CHUNKED_TOO_LARGE: a chunk exceeds the receiver's limit (bounded memory); CHUNKED_AFTER_FINAL / CHUNKED_EMPTY_CHUNK
 *   for a sender misused locally.
 * The classification runs only after a chunk already failed (a few extra AEAD attempts, bounded); the decision to
 * reject never depends on it. What cannot be told apart: a dropped chunk vs. one reordered further than the next
 * position, and a flip vs. a chunk from another message (both authenticate nowhere).
 */
import { protocolError } from '../attestation/errors.ts';
import { AEAD_PARAMS, defaultBackend, type AeadCipher, type CryptoBackend } from './backend.ts';
import { KEM_PARAMS, MAX_SEQUENCE, type PreparedEncap, setupBaseR, setupBaseS, type KeyPair, type ReceiverContext, type SenderContext, type SuiteIds } from './hpke.ts';
import { LABEL_CHUNKED_REQUEST, LABEL_CHUNKED_RESPONSE } from './media.ts';
import {
  parseRequestHeader,
  requestHeader,
  requestInfo,
  responseKeys,
  responseNonceLength,
  selectSuite,
  type GatewayKey,
  type KeyConfig,
  type SymmetricAlgorithm,
} from './ohttp.ts';
import { publicRandomBytes } from './random-pool.ts';
import type { ReplayCache } from './replay.ts';
import { readVarint, varintLength, writeVarint } from './varint.ts';

/** Receivers MUST accept 2^14-byte chunks (§3); gm accepts up to this many plaintext bytes per chunk by default. */
export const DEFAULT_MAX_CHUNK = 1 << 20;
/** How far from the expected counter the failure classifier looks. */
const WINDOW = 8;
/** At most this many candidate split points are tried when classifying a failed final chunk. */
const EXTENDED_CANDIDATES = 32;

const EMPTY = new Uint8Array(0);
const FINAL_AAD = new TextEncoder().encode('final');

/** Opens chunk `i` (the expected position) or any other position, without side effects on failure. */
interface ChunkKeys {
  openAt(i: number, aad: Uint8Array, ct: Uint8Array): Promise<Uint8Array | undefined> | Uint8Array | undefined;
}

function fail(code: string, msg: string): never {
  throw protocolError(code, msg);
}

/**
 * The receiving half shared by requests and responses: splits the framing, opens chunks in order, and classifies a
 * failure. `prefixLength` bytes (request header or response nonce) are handed to `onPrefix` first.
 */
class ChunkReader {
  #buf: Uint8Array = EMPTY;
  #index = 0;
  #final = false;
  #done = false;
  #failed = false;
  #keys: ChunkKeys | undefined;
  readonly #maxCt: number;
  readonly #nt: () => number;
  readonly #prefix: (b: Uint8Array) => Promise<{ keys: ChunkKeys; used: number } | undefined>;
  readonly #onFirstOpen: () => void;
  readonly #maxChunks: number;
  #opened = false;

  constructor(
    maxChunk: number,
    nt: () => number,
    prefix: (b: Uint8Array) => Promise<{ keys: ChunkKeys; used: number } | undefined>,
    onFirstOpen: () => void,
    maxChunks = MAX_SEQUENCE,
  ) {
    this.#maxCt = maxChunk;
    this.#maxChunks = maxChunks;
    this.#nt = nt;
    this.#prefix = prefix;
    this.#onFirstOpen = onFirstOpen;
  }

  get complete(): boolean {
    return this.#done;
  }

  push(bytes: Uint8Array): Promise<Uint8Array[]> {
    if (this.#failed) return Promise.reject(protocolError('CHUNKED_DECRYPT_FAILED', 'stream already failed'));
    if (this.#done) return Promise.reject(protocolError('CHUNKED_EXTENDED', 'data after the end of the message'));
    if (this.#buf.length === 0) {
      this.#buf = bytes; // read in place; only an unconsumed tail is copied below
    } else if (bytes.length > 0) {
      const nb = new Uint8Array(this.#buf.length + bytes.length);
      nb.set(this.#buf);
      nb.set(bytes, this.#buf.length);
      this.#buf = nb;
    }
    const out: Uint8Array[] = [];
    try {
      const pending = this.#drain(out);
      if (!pending) return Promise.resolve(this.#settle(bytes, out));
      return pending.then(
        () => this.#settle(bytes, out),
        (e: unknown) => {
          this.#failed = true;
          throw e;
        },
      );
    } catch (e) {
      this.#failed = true;
      return Promise.reject(e);
    }
  }

  /** Keeps no view into the caller's buffer past a push (a stream source may reuse it). */
  #settle(bytes: Uint8Array, out: Uint8Array[]): Uint8Array[] {
    if (this.#buf.length > 0 && this.#buf.buffer === bytes.buffer) this.#buf = this.#buf.slice();
    return out;
  }

  async end(): Promise<Uint8Array[]> {
    if (this.#failed) fail('CHUNKED_DECRYPT_FAILED', 'stream already failed');
    if (this.#done) return [];
    try {
      const out: Uint8Array[] = [];
      await this.#drain(out);
      if (!this.#keys || !this.#final) fail('CHUNKED_TRUNCATED', 'message ended before its final chunk');
      out.push(await this.#openFinal(this.#buf));
      this.#buf = EMPTY;
      this.#done = true;
      return out;
    } catch (e) {
      this.#failed = true;
      throw e;
    }
  }

  /**
   * Opens every complete non-final chunk in the buffer into `out`. Runs synchronously while the backend answers
   * synchronously (node:crypto), so a chunk costs no promise; returns a promise only when it had to wait.
   */
  #drain(out: Uint8Array[]): Promise<void> | undefined {
    if (!this.#keys) {
      return this.#prefix(this.#buf).then((p) => {
        if (!p) return;
        this.#keys = p.keys;
        this.#buf = this.#buf.subarray(p.used);
        return this.#drain(out);
      });
    }
    // Walk the buffer with a local offset and cut it once, rather than re-slicing it per chunk.
    const b = this.#buf;
    let o = 0;
    while (!this.#final) {
      const r = lengthAt(b, o);
      if (!r) break;
      if (r.value === 0) {
        this.#final = true;
        o = r.next;
        break;
      }
      if (r.value > this.#maxCt + this.#nt()) fail('CHUNKED_TOO_LARGE', 'chunk exceeds the size limit');
      // Counted before the chunk is opened: past the budget no more AEAD work is spent on this message.
      if (this.#index + 1 >= this.#maxChunks) fail('CHUNKED_TOO_MANY_CHUNKS', 'message exceeds its chunk budget');
      if (b.length - r.next < r.value) break;
      const ct = b.subarray(r.next, r.next + r.value);
      o = r.next + r.value;
      const pt = this.#keys.openAt(this.#index, EMPTY, ct);
      if (pt instanceof Promise) {
        this.#buf = b.subarray(o);
        return pt.then((v) => this.#accept(v, ct, out) ?? this.#drain(out));
      }
      if (!pt) {
        this.#buf = b.subarray(o); // the classifier looks at the chunks after this one
        return this.#classify(ct, false);
      }
      this.#accept(pt, ct, out);
    }
    if (o > 0) this.#buf = o === b.length ? EMPTY : b.subarray(o);
    if (this.#final && this.#buf.length > this.#maxCt + this.#nt()) fail('CHUNKED_TOO_LARGE', 'final chunk exceeds the size limit');
    return undefined;
  }

  /** Records an opened non-final chunk; a failure goes to the classifier (which always throws). */
  #accept(pt: Uint8Array | undefined, ct: Uint8Array, out: Uint8Array[]): Promise<never> | undefined {
    if (!pt) return this.#classify(ct, false);
    if (pt.length === 0) fail('CHUNKED_DECRYPT_FAILED', 'empty non-final chunk');
    if (!this.#opened) {
      this.#opened = true;
      this.#onFirstOpen();
    }
    this.#index++;
    if (this.#index >= MAX_SEQUENCE) fail('CHUNKED_TOO_LARGE', 'too many chunks');
    out.push(pt);
    return undefined;
  }

  async #openFinal(ct: Uint8Array): Promise<Uint8Array> {
    const pt = await this.#keys!.openAt(this.#index, FINAL_AAD, ct);
    if (!pt) await this.#classify(ct, true);
    if (!this.#opened) {
      this.#opened = true;
      this.#onFirstOpen();
    }
    return pt!;
  }

  /** Runs after chunk `#index` failed to open; always throws, with the most specific code the evidence supports. */
  async #classify(ct: Uint8Array, final: boolean): Promise<never> {
    const keys = this.#keys!;
    const i = this.#index;
    const aad = final ? FINAL_AAD : EMPTY;
    for (let j = Math.max(0, i - WINDOW); j <= i + WINDOW; j++) {
      if (j === i || !(await keys.openAt(j, aad, ct))) continue;
      if (j < i) fail('CHUNKED_DUPLICATE', `chunk ${i} repeats chunk ${j}`);
      // A later chunk arrived in position i: reordered if the one after it is chunk i, else chunks were dropped.
      const next = lengthAt(this.#buf, 0);
      if (next && next.value > 0 && this.#buf.length - next.next >= next.value) {
        if (await keys.openAt(i, EMPTY, this.#buf.subarray(next.next, next.next + next.value))) fail('CHUNKED_REORDERED', `chunk ${j} arrived before chunk ${i}`);
      } else if (next && next.value === 0 && (await keys.openAt(i, FINAL_AAD, this.#buf.subarray(next.next)))) {
        fail('CHUNKED_REORDERED', `chunk ${j} arrived before chunk ${i}`);
      }
      fail('CHUNKED_DROPPED', `chunk ${i} missing`);
    }
    if (final) {
      // A genuine final chunk followed by appended bytes: try the split points where the tail parses as framed chunks.
      // Candidates are taken alternately from both ends, so short and long appendages are both found early.
      let tried = 0;
      for (let lo = this.#nt(), hi = ct.length - 1, k = 0; lo <= hi && tried < EXTENDED_CANDIDATES; k++) {
        const p = k % 2 === 0 ? hi-- : lo++;
        if (!tailParses(ct.subarray(p))) continue;
        tried++;
        if (await keys.openAt(i, FINAL_AAD, ct.subarray(0, p))) fail('CHUNKED_EXTENDED', 'data after the final chunk');
      }
      // A non-final chunk re-framed as final: the real final chunk was cut off.
      if (await keys.openAt(i, EMPTY, ct)) fail('CHUNKED_TRUNCATED', 'message ended before its final chunk');
    }
    fail('CHUNKED_DECRYPT_FAILED', `chunk ${i} failed to authenticate`);
  }
}

/** A chunk length prefix; a length beyond 2^53 is certainly over any limit. */
function lengthAt(b: Uint8Array, o: number): { value: number; next: number } | undefined {
  try {
    return readVarint(b, o);
  } catch {
    return fail('CHUNKED_TOO_LARGE', 'chunk length out of range');
  }
}

/** True when `b` is a sequence of framed chunks: non-final ones that fit exactly, optionally ending in a final one. */
function tailParses(b: Uint8Array): boolean {
  let o = 0;
  while (o < b.length) {
    let r;
    try {
      r = readVarint(b, o);
    } catch {
      return false;
    }
    if (!r) return false;
    if (r.value === 0) return b.length - r.next >= 16;
    o = r.next + r.value;
  }
  return o === b.length;
}

/** The sending half of a response: counter nonces over one AEAD key (§6.2). */
class CounterKeys implements ChunkKeys {
  readonly #cipher: AeadCipher;
  readonly #nonce: Uint8Array;
  constructor(cipher: AeadCipher, nonce: Uint8Array) {
    this.#cipher = cipher;
    this.#nonce = nonce;
    this.#scratch = new Uint8Array(nonce.length);
  }
  /** Scratch nonce, rewritten per call: every AEAD backend copies the nonce before it returns or awaits. */
  readonly #scratch: Uint8Array;
  /** chunk_nonce = aead_nonce XOR encode(Nn, counter). */
  nonceFor(counter: number): Uint8Array {
    const n = this.#scratch;
    n.set(this.#nonce);
    for (let i = n.length - 1, x = counter; x > 0; i--, x = Math.floor(x / 256)) n[i]! ^= x & 0xff;
    return n;
  }
  seal(counter: number, aad: Uint8Array, pt: Uint8Array, headroom: number): Promise<Uint8Array> | Uint8Array {
    return this.#cipher.seal(this.nonceFor(counter), aad, pt, headroom);
  }
  openAt(i: number, aad: Uint8Array, ct: Uint8Array): Promise<Uint8Array | undefined> | Uint8Array | undefined {
    if (i < 0) return undefined;
    try {
      const r = this.#cipher.open(this.nonceFor(i), aad, ct);
      return r instanceof Promise ? r.catch(() => undefined) : r;
    } catch {
      return undefined;
    }
  }
}

export interface SealChunkOptions {
  /** Marks the last chunk (AAD "final", zero length prefix). Exactly one chunk is final. */
  readonly final?: boolean;
}

/** Seals the chunks of one message. Concatenating every output in order gives the whole message. */
export interface ChunkSealer {
  /** The first output starts with the message prefix (request header + enc, or the response nonce). */
  sealChunk(pt: Uint8Array, o?: SealChunkOptions): Promise<Uint8Array>;
  readonly finished: boolean;
}

/** Opens the chunks of one message as bytes arrive. */
export interface ChunkOpener {
  /** Feeds bytes; returns the plaintext of every non-final chunk completed by them. */
  push(bytes: Uint8Array): Promise<Uint8Array[]>;
  /** Declares the end of the message; returns the final chunk's plaintext (possibly empty) or throws. */
  end(): Promise<Uint8Array[]>;
  /** True once the final chunk authenticated. Until then, content is incomplete (§7.1). */
  readonly complete: boolean;
}

/**
 * Seals `pt` under `aad` and returns its ciphertext behind `headroom` free bytes, where the framing goes. A response's
 * AEAD writes there directly (no copy per chunk: a fresh array longer than 64 bytes costs about as much as sealing a
 * token); a request's HPKE context cannot, and its ciphertext is copied behind the room instead.
 */
type SealInto = (counter: number, aad: Uint8Array, pt: Uint8Array, headroom: number) => Promise<Uint8Array> | Uint8Array;

class Sealer implements ChunkSealer {
  #prefix: Uint8Array;
  #finished = false;
  #counter = 0;
  readonly #seal: SealInto;
  readonly #nt: number;
  constructor(prefix: Uint8Array, nt: number, seal: SealInto) {
    this.#prefix = prefix;
    this.#nt = nt;
    this.#seal = seal;
  }
  get finished(): boolean {
    return this.#finished;
  }
  sealChunk(pt: Uint8Array, o: SealChunkOptions = {}): Promise<Uint8Array> {
    try {
      if (this.#finished) fail('CHUNKED_AFTER_FINAL', 'the final chunk was already sealed');
      const final = o.final === true;
      if (!final && pt.length === 0) fail('CHUNKED_EMPTY_CHUNK', 'a non-final chunk must not be empty');
      if (this.#counter >= MAX_SEQUENCE) fail('CHUNKED_TOO_LARGE', 'too many chunks');
      // Reserve the counter and the prefix before any await: overlapping calls never share a nonce.
      const counter = this.#counter++;
      if (final) this.#finished = true;
      const prefix = this.#prefix;
      this.#prefix = EMPTY;
      // The length field is known before sealing (ct is pt plus the tag), so the framing's room is too.
      const len = final ? 0 : pt.length + this.#nt;
      const room = prefix.length + varintLength(len);
      const put = (out: Uint8Array): Uint8Array => {
        if (out.length !== room + pt.length + this.#nt) throw protocolError('CHUNKED_INTERNAL', 'sealed chunk has an unexpected length');
        out.set(prefix);
        writeVarint(out, prefix.length, len);
        return out;
      };
      const ct = this.#seal(counter, final ? FINAL_AAD : EMPTY, pt, room);
      return ct instanceof Promise ? ct.then(put) : Promise.resolve(put(ct));
    } catch (e) {
      return Promise.reject(e);
    }
  }
}

export interface ChunkedOptions {
  readonly backend?: CryptoBackend;
  /** Largest accepted plaintext per chunk (bounded memory); default DEFAULT_MAX_CHUNK. */
  readonly maxChunk?: number;
  /**
   * Most chunks accepted in one message, the final one included (bounded CPU: every chunk costs an AEAD open however
   * small it is); the one past it fails with CHUNKED_TOO_MANY_CHUNKS before it is opened. Default: no budget.
   */
  readonly maxChunks?: number;
}

async function responseSealer(ctx: SenderContext | ReceiverContext, encv: Uint8Array, b: CryptoBackend, responseNonce?: Uint8Array): Promise<ChunkSealer> {
  const nlen = responseNonceLength(ctx.suite);
  const rn = responseNonce ?? publicRandomBytes(nlen);
  if (rn.length !== nlen) fail('OHTTP_BAD_NONCE', 'response nonce has the wrong length');
  const { key, nonce } = responseKeys(ctx, encv, LABEL_CHUNKED_RESPONSE, rn, b);
  const keys = new CounterKeys(await b.aead(ctx.suite.aeadId, key), nonce);
  return new Sealer(rn.slice(), AEAD_PARAMS[ctx.suite.aeadId]!.Nt, (c, aad, pt, room) => keys.seal(c, aad, pt, room));
}

function responseOpener(ctx: SenderContext | ReceiverContext, encv: Uint8Array, b: CryptoBackend, maxChunk: number): ChunkOpener {
  const nlen = responseNonceLength(ctx.suite);
  const nt = AEAD_PARAMS[ctx.suite.aeadId]!.Nt;
  return new ChunkReader(
    maxChunk,
    () => nt,
    async (buf) => {
      if (buf.length < nlen) return undefined;
      const { key, nonce } = responseKeys(ctx, encv, LABEL_CHUNKED_RESPONSE, buf.subarray(0, nlen), b);
      return { keys: new CounterKeys(await b.aead(ctx.suite.aeadId, key), nonce), used: nlen };
    },
    () => {},
  );
}

/** Client half of a chunked exchange. */
export interface ChunkedRequestSender extends ChunkSealer {
  readonly suite: SuiteIds;
  /** The opener of the `message/ohttp-chunked-res` answering this request. */
  openResponse(o?: { maxChunk?: number }): ChunkOpener;
}

export interface EncapsulateChunkedOptions extends ChunkedOptions {
  readonly suite?: SymmetricAlgorithm;
  /** TEST-ONLY: fixed ephemeral key (known-answer tests). */
  readonly ephemeralKeyPair?: KeyPair;
  /** TEST-ONLY: X-Wing encapsulation randomness; see hpke.ts SetupOptions. */
  readonly encapRandomness?: Uint8Array;
  /** Encap(pkR) made ahead for this configuration's key (hpke.ts `prepareEncap`), taken once. */
  readonly prepared?: PreparedEncap;
}

/** Client: starts a `message/ohttp-chunked-req` to `config` (§6.1). */
export async function encapsulateChunkedRequest(config: KeyConfig, o: EncapsulateChunkedOptions = {}): Promise<ChunkedRequestSender> {
  const b = o.backend ?? defaultBackend();
  const suite = selectSuite(config, o.suite);
  const hdr = requestHeader(config.keyId, suite);
  const { enc: encv, context } = await setupBaseS(suite, config.publicKey, requestInfo(LABEL_CHUNKED_REQUEST, hdr), {
    backend: b,
    ...(o.ephemeralKeyPair ? { ephemeralKeyPair: o.ephemeralKeyPair } : {}),
    ...(o.encapRandomness ? { encapRandomness: o.encapRandomness } : {}),
    ...(o.prepared ? { prepared: o.prepared } : {}),
  });
  const prefix = new Uint8Array(hdr.length + encv.length);
  prefix.set(hdr);
  prefix.set(encv, hdr.length);
  // HPKE's own sequence number orders request chunks; the counter passed in is the same value.
  const sealer = new Sealer(prefix, AEAD_PARAMS[suite.aeadId]!.Nt, (_c, aad, pt, room) => context.seal(aad, pt, room));
  let opened = false;
  return {
    suite,
    get finished() {
      return sealer.finished;
    },
    sealChunk: (pt, so) => sealer.sealChunk(pt, so),
    openResponse(ro = {}) {
      if (opened) fail('OHTTP_CONTEXT_USED', 'a response context may be used only once');
      opened = true;
      return responseOpener(context, encv, b, ro.maxChunk ?? o.maxChunk ?? DEFAULT_MAX_CHUNK);
    },
  };
}

/** Gateway half of a chunked exchange. */
export interface ChunkedRequestOpener extends ChunkOpener {
  /** Set once the header parsed. */
  readonly suite: SuiteIds | undefined;
  readonly keyId: number | undefined;
  /** The encapsulated key (for the replay guard); set once the header parsed. */
  readonly enc: Uint8Array | undefined;
  /** The sealer of the `message/ohttp-chunked-res`; available once the header parsed. `responseNonce` is TEST-ONLY. */
  sealResponse(o?: { responseNonce?: Uint8Array }): Promise<ChunkSealer>;
}

export interface DecapsulateChunkedOptions extends ChunkedOptions {
  /** Checked when the first chunk authenticates (the encapsulated key is then known to be genuine). */
  readonly replay?: ReplayCache;
}

/** Gateway: opens a `message/ohttp-chunked-req` as it arrives (§6.1). Header errors are those of ohttp.ts. */
export function decapsulateChunkedRequest(keys: readonly GatewayKey[], o: DecapsulateChunkedOptions = {}): ChunkedRequestOpener {
  const b = o.backend ?? defaultBackend();
  let ctx: ReceiverContext | undefined;
  let encv: Uint8Array | undefined;
  let keyId: number | undefined;
  let nt = 16;
  let responded = false;
  const reader = new ChunkReader(
    o.maxChunk ?? DEFAULT_MAX_CHUNK,
    () => nt,
    async (buf) => {
      // The header is hdr[7] || enc[Nenc], Nenc set by the KEM named in hdr (32 for X25519, 1120 for X-Wing): wait for
      // all of it. An unknown KEM is left to parseRequestHeader, which refuses it.
      if (buf.length < 7) return undefined;
      const nenc = KEM_PARAMS[(buf[1]! << 8) | buf[2]!]?.Nenc;
      if (nenc !== undefined && buf.length < 7 + nenc) return undefined;
      const h = parseRequestHeader(keys, buf);
      encv = h.enc;
      keyId = h.key.config.keyId;
      nt = AEAD_PARAMS[h.suite.aeadId]!.Nt;
      try {
        ctx = await setupBaseR(h.suite, h.enc, h.key.privateKey, requestInfo(LABEL_CHUNKED_REQUEST, h.hdr), { backend: b });
      } catch (e) {
        throw protocolError('CHUNKED_DECRYPT_FAILED', 'could not set up the HPKE context', { cause: e });
      }
      const c = ctx;
      // Request chunks must be opened in order with HPKE's sequence number; openAt(i) is that number.
      const chunkKeys: ChunkKeys = {
        async openAt(i, aad, ct) {
          if (i !== c.seq) return c.openAt(i, aad, ct);
          try {
            return await c.open(aad, ct);
          } catch {
            return undefined;
          }
        },
      };
      return { keys: chunkKeys, used: 7 + h.enc.length };
    },
    () => o.replay?.check(keyId!, encv!),
    o.maxChunks,
  );
  return {
    get suite() {
      return ctx?.suite;
    },
    get keyId() {
      return keyId;
    },
    get enc() {
      return encv;
    },
    get complete() {
      return reader.complete;
    },
    push: (bytes) => reader.push(bytes),
    end: () => reader.end(),
    async sealResponse(so = {}) {
      if (!ctx || !encv) fail('CHUNKED_NOT_READY', 'the request header has not been received');
      if (responded) fail('OHTTP_CONTEXT_USED', 'a response context may be used only once');
      responded = true;
      return responseSealer(ctx, encv, b, so.responseNonce);
    },
  };
}

/** A TransformStream that opens a chunked message: ciphertext bytes in, chunk plaintexts out as each authenticates. */
export function openStream(opener: ChunkOpener): TransformStream<Uint8Array, Uint8Array> {
  return new TransformStream({
    async transform(bytes, c) {
      for (const pt of await opener.push(bytes)) c.enqueue(pt);
    },
    async flush(c) {
      for (const pt of await opener.end()) if (pt.length > 0) c.enqueue(pt);
    },
  });
}

/**
 * A TransformStream that seals each written piece as one non-final chunk at once (empty pieces are skipped) and,
 * when the writable side closes, an empty final chunk (as in the draft's example).
 */
export function sealStream(sealer: ChunkSealer): TransformStream<Uint8Array, Uint8Array> {
  return new TransformStream({
    async transform(pt, c) {
      if (pt.length > 0) c.enqueue(await sealer.sealChunk(pt));
    },
    async flush(c) {
      if (!sealer.finished) c.enqueue(await sealer.sealChunk(EMPTY, { final: true }));
    },
  });
}
