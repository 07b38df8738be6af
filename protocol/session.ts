/**
 * The enclave → worker session (docs/protocol.md §14): one HPKE setup per (enclave, worker key) instead of one per
 * request, then every request, response and stream chunk as an AEAD record under per-direction keys.
 *
 * Handshake (RFC 9180 §5.1.2 SetupPSKS/SetupPSKR to the worker's attested key configuration, X-Wing when listed;
 * the pre-shared key is the enclave's credential for this worker, protocol/worker-auth.ts):
 *
 *   init   = hdr(keyId, kem, kdf, aead) || enc                                  enclave → worker
 *   info   = "gm/v1 session" || 0x00 || hdr || u8(len(workerId)) || workerId
 *   psk    = credential,  psk_id = "gm/v1 session" || kid
 *   secret = context.Export("gm/v1 session secret", 32)
 *   reply  = wr || confirm                                                      worker → enclave (wr: 32 random bytes)
 *   prk    = HKDF-Extract(salt = wr, secret)
 *   key_d, nonce_d = HKDF-Expand(prk, "gm/v1 session " || d || " key"/" nonce", Nk/Nn)   d in {e2w, w2e}
 *   sid     = HKDF-Expand(prk, "gm/v1 session id", 16)
 *   confirm = HMAC-SHA256(HKDF-Expand(prk, "gm/v1 session confirm", 32), init || wr)
 *
 * Only the holder of the attested private key and the credential derives the keys; the enclave checks `confirm`
 * before it sends any request (no prompt before trust). `wr` makes every session's keys fresh even when an init is
 * replayed, so a replayed handshake can never revive an old session's records.
 *
 * Records. A request is numbered r (u64, per session, chosen by the enclave, each used once) and its records are
 * numbered seq (u32, from 0 in each direction). Every record is
 *
 *   nonce = nonce_d XOR (0^(Nn-12) || u64(r) || u32(seq))
 *   aad   = version || flags || sid || u64(r) || u32(seq) || u8(final)
 *   ct    = Seal(key_d, nonce, aad, pt)
 *
 * Request on the wire:  version(1) || flags(1) || sid(16) || u64(r) || ct        (one final record, seq 0)
 * Response on the wire: ( u8(final) || u32(len) || ct )*                          (seq 0, 1, ...; the last final)
 *
 * The worker accepts each r at most once (a sliding window over the highest seen: replay); a record opened at the
 * wrong position fails (reorder, drop); a response without its final record fails (truncation); bytes after the
 * final record fail. All open failures are one code to the peer, SESSION_DECRYPT_FAILED; the local cause is kept.
 * Runtime-agnostic: the backend's HMAC, HKDF and AEAD (node:crypto on the servers).
 */
import { concat, equalBytes } from '../attestation/bytes.ts';
import { protocolError } from '../attestation/errors.ts';
import { AEAD_PARAMS, defaultBackend, type AeadCipher, type CryptoBackend } from './backend.ts';
import { hkdfExpand, hkdfExtract, KEM_PARAMS, setupPSKR, setupPSKS, type SetupOptions } from './hpke.ts';
import { type GatewayKey, type KeyConfig, parseRequestHeader, requestHeader, requestInfo, selectSuite } from './ohttp.ts';

export const SESSION_VERSION = 1;
/** Flag bit of a request whose response is streamed record by record (else one final record). */
export const FLAG_STREAM = 0x01;
export const SESSION_ID_LENGTH = 16;
export const REQUEST_PREFIX_LENGTH = 2 + SESSION_ID_LENGTH + 8;
export const RECORD_HEADER_LENGTH = 5;
const WR_LENGTH = 32;
const CONFIRM_LENGTH = 32;
const REPLY_LENGTH = WR_LENGTH + CONFIRM_LENGTH;
/** Request numbers below the highest seen by more than this are refused (they may be replays). */
export const REPLAY_WINDOW = 4096;
/** Sequence numbers per direction and request (u32). */
const MAX_SEQ = 0xffffffff;

const te = new TextEncoder();
const LABEL = 'gm/v1 session';
const L_SECRET = te.encode('gm/v1 session secret');
const L_ID = te.encode('gm/v1 session id');
const L_CONFIRM = te.encode('gm/v1 session confirm');
const L_KEY = { e2w: te.encode('gm/v1 session e2w key'), w2e: te.encode('gm/v1 session w2e key') };
const L_NONCE = { e2w: te.encode('gm/v1 session e2w nonce'), w2e: te.encode('gm/v1 session w2e nonce') };

