/**
 * Deterministic CBOR for the market's signed objects (offers, cancels, receipts): RFC 8949 §4.2.1 "Core
 * Deterministically Encoded CBOR", restricted to the subset those objects use, so that the bytes a signature
 * covers are reproducible by any CBOR library run in deterministic mode.
 *
 * Subset: unsigned integers (major 0, up to 2^64-1), byte strings (2), UTF-8 text (3), arrays (4), maps with text
 * keys (5), false/true/null (major 7: 0xf4/0xf5/0xf6). Rules (§4.2.1): shortest argument encoding, definite lengths
 * only, map keys sorted by the bytewise order of their encodings (for text keys: shorter first, then bytewise), no
 * duplicate keys. No floats (money is integer micro-units), no tags, no negative integers.
 *
 * The decoder is strict: anything outside the subset, a non-shortest argument, unsorted or duplicate keys, invalid
 * UTF-8, nesting deeper than 16 or trailing bytes is `MARKET_CBOR_MALFORMED`. Runtime-agnostic (Uint8Array only).
 */
import { protocolError } from '../attestation/errors.ts';

export type CborValue = number | bigint | string | Uint8Array | boolean | null | readonly CborValue[] | CborMap;
export interface CborMap {
  readonly [key: string]: CborValue;
}

const utf8 = new TextEncoder();
const utf8Strict = new TextDecoder('utf-8', { fatal: true });
const MAX_DEPTH = 16;
const U64_MAX = (1n << 64n) - 1n;

const malformed = (why: string): Error => protocolError('MARKET_CBOR_MALFORMED', `deterministic CBOR: ${why}`);

class Writer {
  buf = new Uint8Array(256);
  len = 0;
  ensure(n: number): void {
    if (this.len + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.len + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.len));
    this.buf = next;
  }
  byte(b: number): void {
    this.ensure(1);
    this.buf[this.len++] = b;
  }
  bytes(b: Uint8Array): void {
    this.ensure(b.length);
    this.buf.set(b, this.len);
    this.len += b.length;
  }
  /** Major type + argument in its shortest form (§4.2.1 "preferred serialization"). */
  head(major: number, arg: number | bigint): void {
    const m = major << 5;
    if (typeof arg === 'number') {
      if (!Number.isSafeInteger(arg) || arg < 0) throw malformed('integer is not a non-negative safe integer (use bigint)');
      if (arg < 24) return this.byte(m | arg);
      if (arg < 0x100) return (this.byte(m | 24), this.byte(arg));
      if (arg < 0x10000) return (this.byte(m | 25), this.byte(arg >>> 8), this.byte(arg & 0xff));
      if (arg < 0x100000000) {
        this.byte(m | 26);
        for (let s = 24; s >= 0; s -= 8) this.byte((arg >>> s) & 0xff);
        return;
      }
      arg = BigInt(arg);
    }
    if (arg < 0n || arg > U64_MAX) throw malformed('integer outside 0..2^64-1');
    if (arg < 0x100000000n) return this.head(major, Number(arg));
    this.byte(m | 27);
    for (let s = 56n; s >= 0n; s -= 8n) this.byte(Number((arg >> s) & 0xffn));
  }
}

function encodeInto(w: Writer, v: CborValue, depth: number): void {
  if (depth > MAX_DEPTH) throw malformed('nesting too deep');
  if (v === null) return w.byte(0xf6);
  if (v === false) return w.byte(0xf4);
  if (v === true) return w.byte(0xf5);
  if (typeof v === 'number' || typeof v === 'bigint') return w.head(0, v);
  if (typeof v === 'string') {
    const b = utf8.encode(v);
    w.head(3, b.length);
    return w.bytes(b);
  }
  if (v instanceof Uint8Array) {
    w.head(2, v.length);
    return w.bytes(v);
  }
  if (Array.isArray(v)) {
    w.head(4, v.length);
    for (const x of v) encodeInto(w, x, depth + 1);
    return;
  }
  const keyed: { k: Uint8Array; x: CborValue }[] = [];
  for (const [k, x] of Object.entries(v as CborMap)) if (x !== undefined) keyed.push({ k: keyBytes(k), x });
  keyed.sort((a, b) => compareKeys(a.k, b.k));
  w.head(5, keyed.length);
  for (const { k, x } of keyed) {
    w.head(3, k.length);
    w.bytes(k);
    encodeInto(w, x, depth + 1);
  }
}

/** UTF-8 of map keys: the market's schemas reuse a few dozen names, so they are encoded once (bounded cache). */
const keyCache = new Map<string, Uint8Array>();
function keyBytes(k: string): Uint8Array {
  let b = keyCache.get(k);
  if (b === undefined) {
    b = utf8.encode(k);
    if (keyCache.size < 256) keyCache.set(k, b);
  }
  return b;
}

/** §4.2.1 order for text keys: the encodings compare bytewise, which for text is length first, then bytes. */
function compareKeys(a: Uint8Array, b: Uint8Array): number {
  if (a.length !== b.length) return a.length - b.length;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return 0;
}

/** Encodes `v` deterministically. Map entries whose value is `undefined` are omitted (optional fields). */
export function encodeDeterministic(v: CborValue): Uint8Array {
  const w = new Writer();
  encodeInto(w, v, 0);
  return w.buf.slice(0, w.len);
}