const failed = (why: string, cause?: unknown) => protocolError('SESSION_DECRYPT_FAILED', `session record rejected: ${why}`, cause === undefined ? {} : { cause });

function info(hdr: Uint8Array, workerId: string): Uint8Array {
  const id = te.encode(workerId);
  if (id.length > 255) throw protocolError('SESSION_MALFORMED', 'worker id longer than 255 bytes');
  return concat(requestInfo(LABEL, hdr), Uint8Array.of(id.length), id);
}
const pskId = (kid: string) => concat(te.encode(LABEL), te.encode(kid));

/** One direction's key and base nonce. Nothing here keeps order: the callers do. */
class Direction {
  readonly cipher: AeadCipher;
  readonly #nonce: Uint8Array;
  constructor(cipher: AeadCipher, nonce: Uint8Array) {
    this.cipher = cipher;
    this.#nonce = nonce;
  }
  /** nonce_d XOR (0^(Nn-12) || u64(r) || u32(0)): a request's nonce base, into which `setSeq` folds each seq. */
  requestNonce(r: number): Uint8Array {
    const n = carve(this.#nonce.length);
    n.set(this.#nonce);
    const o = n.length - 12;
    const hi = Math.floor(r / 2 ** 32);
    const lo = r >>> 0;
    n[o] = n[o]! ^ (hi >>> 24);
    n[o + 1] = n[o + 1]! ^ ((hi >>> 16) & 0xff);
    n[o + 2] = n[o + 2]! ^ ((hi >>> 8) & 0xff);
    n[o + 3] = n[o + 3]! ^ (hi & 0xff);
    n[o + 4] = n[o + 4]! ^ (lo >>> 24);
    n[o + 5] = n[o + 5]! ^ ((lo >>> 16) & 0xff);
    n[o + 6] = n[o + 6]! ^ ((lo >>> 8) & 0xff);
    n[o + 7] = n[o + 7]! ^ (lo & 0xff);
    return n;
  }
}

/**
 * Nonce and AAD bytes are views into shared slabs. V8 keeps a typed array of up to 64 bytes inside its object, and
 * node's crypto reads such an array only after moving its bytes to a backing store of their own (an allocation and
 * a copy on every call that takes a nonce or an AAD); a view into a larger buffer already has one. Views never
 * overlap, and a slab is left to the garbage collector once its last view is gone.
 */
const SLAB_BYTES = 16 * 1024;
let slab = new ArrayBuffer(SLAB_BYTES);
let slabUsed = 0;
function carve(n: number): Uint8Array {
  if (slabUsed + n > SLAB_BYTES) {
    slab = new ArrayBuffer(SLAB_BYTES);
    slabUsed = 0;
  }
  const v = new Uint8Array(slab, slabUsed, n);
  slabUsed += n;
  return v;
}

/**
 * The nonce and AAD of one request's records in one direction, held in two buffers that each record rewrites in
 * place (its seq and final flag): the AEAD reads both before it returns, so no record allocates either.
 */
class RecordParams {
  readonly nonce: Uint8Array;
  readonly aad: Uint8Array;
  /** The last four bytes of the request's nonce base, which seq is XORed into. */
  readonly #b0: number;
  readonly #b1: number;
  readonly #b2: number;
  readonly #b3: number;
  constructor(dir: Direction, prefix: Uint8Array, r: number) {
    this.nonce = dir.requestNonce(r);
    const o = this.nonce.length - 4;
    this.#b0 = this.nonce[o]!;
    this.#b1 = this.nonce[o + 1]!;
    this.#b2 = this.nonce[o + 2]!;
    this.#b3 = this.nonce[o + 3]!;
    this.aad = carve(REQUEST_PREFIX_LENGTH + 5);
    this.aad.set(prefix);
  }
  /** nonce = base XOR u32(seq); aad = prefix || u32(seq) || u8(final). */
  set(seq: number, final: boolean): void {
    const n = this.nonce;
    const o = n.length - 4;
    n[o] = this.#b0 ^ (seq >>> 24);
    n[o + 1] = this.#b1 ^ ((seq >>> 16) & 0xff);
    n[o + 2] = this.#b2 ^ ((seq >>> 8) & 0xff);
    n[o + 3] = this.#b3 ^ (seq & 0xff);
    const a = this.aad;
    const p = REQUEST_PREFIX_LENGTH;
    a[p] = seq >>> 24;
    a[p + 1] = (seq >>> 16) & 0xff;
    a[p + 2] = (seq >>> 8) & 0xff;
    a[p + 3] = seq & 0xff;
    a[p + 4] = final ? 1 : 0;
  }
}

function requestPrefix(sid: Uint8Array, flags: number, r: number): Uint8Array {
  if (!Number.isSafeInteger(r) || r < 0) throw protocolError('SESSION_EXHAUSTED', 'request number out of range');
  const p = new Uint8Array(REQUEST_PREFIX_LENGTH);
  p[0] = SESSION_VERSION;
  p[1] = flags;
  p.set(sid, 2);
  putU32(p, 2 + SESSION_ID_LENGTH, Math.floor(r / 2 ** 32));
  putU32(p, 2 + SESSION_ID_LENGTH + 4, r >>> 0);
  return p;
}

/** The keys both ends derive; `Session` (enclave) and `SessionResponder` (worker) use them. */
interface SessionKeys {
  readonly id: Uint8Array;
  readonly e2w: Direction;
  readonly w2e: Direction;
}

async function deriveKeys(b: CryptoBackend, aeadId: number, secret: Uint8Array, wr: Uint8Array, init: Uint8Array): Promise<SessionKeys & { confirm: Uint8Array }> {
  const p = AEAD_PARAMS[aeadId];
  if (!p) throw protocolError('SESSION_UNSUPPORTED_SUITE', 'the session needs an AEAD (not export-only)');
  const prk = hkdfExtract(wr, secret, b);
  const dir = async (d: 'e2w' | 'w2e') => new Direction(await b.aead(aeadId, hkdfExpand(prk, L_KEY[d], p.Nk, b)), hkdfExpand(prk, L_NONCE[d], p.Nn, b));
  const confirm = b.hmacSha256(hkdfExpand(prk, L_CONFIRM, 32, b), concat(init, wr));
  return { id: hkdfExpand(prk, L_ID, SESSION_ID_LENGTH, b), e2w: await dir('e2w'), w2e: await dir('w2e'), confirm };
}

export interface InitiateOptions extends SetupOptions {
  /** The credential's id (protocol/worker-auth.ts credentialId), bound as the PSK id. */
  readonly kid: string;
}

/**
 * Enclave: starts a session to the worker's attested configuration. Send `init` (with the worker-auth header over
 * it); `finish(reply)` checks the worker's confirmation and returns the session, or throws SESSION_CONFIRM_FAILED.
 */
export async function initiateSession(config: KeyConfig, workerId: string, credential: Uint8Array, o: InitiateOptions): Promise<{ init: Uint8Array; finish(reply: Uint8Array): Promise<Session> }> {
  const b = o.backend ?? defaultBackend();
  const suite = selectSuite(config);
  const hdr = requestHeader(config.keyId, suite);
  const { enc, context } = await setupPSKS(suite, config.publicKey, info(hdr, workerId), credential, pskId(o.kid), o);
  const secret = context.export(L_SECRET, 32);
  const init = concat(hdr, enc);
  return {
    init,
    async finish(reply) {
      if (reply.length !== REPLY_LENGTH) throw protocolError('SESSION_CONFIRM_FAILED', 'session reply has the wrong length');
      const wr = reply.subarray(0, WR_LENGTH);
      const k = await deriveKeys(b, suite.aeadId, secret, wr, init);
      if (!equalBytes(k.confirm, reply.subarray(WR_LENGTH))) throw protocolError('SESSION_CONFIRM_FAILED', 'the worker did not confirm the session keys');
      return new Session(k, config);
    },
  };
}

/**
 * Worker: answers an init with one of its accepted gateway keys and the credential its auth header named. The
 * handshake fails with the OHTTP header codes for an unknown key or suite; a wrong credential is caught by the
 * enclave's confirmation check (the keys differ).
 */
export async function acceptSession(keys: readonly GatewayKey[], workerId: string, credential: Uint8Array, kid: string, init: Uint8Array, o: SetupOptions & { random?: (n: number) => Uint8Array } = {}): Promise<{ reply: Uint8Array; responder: SessionResponder; keyId: number }> {
  const b = o.backend ?? defaultBackend();
  const h = parseRequestHeader(keys, init);
  if (h.rest.length !== 0 || init.length !== 7 + KEM_PARAMS[h.suite.kemId]!.Nenc) throw protocolError('SESSION_MALFORMED', 'session init has the wrong length');
  const ctx = await setupPSKR(h.suite, h.enc, h.key.privateKey, info(h.hdr, workerId), credential, pskId(kid), o);
  const wr = (o.random ?? ((n) => crypto.getRandomValues(new Uint8Array(n))))(WR_LENGTH);
  const k = await deriveKeys(b, h.suite.aeadId, ctx.export(L_SECRET, 32), wr, init);
  return { reply: concat(wr, k.confirm), responder: new SessionResponder(k), keyId: h.key.config.keyId };
}

/** Enclave side of a session: numbers requests, seals them, opens their responses. */
export class Session {
  readonly id: Uint8Array;
  /** The worker configuration the session was made to (a rotated worker key means a new session). */
  readonly config: KeyConfig;
  readonly #k: SessionKeys;
  #next = 0;
  constructor(k: SessionKeys, config: KeyConfig) {
    this.#k = k;
    this.id = k.id;
    this.config = config;
  }
  /** Requests sealed so far (the rekey policy counts them). */
  get requests(): number {
    return this.#next;
  }
  /** Seals one request as its wire message; `open` reads the answer to exactly this request. */
  async seal(pt: Uint8Array, stream: boolean): Promise<SealedRequest> {
    return this.sealNow(pt, stream);
  }

  /** `seal`, without a promise when the backend's AEAD answers at once (node:crypto): the enclave's dispatch path. */
  sealNow(pt: Uint8Array, stream: boolean): SealedRequest | Promise<SealedRequest> {
    const r = this.#next++;
    const prefix = requestPrefix(this.#k.id, stream ? FLAG_STREAM : 0, r);
    const p = new RecordParams(this.#k.e2w, prefix, r);
    p.set(0, true);
    // The ciphertext is written behind room for the prefix: the wire message is the AEAD's output, no copy.
    const sealed = this.#k.e2w.cipher.seal(p.nonce, p.aad, pt, REQUEST_PREFIX_LENGTH);
    const done = (message: Uint8Array): SealedRequest => {
      message.set(prefix);
      return { message, response: new ResponseOpener(this.#k.w2e, prefix, r) };
    };
    return sealed instanceof Uint8Array ? done(sealed) : sealed.then(done);
  }
}

/** A sealed request: its wire message and the opener of its answer. */
export interface SealedRequest {
  readonly message: Uint8Array;
  readonly response: ResponseOpener;
}

const EMPTY = new Uint8Array(0);

/** Reads a response's records as they arrive; `end()` fails unless the final record came (truncation). */
export class ResponseOpener {
  readonly #cipher: AeadCipher;
  readonly #p: RecordParams;
  #seq = 0;
  #buf: Uint8Array = EMPTY;
  #final = false;
  readonly #maxRecord: number;
  constructor(dir: Direction, prefix: Uint8Array, r: number, maxRecord = 64 * 1024 * 1024 + 1024) {
    this.#cipher = dir.cipher;
    this.#p = new RecordParams(dir, prefix, r);
    this.#maxRecord = maxRecord;
  }
  get finished(): boolean {
    return this.#final;
  }
  /** Bytes from the wire in; the plaintexts of the records they complete out, in order. */
  async push(bytes: Uint8Array): Promise<Uint8Array[]> {
    return this.pushNow(bytes);
  }

  /**
   * `push`, without a promise when the backend's AEAD answers at once (node:crypto): the enclave's dispatch path.
   * Failures are thrown (synchronously when the AEAD is synchronous).
   */
  pushNow(bytes: Uint8Array): Uint8Array[] | Promise<Uint8Array[]> {
    if (bytes.length > 0 && this.#final) throw failed('bytes after the final record');
    return this.#records(this.#buf.length === 0 ? bytes : concat(this.#buf, bytes), []);
  }

  /** Opens the whole records at the front of `b` into `out`; keeps the partial one that may follow. */
  #records(b: Uint8Array, out: Uint8Array[]): Uint8Array[] | Promise<Uint8Array[]> {
    while (b.length >= RECORD_HEADER_LENGTH) {
      if (this.#final) throw failed('bytes after the final record');
      const flag = b[0]!;
      if (flag > 1) throw failed('bad record flag');
      const len = ((b[1]! << 24) >>> 0) + (b[2]! << 16) + (b[3]! << 8) + b[4]!;
      if (len < 16 || len > this.#maxRecord) throw failed('bad record length');
      if (b.length < RECORD_HEADER_LENGTH + len) break;
      const ct = b.subarray(RECORD_HEADER_LENGTH, RECORD_HEADER_LENGTH + len);
      const seq = this.#seq;
      if (seq > MAX_SEQ) throw failed('too many records');
      let pt: Uint8Array | Promise<Uint8Array>;
      try {
        this.#p.set(seq, flag === 1);
        pt = this.#cipher.open(this.#p.nonce, this.#p.aad, ct);
      } catch (e) {
        throw failed('record does not authenticate at its position', e);
      }
      const rest = b.subarray(RECORD_HEADER_LENGTH + len);
      if (!(pt instanceof Uint8Array)) {
        return pt.then(
          (x) => this.#records(rest, this.#opened(out, x, seq, flag)),
          (e: unknown) => {
            throw failed('record does not authenticate at its position', e);
          },
        );
      }
      this.#opened(out, pt, seq, flag);
      b = rest;
    }
    // A held partial record is copied: the caller may reuse the buffer it passed.
    this.#buf = b.length === 0 ? EMPTY : b.slice();
    return out;
  }

  #opened(out: Uint8Array[], pt: Uint8Array, seq: number, flag: number): Uint8Array[] {
    this.#seq = seq + 1;
    if (flag === 1) this.#final = true;
    out.push(pt);
    return out;
  }

  /** Declares the end of the response body. Code SESSION_TRUNCATED when the final record never came. */
  end(): void {
    if (!this.#final || this.#buf.length > 0) throw protocolError('SESSION_TRUNCATED', 'session response ended before its final record');
  }
}

/**
 * Which request numbers were opened, within REPLAY_WINDOW below the highest (the anti-replay window of RFC 6479 §2,
 * in its ring form): bit `r mod REPLAY_WINDOW` stands for `r` while `r` is in the window, and advancing the highest
 * number clears only the bits of the numbers it passes over, so each check and mark is O(1) for numbers that arrive
 * roughly in order.
 */
export class ReplayWindow {
  /** Highest number marked, -1 before the first. */
  #max = -1;
  readonly #bits = new Uint32Array(REPLAY_WINDOW / 32);

  /** True when `r` was never marked and is not more than REPLAY_WINDOW - 1 below the highest marked. */
  fresh(r: number): boolean {
    if (r > this.#max) return true;
    if (this.#max - r >= REPLAY_WINDOW) return false;
    const i = r % REPLAY_WINDOW;
    return (this.#bits[i >>> 5]! & (1 << (i & 31))) === 0;
  }

  /** Marks `r` (which `fresh` accepted). */
  mark(r: number): void {
    if (r > this.#max) {
      if (this.#max < 0 || r - this.#max >= REPLAY_WINDOW) this.#bits.fill(0);
      else {
        // The numbers between the old highest and `r` were never marked: their bits still hold numbers now out of the window.
        for (let n = this.#max + 1; n < r; n++) {
          const i = n % REPLAY_WINDOW;
          this.#bits[i >>> 5]! &= ~(1 << (i & 31));
        }
      }
      this.#max = r;
    }
    const i = r % REPLAY_WINDOW;
    this.#bits[i >>> 5]! |= 1 << (i & 31);
  }
}

/** What opening a request gives: its plaintext, whether its answer is streamed, and the sealer of that answer. */
export interface OpenedRequest {
  readonly request: Uint8Array;
  readonly stream: boolean;
  readonly response: ResponseSealer;
}

/** Worker side of a session: opens each request once and seals its response records. */
export class SessionResponder {
  readonly id: Uint8Array;
  readonly #k: SessionKeys;
  readonly #window = new ReplayWindow();
  constructor(k: SessionKeys) {
    this.#k = k;
    this.id = k.id;
  }

  /**
   * Opens a request message of this session (its id already matched: `sessionIdOf`). Codes: SESSION_MALFORMED,
   * SESSION_REPLAY (a request number opened before, or too far behind), SESSION_DECRYPT_FAILED.
   */
  async open(message: Uint8Array): Promise<OpenedRequest> {
    return this.openNow(message);
  }

  /**
   * `open`, without a promise when the backend's AEAD answers at once (node:crypto): the worker's request path.
   * Failures are thrown (synchronously when the AEAD is synchronous).
   */
  openNow(message: Uint8Array): OpenedRequest | Promise<OpenedRequest> {
    if (message.length < REQUEST_PREFIX_LENGTH + 16 || message[0] !== SESSION_VERSION || (message[1]! & ~FLAG_STREAM) !== 0) throw protocolError('SESSION_MALFORMED', 'not a session request');
    const prefix = message.subarray(0, REQUEST_PREFIX_LENGTH);
    if (!equalBytes(prefix.subarray(2, 2 + SESSION_ID_LENGTH), this.#k.id)) throw protocolError('SESSION_MALFORMED', 'request of another session');
    const o = 2 + SESSION_ID_LENGTH;
    const r = u32(prefix, o) * 2 ** 32 + u32(prefix, o + 4);
    if (!Number.isSafeInteger(r)) throw protocolError('SESSION_MALFORMED', 'request number out of range');
    if (!this.#window.fresh(r)) throw protocolError('SESSION_REPLAY', 'request number already used or too old');
    // Copied into the record parameters (the message's buffer may be reused by the caller).
    const p = new RecordParams(this.#k.e2w, prefix, r);
    p.set(0, true);
    let request: Uint8Array | Promise<Uint8Array>;
    try {
      request = this.#k.e2w.cipher.open(p.nonce, p.aad, message.subarray(REQUEST_PREFIX_LENGTH));
    } catch (e) {
      throw failed('request does not authenticate', e);
    }
    const stream = (prefix[1]! & FLAG_STREAM) !== 0;
    if (request instanceof Uint8Array) return this.#opened(r, p, request, stream);
    return request.then((pt) => this.#opened(r, p, pt, stream), (e: unknown) => {
      throw failed('request does not authenticate', e);
    });
  }

  #opened(r: number, p: RecordParams, request: Uint8Array, stream: boolean): OpenedRequest {
    // Marked only once authenticated: a forged message cannot burn a number.
    if (!this.#window.fresh(r)) throw protocolError('SESSION_REPLAY', 'request number already used or too old');
    this.#window.mark(r);
    return { request, stream, response: new ResponseSealer(this.#k.w2e, p.aad.subarray(0, REQUEST_PREFIX_LENGTH), r) };
  }
}

function putU32(b: Uint8Array, o: number, v: number): void {
  b[o] = v >>> 24;
  b[o + 1] = (v >>> 16) & 0xff;
  b[o + 2] = (v >>> 8) & 0xff;
  b[o + 3] = v & 0xff;
}
const u32 = (b: Uint8Array, o: number) => ((b[o]! << 24) >>> 0) + (b[o + 1]! << 16) + (b[o + 2]! << 8) + b[o + 3]!;

/** Seals one response's records in order; the last one `final`. */
export class ResponseSealer {
  readonly #cipher: AeadCipher;
  readonly #p: RecordParams;
  #seq = 0;
  #final = false;
  constructor(dir: Direction, prefix: Uint8Array, r: number) {
    this.#cipher = dir.cipher;
    this.#p = new RecordParams(dir, prefix, r);
  }
  get finished(): boolean {
    return this.#final;
  }
  /** One framed record: u8(final) || u32(len) || ct. */
  async seal(pt: Uint8Array, final = false): Promise<Uint8Array> {
    return this.sealNow(pt, final);
  }

  /** `seal`, without a promise when the backend's AEAD answers at once (node:crypto); failures are thrown. */
  sealNow(pt: Uint8Array, final = false): Uint8Array | Promise<Uint8Array> {
    if (this.#final) throw protocolError('SESSION_AFTER_FINAL', 'record after the final one');
    if (this.#seq > MAX_SEQ) throw protocolError('SESSION_EXHAUSTED', 'too many records in one response');
    const seq = this.#seq++;
    if (final) this.#final = true;
    this.#p.set(seq, final);
    // The AEAD leaves room for the frame in front of ct || tag, so the record is its output, written in place.
    const sealed = this.#cipher.seal(this.#p.nonce, this.#p.aad, pt, RECORD_HEADER_LENGTH);
    return sealed instanceof Uint8Array ? frame(sealed, final) : sealed.then((b) => frame(b, final));
  }
}

/** Writes u8(final) || u32(len) into the headroom the AEAD left. */
function frame(out: Uint8Array, final: boolean): Uint8Array {
  const len = out.length - RECORD_HEADER_LENGTH;
  out[0] = final ? 1 : 0;
  out[1] = len >>> 24;
  out[2] = (len >>> 16) & 0xff;
  out[3] = (len >>> 8) & 0xff;
  out[4] = len & 0xff;
  return out;
}

/** The session id a request message names (the worker looks its session up by it), or undefined when malformed. */
export function sessionIdOf(message: Uint8Array): Uint8Array | undefined {
  return message.length >= REQUEST_PREFIX_LENGTH && message[0] === SESSION_VERSION ? message.subarray(2, 2 + SESSION_ID_LENGTH) : undefined;
}