class Reader {
  pos = 0;
  readonly b: Uint8Array;
  constructor(b: Uint8Array) {
    this.b = b;
  }
  u8(): number {
    if (this.pos >= this.b.length) throw malformed('truncated');
    return this.b[this.pos++]!;
  }
  take(n: number): Uint8Array {
    if (n > this.b.length - this.pos) throw malformed('length runs past the end');
    const out = this.b.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }
  /** Reads an argument and rejects any encoding longer than the shortest one. */
  arg(info: number): number | bigint {
    if (info < 24) return info;
    if (info === 24) {
      const v = this.u8();
      if (v < 24) throw malformed('non-shortest integer');
      return v;
    }
    if (info === 25) {
      const v = (this.u8() << 8) | this.u8();
      if (v < 0x100) throw malformed('non-shortest integer');
      return v;
    }
    if (info === 26) {
      let v = 0;
      for (let i = 0; i < 4; i++) v = v * 256 + this.u8();
      if (v < 0x10000) throw malformed('non-shortest integer');
      return v;
    }
    if (info === 27) {
      let v = 0n;
      for (let i = 0; i < 8; i++) v = (v << 8n) | BigInt(this.u8());
      if (v < 0x100000000n) throw malformed('non-shortest integer');
      return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
    }
    throw malformed('indefinite length or reserved argument');
  }
  length(info: number): number {
    const n = this.arg(info);
    if (typeof n !== 'number' || n > this.b.length - this.pos) throw malformed('length runs past the end');
    return n;
  }
}

function decodeItem(r: Reader, depth: number): CborValue {
  if (depth > MAX_DEPTH) throw malformed('nesting too deep');
  const ib = r.u8();
  const major = ib >> 5;
  const info = ib & 0x1f;
  switch (major) {
    case 0:
      return r.arg(info);
    case 2:
      return r.take(r.length(info)).slice();
    case 3: {
      const raw = r.take(r.length(info));
      try {
        return utf8Strict.decode(raw);
      } catch {
        throw malformed('invalid UTF-8 in text string');
      }
    }
    case 4: {
      const n = r.length(info);
      const out: CborValue[] = [];
      for (let i = 0; i < n; i++) out.push(decodeItem(r, depth + 1));
      return out;
    }
    case 5: {
      const n = r.length(info);
      const out: Record<string, CborValue> = Object.create(null) as Record<string, CborValue>;
      let prev: Uint8Array | undefined;
      for (let i = 0; i < n; i++) {
        const kb = r.u8();
        if (kb >> 5 !== 3) throw malformed('map key is not a text string');
        const key = r.take(r.length(kb & 0x1f));
        if (prev && compareKeys(prev, key) >= 0) throw malformed('map keys unsorted or duplicated');
        prev = key;
        let k: string;
        try {
          k = utf8Strict.decode(key);
        } catch {
          throw malformed('invalid UTF-8 in map key');
        }
        out[k] = decodeItem(r, depth + 1);
      }
      return out;
    }
    case 7:
      if (ib === 0xf4) return false;
      if (ib === 0xf5) return true;
      if (ib === 0xf6) return null;
      throw malformed('float or unsupported simple value');
    default:
      throw malformed(`major type ${major} not allowed`);
  }
}

/** Decodes exactly one item filling `bytes`; throws MARKET_CBOR_MALFORMED on anything not deterministic. */
export function decodeDeterministic(bytes: Uint8Array): CborValue {
  const r = new Reader(bytes);
  const v = decodeItem(r, 0);
  if (r.pos !== bytes.length) throw malformed('trailing bytes');
  return v;
}

// Typed field readers for the schema layers (offer.ts, receipt.ts): each throws `code` naming the field.

export function asMap(v: CborValue | undefined, code: string, what: string): CborMap {
  if (v === null || typeof v !== 'object' || v instanceof Uint8Array || Array.isArray(v)) throw protocolError(code, `${what} is not a map`);
  return v as CborMap;
}

export function onlyKeys(m: CborMap, allowed: readonly string[], code: string, what: string): void {
  for (const k of Object.keys(m)) if (!allowed.includes(k)) throw protocolError(code, `${what} has unknown field "${k}"`);
}

export function fText(m: CborMap, k: string, code: string, max = 256): string {
  const v = m[k];
  if (typeof v !== 'string' || v.length === 0 || v.length > max) throw protocolError(code, `field "${k}" must be text of 1..${max} characters`);
  return v;
}

export function fUint(m: CborMap, k: string, code: string): number {
  const v = m[k];
  if (typeof v !== 'number') throw protocolError(code, `field "${k}" must be an unsigned safe integer`);
  return v;
}

export function fBig(m: CborMap, k: string, code: string): bigint {
  const v = m[k];
  if (typeof v === 'number') return BigInt(v);
  if (typeof v === 'bigint') return v;
  throw protocolError(code, `field "${k}" must be an unsigned integer`);
}

export function fBytes(m: CborMap, k: string, code: string, len?: number): Uint8Array {
  const v = m[k];
  if (!(v instanceof Uint8Array) || (len !== undefined && v.length !== len)) throw protocolError(code, `field "${k}" must be ${len ?? 'some'} bytes`);
  return v;
}

export function fBool(m: CborMap, k: string, code: string): boolean {
  const v = m[k];
  if (typeof v !== 'boolean') throw protocolError(code, `field "${k}" must be a boolean`);
  return v;
}
